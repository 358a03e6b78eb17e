"""Build a DatasetSnapshot: the frozen movies, labels and split a training run uses."""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from collections.abc import Sequence
from contextlib import nullcontext

import numpy as np
from django.db import connection, transaction

from base.progress import Progress, report
from catalog.models import Movie, MovieGenre, Poster
from ml.engine.split import (
    DEFAULT_FRACTIONS,
    DEFAULT_MIN_GENRE_COUNT,
    DEFAULT_SEED,
    SUBSET_NAMES,
    iterative_stratified_split,
)
from ml.models import DatasetSnapshot, SnapshotMember

from .data import member_text_checksum

logger = logging.getLogger(__name__)

# 2: member text checksums cover title, year and overview (1: the overview only).
HASH_VERSION = 2
MEMBER_BATCH = 2000

# Why a movie is left out, checked in this order (the first that applies is counted).
EXCLUDED = "excluded_from_training"
DUPLICATE = "duplicate"
NO_GENRES = "missing_genres"
NO_TEXT_OR_POSTER = "missing_overview_and_no_usable_poster"
ONLY_RARE = "only_rare_genres"


class SnapshotError(ValueError):
    """The catalog cannot make the snapshot asked for (e.g. nothing eligible)."""


def snapshot_hash(
    *,
    genres: Sequence[str],
    seed: int,
    fractions: Sequence[float],
    min_genre_count: int,
    keep_rare_genres: bool,
    rows: Sequence[tuple[int, str, Sequence[str], str, str]],
) -> str:
    """sha256 over the parameters and (movie id, split, label names, poster checksum, text sha) rows.

    Rows are hashed in movie-id order, so the result does not depend on query order.
    """
    digest = hashlib.sha256()
    header = {
        "version": HASH_VERSION,
        "genres": list(genres),
        "seed": int(seed),
        "fractions": [round(float(f), 6) for f in fractions],
        "min_genre_count": int(min_genre_count),
        "keep_rare_genres": bool(keep_rare_genres),
    }
    digest.update(json.dumps(header, sort_keys=True).encode("utf-8"))
    for movie_id, split, labels, poster_checksum, text_sha in sorted(rows, key=lambda r: r[0]):
        digest.update(f"\n{movie_id}\t{split}\t{','.join(sorted(labels))}\t{poster_checksum}\t{text_sha}".encode())
    return digest.hexdigest()


def _check_params(seed, fractions, min_genre_count) -> tuple[float, float, float]:
    if not isinstance(seed, int):
        raise SnapshotError(f"seed must be an integer, got {seed!r}")
    try:
        values = tuple(float(f) for f in fractions)
    except (TypeError, ValueError):
        raise SnapshotError(f"fractions must be three numbers (train, val, test), got {fractions!r}") from None
    if len(values) != 3 or any(f < 0 for f in values) or abs(sum(values) - 1.0) > 1e-6:
        raise SnapshotError(f"fractions must be three non-negative numbers summing to 1, got {fractions!r}")
    if values[0] <= 0:
        raise SnapshotError("the train fraction must be above 0")
    if not isinstance(min_genre_count, int) or min_genre_count < 1:
        raise SnapshotError(f"min_genre_count must be a positive integer, got {min_genre_count!r}")
    return values  # type: ignore[return-value]


def build_snapshot(
    *,
    name: str = "",
    seed: int = DEFAULT_SEED,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    min_genre_count: int = DEFAULT_MIN_GENRE_COUNT,
    keep_rare_genres: bool = False,
    user=None,
    progress: Progress | None = None,
) -> DatasetSnapshot:
    """Freeze the current catalog into a snapshot with an iterative-stratified split.

    The defaults are the benchmark's (ml.engine.split: seed 0, 70/15/15, genres with at
    least 20 movies), so a default snapshot of the devset is the benchmark's split.

    Labels are each movie's current label set (a person's edits replace imported labels
    and mark the movie ``label_source=person``; the report counts both kinds). Movies
    that are excluded, duplicates, without genres, or with neither an overview nor a
    usable poster are left out and counted by reason. Genres with fewer than
    ``min_genre_count`` eligible movies are listed in the report and, unless
    ``keep_rare_genres``, dropped from the genre list; movies left without any genre are
    then excluded too. Nothing is written unless the whole snapshot is.
    """
    fractions = _check_params(seed, fractions, min_genre_count)
    # On PostgreSQL every read sees one consistent state of the catalog (labels, posters
    # and movie flags from the same moment) even while people keep relabelling. SQLite
    # (development) reads without holding its single write lock that long.
    consistent = connection.vendor == "postgresql" and not connection.in_atomic_block
    with transaction.atomic() if consistent else nullcontext():
        if consistent:
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        snapshot = _build(
            name=name,
            seed=seed,
            fractions=fractions,
            min_genre_count=min_genre_count,
            keep_rare_genres=keep_rare_genres,
            user=user,
            progress=progress,
        )
    return snapshot


