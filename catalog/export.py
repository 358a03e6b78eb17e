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

from django.db.models import Max, Prefetch, QuerySet

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

    def reviewed(self, movies: list[Movie]) -> dict[int, bool]:
        """Hook: {movie id: whether its current labels were reviewed}; a movie left out is
        "not known" (CSV: empty, JSON: null). Catalog keeps no reviews: empty."""
        return {}

    def batches(self) -> Iterator[list[Movie]]:
        last = 0
        labels = Prefetch(
            "labels", queryset=MovieGenre.objects.select_related("genre", "set_by").order_by("genre__name")
        )
        while True:
            movies = list(self.selection.filter(pk__gt=last).order_by("pk").prefetch_related(labels)[: self.batch_size])
            if not movies:
                return
            yield movies
            last = movies[-1].pk

    def records(self) -> Iterator[dict]:
        for movies in self.batches():
            last_ids = (
                LabelChange.objects.filter(movie_id__in=[m.pk for m in movies])
                .values("movie_id")
                .annotate(last=Max("id"))
                .values_list("last", flat=True)
            )
            # One movie's change ids grow with time (its row lock orders them): the largest is the last.
            last = {c.movie_id: c for c in LabelChange.objects.filter(pk__in=list(last_ids)).select_related("user")}
            reviewed = self.reviewed(movies)
            for movie in movies:
                yield self.record(movie, last.get(movie.pk), reviewed.get(movie.pk))

    def record(self, movie: Movie, change: LabelChange | None, reviewed: bool | None) -> dict:
        return {
            "id": movie.pk,
            "tmdb_id": movie.tmdb_id,
            "imdb_id": movie.imdb_id,
            "title": movie.title,
            "year": movie.year,
            "genres": [mg.genre.name for mg in movie.labels.all()],
            "labels": [
                {
                    "genre": mg.genre.name,
                    "source": mg.source,
                    "set_by": mg.set_by.username if mg.set_by else None,
                    "since": mg.created_at.isoformat(),
                }
                for mg in movie.labels.all()
            ],
            "label_source": movie.label_source,
            "label_version": movie.label_version,
            "last_change": None
            if change is None
            else {
                "at": change.created_at.isoformat(),
                "by": change.user.username if change.user else None,
                "origin": change.origin,
                "action": change.action,
                "change_set": change.change_set_id,
            },
            "reviewed": reviewed,
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
