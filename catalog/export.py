"""Export of the current labels with their provenance, as CSV or JSON, streamed.

``LabelExport(movies)`` walks the movies by id in batches of ``BATCH_SIZE`` (keyset), three
queries per batch (movies, their labels, their last label change), and yields text chunks:
``csv_chunks()`` one row per movie, ``json_chunks()`` one JSON array of objects. Views wrap
them in a StreamingHttpResponse, so 100k movies never sit in memory.

Columns: the movie's ids and title, its genres, where the set came from (``label_source``,
``label_version``), and its last label change (when, who, origin, change set). ``reviewed``
is a hook: catalog knows nothing of reviews, so it is empty here; the layer that keeps
review records (ml) subclasses LabelExport, overrides ``reviewed`` and sets its subclass as
``exporter`` on its export views (the catalog's extend-hook pattern, see catalog/views.py).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator

from django.db.models import Max, QuerySet

from .models import LabelChange, Movie, MovieGenre

BATCH_SIZE = 1000

CSV_COLUMNS = [
    "id",
    "tmdb_id",
    "imdb_id",
    "title",
    "year",
    "genres",
    "label_source",
    "label_version",
    "last_changed_at",
    "last_changed_by",
    "last_change_origin",
    "last_change_set",
    "reviewed",
]
# A spreadsheet runs a cell that starts with one of these as a formula (CSV injection): such a
# title is written with a leading apostrophe in the CSV (the JSON has it as it is).
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


class LabelExport:
    def __init__(self, movies: QuerySet[Movie], batch_size: int = BATCH_SIZE):
        self.selection = Movie.objects.filter(pk__in=movies.order_by().values("pk"))
        self.batch_size = batch_size

    def reviewed(self, movie_ids: list[int]) -> dict[int, bool]:
        """Hook: {movie id: whether its current labels were reviewed}; a movie left out is
        "not known" (CSV: empty, JSON: null). Catalog keeps no reviews: empty."""
        return {}

    def batches(self) -> Iterator[list[tuple]]:
        """The selected movies' own columns, ``batch_size`` at a time in id order (plain
        tuples: no model instances, the export is CPU-bound)."""
        last = 0
        while True:
            movies = list(
                self.selection.filter(pk__gt=last)
                .order_by("pk")
                .values_list("pk", "tmdb_id", "imdb_id", "title", "year", "label_source", "label_version")[
                    : self.batch_size
                ]
            )
            if not movies:
                return
            yield movies
            last = movies[-1][0]

    def records(self) -> Iterator[dict]:
        for movies in self.batches():
            ids = [m[0] for m in movies]
            labels: dict[int, list[dict]] = {}
            for movie_id, genre, source, set_by, since in (
                MovieGenre.objects.filter(movie_id__in=ids)
                .order_by("movie_id", "genre__name")
                .values_list("movie_id", "genre__name", "source", "set_by__username", "created_at")
            ):
                labels.setdefault(movie_id, []).append(
                    {"genre": genre, "source": source, "set_by": set_by, "since": since.isoformat()}
                )
            # One movie's change ids grow with time (its row lock orders them): the largest is the last.
            last_ids = (
                LabelChange.objects.filter(movie_id__in=ids)
                .values("movie_id")
                .annotate(last=Max("id"))
                .values_list("last", flat=True)
            )
            last = {
                row[0]: {
                    "at": row[1].isoformat(),
                    "by": row[2],
                    "origin": row[3],
                    "action": row[4],
                    "change_set": row[5],
                }
                for row in LabelChange.objects.filter(pk__in=last_ids).values_list(
                    "movie_id", "created_at", "user__username", "origin", "action", "change_set_id"
                )
            }
            reviewed = self.reviewed(ids)
            for pk, tmdb_id, imdb_id, title, year, label_source, label_version in movies:
                movie_labels = labels.get(pk, [])
                yield {
                    "id": pk,
                    "tmdb_id": tmdb_id,
                    "imdb_id": imdb_id,
                    "title": title,
                    "year": year,
                    "genres": [label["genre"] for label in movie_labels],
                    "labels": movie_labels,
                    "label_source": label_source,
                    "label_version": label_version,
                    "last_change": last.get(pk),
                    "reviewed": reviewed.get(pk),
                }

    def csv_chunks(self) -> Iterator[str]:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(CSV_COLUMNS)
        rows = 0
        for record in self.records():
            change = record["last_change"] or {}
            title = record["title"]
            writer.writerow(
                [
                    record["id"],
                    record["tmdb_id"] or "",
                    record["imdb_id"] or "",
                    "'" + title if title.startswith(FORMULA_START) else title,
                    record["year"] or "",
                    "|".join(record["genres"]),
                    record["label_source"],
                    record["label_version"],
                    change.get("at", ""),
                    change.get("by") or "",
                    change.get("origin", ""),
                    change.get("change_set") or "",
                    {True: "yes", False: "no", None: ""}[record["reviewed"]],
                ]
            )
            rows += 1
            if rows % 200 == 0:
                yield _drain(buffer)
        yield _drain(buffer)

    def json_chunks(self) -> Iterator[str]:
        parts, sep = ["["], "\n"
        for record in self.records():
            parts.append(sep + json.dumps(record, ensure_ascii=False))
            sep = ",\n"
            if len(parts) >= 200:
                yield "".join(parts)
                parts = []
        parts.append("\n]\n")
        yield "".join(parts)


def _drain(buffer: io.StringIO) -> str:
    text = buffer.getvalue()
    buffer.seek(0)
    buffer.truncate(0)
    return text