def _build(*, name, seed, fractions, min_genre_count, keep_rare_genres, user, progress) -> DatasetSnapshot:
    report(progress, "Reading labels", 0.0)
    labels_of: dict[int, list[str]] = {}
    for movie_id, genre_name in MovieGenre.objects.values_list("movie_id", "genre__name").iterator(chunk_size=5000):
        labels_of.setdefault(movie_id, []).append(genre_name)
    report(progress, "Reading posters", 0.1)
    usable_poster: dict[int, str] = {}
    for movie_id, derivative, checksum in (
        Poster.objects.usable().values_list("movie_id", "derivative", "derivative_checksum").iterator(chunk_size=5000)
    ):
        # A derivative without a recorded checksum still has to change the hash when it
        # changes; its file name is the best stand-in we have.
        usable_poster[movie_id] = checksum or f"name:{derivative}"
    report(progress, "Choosing eligible movies", 0.2)

    excluded: Counter[str] = Counter()
    # id, text sha, has overview, labels, poster checksum, label source. Texts (title, year,
    # overview) are hashed as they stream past so a million-movie catalog never sits in memory as text.
    eligible: list[tuple[int, str, bool, list[str], str, str]] = []
    label_sources: Counter[str] = Counter()
    total_movies = 0
    movies = Movie.objects.order_by("id").values_list(
        "id",
        "title",
        "year",
        "overview",
        "missing_genres",
        "excluded_from_training",
        "duplicate_of_id",
        "label_source",
    )
    for movie_id, title, year, overview, missing_genres, is_excluded, duplicate_of, label_source in movies.iterator(
        chunk_size=5000
    ):
        total_movies += 1
        labels = labels_of.get(movie_id, [])
        # The text itself decides, not the preprocessing flag, which may be stale.
        has_text = bool((overview or "").strip())
        if is_excluded:
            excluded[EXCLUDED] += 1
        elif duplicate_of is not None:
            excluded[DUPLICATE] += 1
        elif missing_genres or not labels:
            excluded[NO_GENRES] += 1
        elif not has_text and movie_id not in usable_poster:
            excluded[NO_TEXT_OR_POSTER] += 1
        else:
            text_sha = member_text_checksum(HASH_VERSION, title, year, overview or "")
            eligible.append((movie_id, text_sha, has_text, labels, usable_poster.get(movie_id, ""), label_source))

    genre_counts = Counter(g for _, _, _, labels, _, _ in eligible for g in labels)
    rare = sorted(((g, c) for g, c in genre_counts.items() if c < min_genre_count), key=lambda gc: (gc[1], gc[0]))
    rare_names = {g for g, _ in rare}
    genres = sorted(g for g in genre_counts if keep_rare_genres or g not in rare_names)
    index_of = {g: i for i, g in enumerate(genres)}

    members: list[tuple[int, str, list[int], str]] = []  # id, text sha, label indices, poster checksum
    without_overview = 0
    for movie_id, text_sha, has_text, labels, poster_checksum, label_source in eligible:
        kept = sorted(index_of[g] for g in set(labels) if g in index_of)
        if not kept:
            excluded[ONLY_RARE] += 1
            continue
        members.append((movie_id, text_sha, kept, poster_checksum))
        without_overview += not has_text
        label_sources[label_source] += 1
    if not members:
        raise SnapshotError(
            f"no movie is eligible for training out of {total_movies} "
            f"(excluded: {dict(excluded) or 'none'}); import movies with genres and overviews or posters first"
        )

    report(progress, f"Splitting {len(members)} movies", 0.35)
    y = np.zeros((len(members), len(genres)), dtype=np.uint8)
    for row, (_, _, kept, _) in enumerate(members):
        y[row, kept] = 1
    splits = iterative_stratified_split(y, fractions, seed=seed)

    content_hash = snapshot_hash(
        genres=genres,
        seed=seed,
        fractions=fractions,
        min_genre_count=min_genre_count,
        keep_rare_genres=keep_rare_genres,
        rows=[
            (movie_id, str(split), [genres[i] for i in kept], poster_checksum, text_sha)
            for (movie_id, text_sha, kept, poster_checksum), split in zip(members, splits, strict=False)
        ],
    )
    split_counts = {name: int((splits == name).sum()) for name in SUBSET_NAMES}
    per_split_genre = {
        genre: {name: int(y[splits == name, j].sum()) for name in SUBSET_NAMES} | {"total": int(y[:, j].sum())}
        for j, genre in enumerate(genres)
    }
    same_data = list(
        DatasetSnapshot.objects.filter(content_hash=content_hash).order_by("id").values_list("id", flat=True)[:5]
    )
    build_report = {
        "total_movies": total_movies,
        "included": len(members),
        "excluded": dict(sorted(excluded.items())),
        "rare_genres": [{"genre": g, "count": c} for g, c in rare],
        "rare_genres_dropped": not keep_rare_genres,
        "genre_counts": per_split_genre,
        "label_sources": dict(sorted(label_sources.items())),
        "with_poster": sum(1 for m in members if m[3]),
        "without_overview": without_overview,
        "same_content_as": same_data,
    }

    with transaction.atomic():
        snapshot = DatasetSnapshot.objects.create(
            name=name,
            created_by=user,
            seed=seed,
            fractions=list(fractions),
            min_genre_count=min_genre_count,
            keep_rare_genres=keep_rare_genres,
            genres=genres,
            content_hash=content_hash,
            hash_version=HASH_VERSION,
            n_members=len(members),
            split_counts=split_counts,
            report=build_report,
        )
        for start in range(0, len(members), MEMBER_BATCH):
            batch = members[start : start + MEMBER_BATCH]
            SnapshotMember.objects.bulk_create(
                [
                    SnapshotMember(
                        snapshot=snapshot,
                        movie_id=movie_id,
                        split=str(split),
                        labels=kept,
                        poster_checksum=poster_checksum,
                        text_checksum=text_sha,
                    )
                    for (movie_id, text_sha, kept, poster_checksum), split in zip(
                        batch, splits[start : start + MEMBER_BATCH], strict=False
                    )
                ]
            )
            # Raising here (a cancelled job) rolls the whole snapshot back.
            report(
                progress,
                f"Stored {start + len(batch)} of {len(members)} members",
                0.4 + 0.6 * (start + len(batch)) / len(members),
            )
    logger.info("snapshot %s: %s movies, hash %s", snapshot.pk, len(members), content_hash[:12])
    return snapshot
