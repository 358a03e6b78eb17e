"""Page latency benchmark: p50/p95 of the catalog, movie and review pages and the list API.

Requests go through Django's test client in this process (full middleware, templates and
database queries; no network or WSGI server), logged in as a labeler, against whatever
DATABASE_URL points at. Fill a separate database first, e.g.:

    createdb genreweb_bench
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/genreweb_bench python manage.py migrate
    DATABASE_URL=... python manage.py seed_synthetic --movies 100000 --posters 40 --predictions
    DATABASE_URL=... python manage.py benchmark_pages --requests 40
"""

from __future__ import annotations

import random

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import connection
from django.test import Client

from bench.latency import TARGET_P95_MS, latency_table, measure
from catalog.models import Genre, Movie


class Command(BaseCommand):
    help = "Report p50/p95 latency of the main pages and the movie list API (server side)."

    def add_arguments(self, parser):
        parser.add_argument("--requests", type=int, default=30, help="timed requests per page")
        parser.add_argument("--warmup", type=int, default=3, help="untimed requests per page first")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--output", help="also write the Markdown table to this file")

    def handle(self, *args, **opts):
        n = opts["requests"]
        if n < 1:
            raise CommandError("--requests must be at least 1")
        total = Movie.objects.count()
        if total == 0:
            raise CommandError("the database has no movies; run seed_synthetic first")
        rng = random.Random(opts["seed"])
        user, _ = get_user_model().objects.get_or_create(username="benchmark-labeler")
        client = Client()
        client.force_login(user)
        ids = list(Movie.objects.order_by("?").values_list("id", flat=True)[:500])
        genre = Genre.objects.order_by("name").first()
        pages = total // 48
        review_item = self._review_item_case(rng)
        cases = [
            ("catalog grid, page 1", lambda: "/"),
            ("catalog list, page 1", lambda: "/?view=list"),
            ("catalog grid, random page", lambda: f"/?page={rng.randint(1, max(1, pages))}"),
            (
                "catalog filtered (genre + years)",
                lambda: f"/?genre={genre.slug if genre else ''}&year_min=1990&year_max=2010",
            ),
            ("catalog search (title/overview)", lambda: f"/?q={rng.choice(['haunted', 'love', 'Harbor', 'alien'])}"),
            ("catalog label issues", lambda: "/?audit=errors"),
            ("movie page", lambda: f"/movies/{rng.choice(ids)}/"),
            ("review queue: likely label errors", lambda: "/models/review/errors/"),
            ("review queue: model unsure", lambda: "/models/review/uncertain/"),
            *review_item,
            ("API movie list", lambda: "/api/movies/"),
            ("API movie list, genre filter", lambda: f"/api/movies/?genre={genre.slug if genre else ''}"),
        ]
        if not review_item:
            self.stdout.write("  (no review item row: no audit with queued issues; seed_synthetic --audit writes one)")
        self.stdout.write(
            f"{total:,} movies, {connection.vendor}, {n} requests per page after {opts['warmup']} warm-up"
        )
        rows = []
        for name, make_url in cases:
            row = (name, *measure(client, make_url, n, opts["warmup"]))
            rows.append(row)
            self.stdout.write(
                f"  {name:<36} p50 {row[1]:7.1f} ms  p95 {row[2]:7.1f} ms  max {row[3]:7.1f} ms  queries {row[4]}"
            )
        table, slow = latency_table(rows, "page", TARGET_P95_MS)
        verdict = f"p95 target {TARGET_P95_MS:.0f} ms: " + (
            "met by every page" if not slow else "missed by " + ", ".join(slow)
        )
        self.stdout.write(table + "\n" + verdict)
        if opts["output"]:
            with open(opts["output"], "w") as handle:
                handle.write(
                    f"{total:,} movies on {connection.vendor}, {n} requests per page\n\n" + table + f"\n\n{verdict}\n"
                )

    @staticmethod
    def _review_item_case(rng) -> list[tuple]:
        """The review item page (one movie of "likely label errors", with its suggestions and
        actions) at a random position among the first 50, where the latest audit queued any."""
        from ml.services.audit import latest_audit
        from ml.services.review import audit_queue_movies

        audit = latest_audit()
        size = audit_queue_movies("errors", audit).count() if audit else 0
        if not size:
            return []
        return [("review item: likely label errors", lambda: f"/models/review/errors/{rng.randint(1, min(size, 50))}/")]
