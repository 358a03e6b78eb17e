"""Turn snapshot members and catalog movies into ml.engine Examples.

Images are the preprocessed poster derivatives: a local path when the storage is on
this machine's filesystem (the engine reads it lazily), otherwise the file's bytes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from django.conf import settings
from django.core.files.storage import default_storage

from base.progress import Progress, report
from catalog.models import Movie, Poster
from catalog.posters import MAX_POSTER_BYTES
from ml.engine.contracts import Example, ImageLimits
from ml.engine.inputs import TEXT_FIELDS
from ml.models import DatasetSnapshot, SnapshotMember

logger = logging.getLogger(__name__)

CHUNK = 2000


def engine_image_limits() -> ImageLimits:
    """The limits the engine decodes posters under: the same pixel limit and byte cap that
    catalog.images and the poster importers apply, so the two sides never disagree."""
    return ImageLimits(max_pixels=int(settings.GENREWEB_POSTER_MAX_PIXELS), max_bytes=int(MAX_POSTER_BYTES))


def _local_path(name: str) -> str | None:
    try:
        return default_storage.path(name)
    except NotImplementedError:  # remote storage (S3): no local path
        return None


def read_image(name: str) -> str | bytes | None:
    """The derivative ``name`` as something the engine can open: a local path or bytes.

    None when the file is gone from storage: one lost file should cost that movie its
    poster, not fail a whole training run or inference shard.
    """
    if not name:
        return None
    path = _local_path(name)
    if path is not None:
        return path if os.path.isfile(path) else None
    try:
        with default_storage.open(name, "rb") as handle:
            return handle.read()
    except FileNotFoundError:
        return None


@dataclass
class SnapshotData:
    """Examples of a snapshot's splits, with what had to be skipped or changed since."""

    genres: list[str]
    examples: dict[str, list[Example]]
    missing_movies: int = 0  # members whose movie was deleted after the snapshot
    poster_changed: int = 0  # members whose poster derivative differs from the snapshot's
    text_changed: int = 0  # members whose text (overview; title, year since hash_version 2) was edited since
    notes: list[str] = field(default_factory=list)


def overview_checksum(text: str) -> str:
    """The text checksum of a hash_version 1 snapshot: sha256 of the overview, "" standing for none."""
    return hashlib.sha256((text if text.strip() else "").encode("utf-8")).hexdigest()


def text_checksum(title: str, year: int | None, overview: str) -> str:
    """The text checksum build_snapshot records (hash_version 2): sha256 over every text field
    a preset's text input may read (ml.engine.inputs.TEXT_FIELDS), so an edited title or year
    changes the snapshot like an edited overview does."""
    values = {"title": (title or "").strip(), "year": year, "overview": overview if (overview or "").strip() else ""}
    return hashlib.sha256(json.dumps([values[f] for f in TEXT_FIELDS]).encode("utf-8")).hexdigest()


def member_text_checksum(hash_version: int, title: str, year: int | None, overview: str) -> str:
    """A movie's text checksum as a snapshot of ``hash_version`` records it."""
    return overview_checksum(overview) if hash_version < 2 else text_checksum(title, year, overview)


def _posters(movie_ids: Sequence[int]) -> dict[int, tuple[str, str]]:
    return {
        movie_id: (name, checksum)
        for movie_id, name, checksum in Poster.objects.usable()
        .filter(movie_id__in=movie_ids)
        .values_list("movie_id", "derivative", "derivative_checksum")
    }


def snapshot_examples(
    snapshot: DatasetSnapshot | int,
    splits: Iterable[str] = ("train", "val", "test"),
    progress: Progress | None = None,
) -> SnapshotData:
    """Examples (text, poster, frozen labels) for the given splits, in movie-id order."""
    if not isinstance(snapshot, DatasetSnapshot):
        snapshot = DatasetSnapshot.objects.get(pk=snapshot)
    splits = list(splits)
    unknown = set(splits) - set(SnapshotMember.Split.values)
    if unknown:
        raise ValueError(f"unknown split(s) {sorted(unknown)}; choose from {SnapshotMember.Split.values}")
    data = SnapshotData(genres=list(snapshot.genres), examples={s: [] for s in splits})
    members = list(
        snapshot.members.filter(split__in=splits)
        .order_by("movie_id")
        .values_list("movie_id", "split", "labels", "poster_checksum", "text_checksum")
    )
    for start in range(0, len(members), CHUNK):
        chunk = members[start : start + CHUNK]
        ids = [m[0] for m in chunk]
        # title and year too: a config's text_fields may put them before the overview
        movies = {
            movie_id: (overview, title, year)
            for movie_id, overview, title, year in Movie.objects.filter(pk__in=ids).values_list(
                "id", "overview", "title", "year"
            )
        }
        posters = _posters(ids)
        for movie_id, split, labels, poster_checksum, text_checksum in chunk:
            if movie_id not in movies:
                data.missing_movies += 1
                continue
            overview, title, year = movies[movie_id]
            text = overview or ""
            if text_checksum and text_checksum != member_text_checksum(snapshot.hash_version, title, year, text):
                data.text_changed += 1
            image = digest = None
            if poster_checksum:  # the snapshot had a poster for this movie
                current = posters.get(movie_id)
                if current is None:
                    data.poster_changed += 1
                else:
                    name, checksum = current
                    image, digest = read_image(name), checksum or None
                    if image is None or (
                        checksum and not poster_checksum.startswith("name:") and checksum != poster_checksum
                    ):
                        data.poster_changed += 1
            data.examples[split].append(
                Example(
                    key=str(movie_id),
                    text=text,
                    image=image,
                    labels=list(labels),
                    image_digest=digest if image is not None else None,
                    title=title or "",
                    year=year,
                )
            )
        report(progress, f"Loaded {start + len(chunk)} of {len(members)} examples", (start + len(chunk)) / len(members))
    if data.missing_movies:
        data.notes.append(f"{data.missing_movies} movie(s) of the snapshot no longer exist and were skipped")
    if data.poster_changed:
        data.notes.append(f"{data.poster_changed} poster(s) changed or disappeared since the snapshot was built")
    if data.text_changed:
        edited = "overview(s)" if snapshot.hash_version < 2 else "text(s) (title, year or overview)"
        data.notes.append(f"{data.text_changed} {edited} were edited since the snapshot was built")
    for note in data.notes:
        logger.warning("snapshot %s: %s", snapshot.pk, note)
    return data


def movie_examples(movie_ids: Sequence[int]) -> list[Example]:
    """Examples for inference (no labels), in the order of ``movie_ids``; unknown ids are skipped."""
    rows = {
        movie_id: (overview, title, year)
        for movie_id, overview, title, year in Movie.objects.filter(pk__in=movie_ids).values_list(
            "id", "overview", "title", "year"
        )
    }
    posters = _posters(list(rows))
    examples = []
    for movie_id in movie_ids:
        if movie_id not in rows:
            continue
        name, checksum = posters.get(movie_id, ("", ""))
        image = read_image(name)
        if name and image is None:
            logger.warning(
                "movie %s: poster derivative %s is missing from storage; predicting from text", movie_id, name
            )
        examples.append(
            Example(
                key=str(movie_id),
                text=rows[movie_id][0] or "",
                title=rows[movie_id][1] or "",
                year=rows[movie_id][2],
                image=image,
                # the derivative's sha256: a vector stored under it is used without reading the file
                image_digest=(checksum or None) if image is not None else None,
            )
        )
    return examples
