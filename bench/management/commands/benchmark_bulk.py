"""Time and memory of a bulk label change over "all matching this filter", its undo, and the
label export, through the real pages (Django's test client in this process: middleware,
views, the ml layer's filter and review-queue refresh, and the streamed download).

The bulk change and the undo are each two steps, as in production: the POST (it checks the
request, creates the change set and queues its bulk_labels job), then the job, run here
through its Celery task as a worker runs it (claim, progress, the ml refresh, finish_job);
its message is not sent to the broker, so no worker elsewhere takes it. ``--direct`` adds the
same change and undo through catalog.bulk alone (no page, no job) to show the job's overhead.

Use a separate database filled by seed_synthetic, e.g. on PostgreSQL:

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bulk_bench python manage.py migrate
    DATABASE_URL=... python manage.py seed_synthetic --movies 70000
    DATABASE_URL=... python manage.py benchmark_bulk --genre drama --add comedy

It prints, for each step, the movies, the wall time, the rate, this process's CPU time (the
database's own work is not in it), the queries and how much this process's peak resident
memory grew (a bulk change or export that held its selection in
memory would grow with it). The change sets and label changes it makes stay in that database
(the undo puts the labels back).
"""

from __future__ import annotations

import resource
import time
from unittest import mock

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import connection, reset_queries
from django.test import Client
from django.test.utils import CaptureQueriesContext

from catalog.bulk import apply_bulk, undo_change_set
from catalog.models import ChangeSet, Genre, Movie
from ml.services.review import labels_changed
from workers import kinds
from workers.jobs import task_named
from workers.models import Job

USER = "benchmark bulk"


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


class Command(BaseCommand):
    help = "Wall time and memory of a bulk change over a filter, its undo, and the CSV/JSON export."

    def add_arguments(self, parser):
        parser.add_argument("--genre", default="drama", help="the filter: movies with this genre (slug)")
        parser.add_argument("--add", default="comedy", help="the genre the bulk change adds (slug)")
        parser.add_argument("--skip-export", action="store_true")
        parser.add_argument(
            "--direct", action="store_true", help="also run the change and its undo through catalog.bulk alone"
        )

    def handle(self, *args, **opts):
        try:
            genre, add = Genre.objects.get(slug=opts["genre"]), Genre.objects.get(slug=opts["add"])
        except Genre.DoesNotExist:
            raise CommandError("unknown genre slug; seed the database first (seed_synthetic)") from None
        matching = Movie.objects.filter(labels__genre=genre).count()
        self.stdout.write(
            f"{Movie.objects.count():,} movies, {matching:,} with {genre.name}; database {connection.vendor}"
        )
        user, _ = get_user_model().objects.get_or_create(username=USER)
        client = Client()
        client.force_login(user)
        rows = []

        def step(name: str, movies: int, fn):
            reset_queries()
            rss = peak_rss_mib()
            with CaptureQueriesContext(connection) as queries:
                started, cpu = time.perf_counter(), time.process_time()
                result = fn()
                seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
            rows.append((name, movies, seconds, cpu, len(queries), peak_rss_mib() - rss))
            return result

        form = {
            "action": "add",
            "genre": add.slug,
            "scope": "filter",
            "filter": f"genre={genre.slug}",
            "confirmed": "1",
        }

        def post(url: str, data=None):
            with mock.patch("workers.jobs.send_job_message"):  # the job is run below, not by a worker
                answer = client.post(url, data)
            if answer.status_code != 302:
                raise CommandError(f"POST {url} answered {answer.status_code}")
            return answer

        def run_job(change_set: ChangeSet):
            job = Job.objects.get(kind=kinds.BULK_LABELS, params__change_set=change_set.pk)
            task_named(kinds.get(job.kind).task_name).apply(args=[job.pk], task_id=job.celery_task_id)
            job.refresh_from_db()
            if job.status != Job.Status.SUCCEEDED:
                raise CommandError(f"job #{job.pk} {job.status}: {job.error}")

        step("bulk add request (POST /bulk/)", matching, lambda: post("/bulk/", form))
        bulk = ChangeSet.objects.filter(user=user, kind=ChangeSet.Kind.BULK).latest("pk")
        step("bulk add job", matching, lambda: run_job(bulk))
        bulk.refresh_from_db()
        self.stdout.write(f"bulk: {bulk.changed:,} changed, {bulk.unchanged:,} unchanged, {bulk.status}")
        step("undo request (POST /changes/N/undo/)", bulk.changed, lambda: post(f"/changes/{bulk.pk}/undo/"))
        undo = ChangeSet.objects.get(undoes=bulk)
        step("undo job", bulk.changed, lambda: run_job(undo))
        undo.refresh_from_db()
        self.stdout.write(f"undo: {undo.changed:,} reverted, {undo.skipped:,} skipped, {undo.status}")
        if opts["direct"]:
            movies = Movie.objects.filter(labels__genre=genre)
            direct = step(
                "bulk add direct (catalog.bulk)",
                matching,
                lambda: apply_bulk(movies, add=[add], user=user, on_changed=labels_changed),
            )
            step(
                "undo direct (catalog.bulk)",
                direct.changed,
                lambda: undo_change_set(direct, user=user, on_changed=labels_changed),
            )
        if not opts["skip_export"]:
            total = Movie.objects.count()
            for fmt in ("csv", "json"):
                size = step(f"export {fmt} (GET /export.{fmt})", total, lambda fmt=fmt: self.download(client, fmt))
                self.stdout.write(f"export {fmt}: {size / 1e6:.1f} MB")
        self.stdout.write(
            f"{'step':<38} {'movies':>8} {'seconds':>8} {'movies/s':>9} {'CPU s':>7} {'queries':>8} {'peak RSS +MiB':>14}"
        )
        for name, movies, seconds, cpu, queries, rss in rows:
            rate = movies / seconds if seconds else 0
            self.stdout.write(
                f"{name:<38} {movies:>8,} {seconds:>8.2f} {rate:>9,.0f} {cpu:>7.1f} {queries:>8,} {rss:>14.1f}"
            )

    def download(self, client: Client, fmt: str) -> int:
        answer = client.get(f"/export.{fmt}")
        if answer.status_code != 200 or not answer.streaming:
            raise CommandError(f"export answered {answer.status_code}")
        return sum(len(chunk) for chunk in answer.streaming_content)
