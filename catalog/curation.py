"""Catalogue curation before training: missing overview or genres, duplicates, exclusions.

Per movie, in batches: ``missing_overview``, ``missing_genres``, ``duplicate_of`` (same
normalised title + year; the lowest id is the original) and ``excluded_from_training`` with
its reason (duplicate, outside the year filter, grayscale poster under the ``exclude``
policy). These fields are owned here: every run recomputes them from its parameters, and
writes only what changed. ``catalog.preprocessing`` runs this pass after the posters.

``poster_duplicate_of`` (a near-duplicate poster: the same artwork as an earlier movie's) needs
poster vectors, which live in ml: ml's ``flag_near_duplicate_posters`` finds the pairs and
writes them with ``set_poster_duplicates``, the one writer of that field. It is a flag for
review (admin filter "near-duplicate poster"), not a reason to exclude: reused key art of a
franchise or a placeholder poster is no duplicate movie.
"""

from __future__ import annotations

import re
import unicodedata

from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone

from base.progress import Progress

from .models import Movie, Poster

MOVIE_BATCH_SIZE = 500
EXCLUSION_REASON_MAX = Movie._meta.get_field("exclusion_reason").max_length


def normalise_title(title: str) -> str:
    """Title reduced for duplicate detection: accents, case, punctuation and articles removed.

    "The Matrix", "Matrix, The" and "the matrix!" all become "matrix"; "Amélie" == "Amelie".
    """
    text = unicodedata.normalize("NFKD", title or "")
    text = "".join(ch for ch in text if not unicodedata.combining(ch)).casefold()
    text = text.replace("&", " and ")
    text = re.sub(r"[\W_]+", " ", text).strip()
    words = text.split()
    if len(words) > 1 and words[0] in {"the", "a", "an"}:
        words = words[1:]
    elif len(words) > 1 and words[-1] in {"the", "a", "an"}:  # "Matrix, The" catalogue style
        words = words[:-1]
    return " ".join(words)


def duplicate_map() -> dict[int, int]:
    """movie id -> id of the earliest movie with the same normalised title and year."""
    first_by_key: dict[tuple[str, int], int] = {}
    duplicates: dict[int, int] = {}
    for movie_id, title, year in Movie.objects.order_by("id").values_list("id", "title", "year").iterator(2000):
        if year is None:
            continue  # without a year two same-titled films are as likely remakes as duplicates
        key = (normalise_title(title), year)
        if not key[0]:
            continue
        original = first_by_key.setdefault(key, movie_id)
        if original != movie_id:
            duplicates[movie_id] = original
    return duplicates


MOVIE_FLAG_FIELDS = (
    "missing_overview",
    "missing_genres",
    "duplicate_of_id",
    "excluded_from_training",
    "exclusion_reason",
)


def run_movie_pass(movies, *, grayscale_policy: str, min_year, max_year, dedupe: bool, report: Progress) -> dict:
    """Refresh the curation flags of ``movies``, reporting progress from 0 to 1."""
    duplicates = duplicate_map() if dedupe else {}
    movie_ids = list(movies.values_list("id", flat=True))
    changed = unchanged = 0
    for start in range(0, len(movie_ids), MOVIE_BATCH_SIZE):
        chunk = movie_ids[start : start + MOVIE_BATCH_SIZE]
        rows = (
            Movie.objects.filter(id__in=chunk)
            .annotate(label_count=Count("labels"))
            .values(
                "id", "overview", "year", "label_count", "poster__is_grayscale", "poster__status", *MOVIE_FLAG_FIELDS
            )
        )
        to_update = []
        now = timezone.now()
        for row in rows:
            reasons = []
            duplicate_of = duplicates.get(row["id"])
            if duplicate_of:
                reasons.append(f"duplicate of movie {duplicate_of}")
            year = row["year"]
            if min_year is not None or max_year is not None:
                if year is None:
                    reasons.append("year unknown (year filter set)")
                elif (min_year is not None and year < min_year) or (max_year is not None and year > max_year):
                    reasons.append(f"year {year} outside {min_year or ''}-{max_year or ''}")
            if (
                grayscale_policy == "exclude"
                and row["poster__is_grayscale"]
                and row["poster__status"] == Poster.Status.OK
            ):
                reasons.append("grayscale poster")
            wanted = {
                "missing_overview": not (row["overview"] or "").strip(),
                "missing_genres": row["label_count"] == 0,
                "duplicate_of_id": duplicate_of,
                "excluded_from_training": bool(reasons),
                "exclusion_reason": "; ".join(reasons)[:EXCLUSION_REASON_MAX],
            }
            if all(row[name] == wanted[name] for name in MOVIE_FLAG_FIELDS):
                unchanged += 1
                continue
            to_update.append(Movie(id=row["id"], updated_at=now, **wanted))
        if to_update:
            with transaction.atomic():
                Movie.objects.bulk_update(to_update, [*MOVIE_FLAG_FIELDS, "updated_at"])
            changed += len(to_update)
        done = min(start + MOVIE_BATCH_SIZE, len(movie_ids))
        report(
            f"Movies {done}/{len(movie_ids)} ({changed} changed)",
            done / max(len(movie_ids), 1),
        )
    flags = movies.aggregate(
        missing_overview=Count("id", filter=Q(missing_overview=True)),
        missing_genres=Count("id", filter=Q(missing_genres=True)),
        duplicates=Count("id", filter=Q(duplicate_of__isnull=False)),
        excluded_from_training=Count("id", filter=Q(excluded_from_training=True)),
        without_poster=Count("id", filter=Q(poster__isnull=True)),
    )
    return {"total": len(movie_ids), "changed": changed, "unchanged": unchanged, **flags}


def set_poster_duplicates(duplicates: dict[int, int], *, movie_ids=None) -> dict:
    """Make ``poster_duplicate_of`` equal ``duplicates`` (movie id -> earlier movie id) over
    ``movie_ids`` (default: every movie): set the new ones, clear the rest; writes only changes.
    Pairs naming a movie that does not exist (any more) or itself are left out."""
    movies = Movie.objects.all() if movie_ids is None else Movie.objects.filter(id__in=list(movie_ids))
    named = sorted({m for pair in duplicates.items() for m in pair})
    existing = set()
    for start in range(0, len(named), MOVIE_BATCH_SIZE):  # under SQLite's bound-variable limit
        chunk = named[start : start + MOVIE_BATCH_SIZE]
        existing.update(Movie.objects.filter(id__in=chunk).values_list("id", flat=True))
    duplicates = {m: o for m, o in duplicates.items() if m != o and m in existing and o in existing}
    current = dict(movies.filter(poster_duplicate_of__isnull=False).values_list("id", "poster_duplicate_of"))
    to_clear = [movie_id for movie_id in current if movie_id not in duplicates]
    now = timezone.now()
    rows = [Movie(id=m, poster_duplicate_of_id=o, updated_at=now) for m, o in duplicates.items() if current.get(m) != o]
    with transaction.atomic():
        for start in range(0, len(to_clear), MOVIE_BATCH_SIZE):
            Movie.objects.filter(id__in=to_clear[start : start + MOVIE_BATCH_SIZE]).update(
                poster_duplicate_of=None, updated_at=now
            )
        Movie.objects.bulk_update(rows, ["poster_duplicate_of", "updated_at"], batch_size=MOVIE_BATCH_SIZE)
    return {"flagged": len(duplicates), "set": len(rows), "cleared": len(to_clear)}
