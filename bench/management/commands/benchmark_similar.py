"""Similar-movies latency: p50/p95 of GET /api/movies/<id>/similar/ (text, poster, fused) and
of the movie page with its "Similar movies" panel, plus the one-off matrix build per process.

Through Django's test client in this process (full middleware and queries), logged in as a
labeler, against whatever DATABASE_URL points at. Vectors may be synthetic (latency only):

    DATABASE_URL=... python manage.py seed_synthetic --movies 100000 --posters 40 --embeddings
    DATABASE_URL=... python manage.py benchmark_similar --requests 50
"""

from __future__ import annotations

import random
import time

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import connection
from django.test import Client

from bench.latency import TARGET_P95_MS, get_ok, latency_table, measure
from catalog.models import Movie, Poster
from ml.services.similar import clear_cache


class Command(BaseCommand):
    help = "Report p50/p95 latency of the similar-movies API and panel (server side)."

    def add_arguments(self, parser):
        parser.add_argument("--requests", type=int, default=50, help="timed requests per case")
        parser.add_argument("--warmup", type=int, default=2, help="untimed requests per case first")
        parser.add_argument("--k", type=int, default=10)
        parser.add_argument("--seed", type=int, default=0)

    def handle(self, *args, **opts):
        n = opts["requests"]
        if n < 1:
            raise CommandError("--requests must be at least 1")
        rng = random.Random(opts["seed"])
        user, _ = get_user_model().objects.get_or_create(username="benchmark-labeler")
        client = Client()
        client.force_login(user)
        # Movies with both vectors if there are posters with a checksum, else any movie.
        with_poster = list(
            Poster.objects.exclude(derivative_checksum="").order_by("?").values_list("movie_id", flat=True)[:500]
        )
        ids = with_poster or list(Movie.objects.order_by("?").values_list("id", flat=True)[:500])
        if not ids:
            raise CommandError("the database has no movies; run seed_synthetic --embeddings first")
        cases = [
            ("API similar, by text", "text"),
            ("API similar, by poster", "poster"),
            ("API similar, fused", "fused"),
        ]
        if not with_poster:
            cases = cases[:1]
        self.stdout.write(
            f"{Movie.objects.count():,} movies, {len(with_poster) and Poster.objects.exclude(derivative_checksum='').count():,} "
            f"posters with a checksum, {connection.vendor}, {n} requests per case after {opts['warmup']} warm-up, "
            f"k={opts['k']}"
        )
        clear_cache()
        rows = []
        for _name, by in cases:
            started = time.perf_counter()
            get_ok(client, f"/api/movies/{ids[0]}/similar/?by={by}&k={opts['k']}")
            self.stdout.write(
                f"  first call by {by} (builds the matrix): {1000 * (time.perf_counter() - started):.0f} ms"
            )
        cases.append(("movie page with the panel", "page"))
        for name, by in cases:

            def url(by=by):
                movie = rng.choice(ids)
                return f"/movies/{movie}/" if by == "page" else f"/api/movies/{movie}/similar/?by={by}&k={opts['k']}"

            row = (name, *measure(client, url, n, opts["warmup"]))
            rows.append(row)
            self.stdout.write(
                f"  {name:<30} p50 {row[1]:7.1f} ms  p95 {row[2]:7.1f} ms  max {row[3]:7.1f} ms  queries {row[4]}"
            )
        table, slow = latency_table(rows, "case", TARGET_P95_MS)
        self.stdout.write(
            table
            + f"\np95 target {TARGET_P95_MS:.0f} ms: "
            + ("met by every case" if not slow else "missed by " + ", ".join(slow))
        )
