"""Search quality and latency on real titles: for N movies picked at random (fixed seeds), is
the movie the first result for its full title, and in the first three for its first word?
And how long does each search take? Searches go through the catalog page's own filter form
(catalog.search), on whatever DATABASE_URL points at.

    GENREWEB_DATA_DIR=/tmp/search_bench python manage.py migrate
    GENREWEB_DATA_DIR=/tmp/search_bench python manage.py import_csv ../shared/data/devset
    GENREWEB_DATA_DIR=/tmp/search_bench python manage.py benchmark_search --data ../shared/data/devset --seeds 0 1 2

``--data``: pick among the movies of that CSV folder that are in the database (real titles).
Without it, pick among the catalog's own movies (e.g. ``seed_synthetic`` data, for latency at
scale). The first word is what a person types first, punctuation included ("Mission:",
"The"). Quality figures only: the data stays outside the repository, and no test needs it.
"""

from __future__ import annotations

import csv
import random
import statistics
import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.db import connection

from bench.latency import percentile
from catalog.forms import CatalogFilterForm
from catalog.models import Movie

TARGET_FULL = 1.0
TARGET_FIRST_WORD = 0.9


def search_ids(query: str, limit: int) -> tuple[list[int], int, float]:
    """The first ``limit`` movie ids for ``query`` as the catalog page orders them, the hit
    count (the page counts them too), and the time taken in ms."""
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


def csv_candidates(folder: str) -> list[tuple[int, str]]:
    """(movie id, title) of the CSV's movies that are in this database."""
    csv_path = Path(folder) / "movies.csv"
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
    return sorted(set(candidates))


def catalog_candidates() -> list[tuple[int, str]]:
    return [(pk, title.strip()) for pk, title in Movie.objects.order_by("pk").values_list("pk", "title") if title]


def measure(picked: list[tuple[int, str]]) -> dict:
    rows, full_ms, word_ms = [], [], []
    for pk, title in picked:
        ids, _, ms = search_ids(title, 3)
        full_ms.append(ms)
        word = title.split()[0]
        word_ids, word_count, ms = search_ids(word, 3)
        word_ms.append(ms)
        rows.append((pk, title, rank_of(pk, ids), word, rank_of(pk, word_ids), word_count))
    total = len(picked)
    return {
        "rows": rows,
        "full": sum(r[2] == 1 for r in rows) / total,
        "word": sum(r[4] is not None for r in rows) / total,
        "full_hits": sum(r[2] == 1 for r in rows),
        "word_hits": sum(r[4] is not None for r in rows),
        "full_ms": full_ms,
        "word_ms": word_ms,
    }


class Command(BaseCommand):
    help = "Hit rate and latency of the catalog search for full titles and first words of random movies."

    def add_arguments(self, parser):
        parser.add_argument("--data", help="the CSV folder that was imported (its movies.csv); default: the catalog")
        parser.add_argument("--titles", type=int, default=30, help="how many movies to pick per seed")
        parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="one pick per seed (e.g. 0 1 2)")
        parser.add_argument("--warmup", type=int, default=3, help="untimed searches first")
        parser.add_argument("--quiet", action="store_true", help="the summary only, not each title")
        parser.add_argument("--output", help="also write the Markdown tables to this file")

    def handle(self, *args, **opts):
        candidates = csv_candidates(opts["data"]) if opts["data"] else catalog_candidates()
        if len(candidates) < opts["titles"]:
            hint = f"import it first: python manage.py import_csv {opts['data']}" if opts["data"] else "seed or import"
            raise CommandError(f"only {len(candidates)} movies to pick from in this database; {hint}")
        for _, title in candidates[: opts["warmup"]]:
            search_ids(title, 3)
        source = Path(opts["data"]).name + "/movies.csv" if opts["data"] else "the catalog"
        out: list[str] = []
        summary = [
            "| seed | full title first | first word in the first three | full title p50 / p95 ms "
            "| first word p50 / p95 ms | max ms |",
            "|---:|---:|---:|---:|---:|---:|",
        ]
        all_ms: list[float] = []
        for seed in opts["seeds"]:
            picked = random.Random(seed).sample(candidates, opts["titles"])
            result = measure(picked)
            timings = result["full_ms"] + result["word_ms"]
            all_ms += timings
            if not opts["quiet"]:
                out += [
                    f"seed {seed}:",
                    "| # | title | full title: rank | first word | first word: rank | hits |",
                    "|---:|---|---:|---|---:|---:|",
                ]
                for n, (_, title, full_rank, word, word_rank, count) in enumerate(result["rows"], 1):
                    out.append(f"| {n} | {title} | {full_rank or '—'} | {word} | {word_rank or '>3'} | {count:,} |")
                out.append("")
            total = opts["titles"]
            summary.append(
                f"| {seed} | {result['full_hits']}/{total} = {result['full']:.0%} "
                f"| {result['word_hits']}/{total} = {result['word']:.0%} "
                f"| {percentile(result['full_ms'], 0.5):.1f} / {percentile(result['full_ms'], 0.95):.1f} "
                f"| {percentile(result['word_ms'], 0.5):.1f} / {percentile(result['word_ms'], 0.95):.1f} "
                f"| {max(timings):.1f} |"
            )
        out += summary
        out += [
            "",
            f"{Movie.objects.count():,} movies on {connection.vendor}; {opts['titles']} titles from {source} per seed "
            f"(targets: full title first {TARGET_FULL:.0%}, first word in the first three {TARGET_FIRST_WORD:.0%})",
            f"search time over all {len(all_ms)} searches (full titles and first words): "
            f"p50 {percentile(all_ms, 0.5):.1f} ms, p95 {percentile(all_ms, 0.95):.1f} ms, "
            f"mean {statistics.mean(all_ms):.1f} ms",
        ]
        text = "\n".join(out)
        self.stdout.write(text)
        if opts["output"]:
            Path(opts["output"]).write_text(text + "\n", encoding="utf-8")
