"""Search quality on real titles: for N movies picked at random (fixed seed) from a CSV
folder that has been imported into the current database, is the movie the first result for
its full title, and in the first three for its first word? Searches go through the catalog
page's own filter form (catalog.search), on whatever DATABASE_URL points at.

    GENREWEB_DATA_DIR=/tmp/search_bench python manage.py migrate
    GENREWEB_DATA_DIR=/tmp/search_bench python manage.py import_csv ../shared/data/devset
    GENREWEB_DATA_DIR=/tmp/search_bench python manage.py benchmark_search --data ../shared/data/devset

Quality figures only: the data stays outside the repository, and no test needs it.
"""

from __future__ import annotations

import csv
import random
import statistics
import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.db import connection

from catalog.forms import CatalogFilterForm
from catalog.models import Movie

TARGET_FULL = 1.0
TARGET_FIRST_WORD = 0.9


def search_ids(query: str, limit: int) -> tuple[list[int], int, float]:
    """The first ``limit`` movie ids for ``query`` as the catalog page orders them, the hit
    count, and the time taken in ms."""
    form = CatalogFilterForm({"q": query})
    if not form.is_valid():
        raise CommandError(f"query {query!r} rejected: {form.errors.as_text()}")
    started = time.perf_counter()
    found = form.filter(Movie.objects.all())
    ids = list(found.values_list("pk", flat=True)[:limit])
    count = found.count()
    return ids, count, 1000 * (time.perf_counter() - started)


def rank_of(movie_id: int, ids: list[int]) -> int | None:
    return ids.index(movie_id) + 1 if movie_id in ids else None


class Command(BaseCommand):
    help = "Hit rate of the catalog search for full titles and first words of random imported movies."

    def add_arguments(self, parser):
        parser.add_argument("--data", required=True, help="the CSV folder that was imported (its movies.csv)")
        parser.add_argument("--titles", type=int, default=30, help="how many movies to pick")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--output", help="also write the Markdown table to this file")

    def handle(self, *args, **opts):
        csv_path = Path(opts["data"]) / "movies.csv"
        if not csv_path.is_file():
            raise CommandError(f"{csv_path} not found")
        with csv_path.open(newline="", encoding="utf-8") as handle:
            rows = [r for r in csv.DictReader(handle) if (r.get("title") or "").strip()]
        by_imdb = dict(Movie.objects.exclude(imdb_id=None).values_list("imdb_id", "pk"))
        by_title_year = {(t, y): pk for pk, t, y in Movie.objects.values_list("pk", "title", "year")}
        candidates = []
        for row in rows:
            year = int(row["year"]) if (row.get("year") or "").isdigit() else None
            pk = by_imdb.get(row.get("imdb_id") or "") or by_title_year.get((row["title"].strip(), year))
            if pk is not None:
                candidates.append((pk, row["title"].strip()))
        if len(candidates) < opts["titles"]:
            raise CommandError(
                f"only {len(candidates)} movies of {csv_path} are in this database; "
                f"import it first: python manage.py import_csv {opts['data']}"
            )
        picked = random.Random(opts["seed"]).sample(sorted(candidates), opts["titles"])
        same_title = {}
        for _, title in picked:
            same_title[title] = Movie.objects.filter(title__iexact=title).count()

        table = [
            "| # | title | full title: rank | first word | first word: rank | hits |",
            "|---:|---|---:|---|---:|---:|",
        ]
        full_hits = word_hits = 0
        timings = []
        for n, (pk, title) in enumerate(picked, 1):
            ids, _, ms = search_ids(title, 3)
            timings.append(ms)
            full_rank = rank_of(pk, ids)
            word = title.split()[0]  # what a person types: "Ocean's", "Mission:"
            word_ids, word_count, ms = search_ids(word, 3)
            timings.append(ms)
            word_rank = rank_of(pk, word_ids)
            full_hits += full_rank == 1
            word_hits += word_rank is not None
            note = f" ({same_title[title]} movies share this title)" if same_title[title] > 1 else ""
            table.append(
                f"| {n} | {title}{note} | {full_rank or '—'} | {word} | {word_rank or '>3'} | {word_count:,} |"
            )
        total = len(picked)
        summary = [
            f"{Movie.objects.count():,} movies on {connection.vendor}; {total} titles from {csv_path.name}, "
            f"seed {opts['seed']}",
            f"full title first: {full_hits}/{total} = {full_hits / total:.0%} (target {TARGET_FULL:.0%})",
            f"first word in the first three: {word_hits}/{total} = {word_hits / total:.0%} "
            f"(target {TARGET_FIRST_WORD:.0%})",
            f"search time per query: median {statistics.median(timings):.1f} ms, max {max(timings):.1f} ms",
        ]
        text = "\n".join(table) + "\n\n" + "\n".join(summary)
        self.stdout.write(text)
        if opts["output"]:
            Path(opts["output"]).write_text(text + "\n", encoding="utf-8")
