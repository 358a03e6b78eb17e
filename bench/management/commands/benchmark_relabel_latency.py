"""Relabel latency while another process writes the way a training job does.

Times the relabel a person makes on a movie page (GET the page, POST the new label set,
through Django's test client in this process: full middleware, views and queries), first on
a quiet database and then while a second process (this command with --writer) writes like a
training / batch-inference job: job progress and log updates, and predictions in batches of
``--batch`` rows per transaction. Reports p50/p95 of both.

Use a separate database with movies in it, e.g. on the embedded SQLite default:

    GENREWEB_DATA_DIR=/tmp/bench python manage.py migrate
    GENREWEB_DATA_DIR=/tmp/bench python manage.py seed_synthetic --movies 5000
    GENREWEB_DATA_DIR=/tmp/bench python manage.py benchmark_relabel_latency
    # before WAL, SQLite's classic rollback journal:
    GENREWEB_DATA_DIR=/tmp/bench GENREWEB_SQLITE_JOURNAL_MODE=delete python manage.py benchmark_relabel_latency

and with DATABASE_URL=postgres://... for Postgres. The rows it writes (a benchmark job, model
version and its predictions, label changes of the benchmark user) stay in that database.
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction
from django.test import Client
from django.utils import timezone

from bench.management.commands.benchmark_pages import percentile
from catalog.models import Genre, Movie
from ml.models import DatasetSnapshot, ModelVersion, Prediction
from ml.services.inference import UPDATE_FIELDS, prediction_fields
from workers.models import Job

WRITER_NAME = "benchmark writer"
HIDDEN_INPUT = re.compile(r'<input type="hidden" name="(?P<name>[^"]+)" value="(?P<value>[^"]*)"')


class Command(BaseCommand):
    help = "p50/p95 of a relabel (movie page + label POST), quiet and while another process writes like a job."

    def add_arguments(self, parser):
        parser.add_argument("--requests", type=int, default=40, help="timed relabels per phase")
        parser.add_argument("--batch", type=int, default=256, help="writer: prediction rows per transaction")
        parser.add_argument(
            "--pause", type=float, default=0.02, help='writer: seconds of "compute" between its transactions'
        )
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--writer", action="store_true", help="internal: be the writing process")
        parser.add_argument("--writer-seconds", type=float, default=600, help="writer: stop after this long")

    def handle(self, *args, **opts):
        if Movie.objects.count() < 50 or not Genre.objects.exists():
            raise CommandError("needs at least 50 movies and some genres; run seed_synthetic first")
        if opts["writer"]:
            return self.write_like_a_job(opts["batch"], opts["pause"], opts["writer_seconds"])
        rng = random.Random(opts["seed"])
        user, _ = get_user_model().objects.get_or_create(username="benchmark-relabeler")
        client = Client()
        client.force_login(user)
        movie_ids = list(Movie.objects.order_by("pk").values_list("pk", flat=True)[:2000])
        genre_ids = list(Genre.objects.values_list("pk", flat=True))
        self.stdout.write(
            f"{connection.vendor} ({self.journal_mode()}), {len(movie_ids)} movies, "
            f"{opts['requests']} relabels per phase, writer batch {opts['batch']} rows"
        )
        for _ in range(3):  # warm-up
            self.relabel(client, rng.choice(movie_ids), genre_ids, rng)
        phases = {"quiet": self.measure(client, movie_ids, genre_ids, rng, opts["requests"])}
        writer = subprocess.Popen(
            [
                sys.executable,
                "manage.py",
                "benchmark_relabel_latency",
                "--writer",
                "--batch",
                str(opts["batch"]),
                "--pause",
                str(opts["pause"]),
            ],
            cwd=Path(settings.BASE_DIR),
            env=os.environ.copy(),
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            line = writer.stdout.readline()  # "writing" once its first transaction committed
            if "writing" not in line:
                raise CommandError(f"the writer did not start: {line!r}")
            started = time.monotonic()
            phases["while a job writes"] = self.measure(client, movie_ids, genre_ids, rng, opts["requests"])
            elapsed = time.monotonic() - started
        finally:
            writer.terminate()
            writer.wait(timeout=60)
        job = Job.objects.filter(step=WRITER_NAME).order_by("-pk").first()
        self.stdout.write(
            f"writer: {job.result.get('transactions', 0) if job else 0} transactions in the run "
            f"(during the timed phase: {elapsed:.1f} s)"
        )
        self.stdout.write("| phase | page GET p50 / p95 ms | relabel POST p50 / p95 ms | total p50 / p95 ms |")
        self.stdout.write("|---|---|---|---|")
        for name, rows in phases.items():
            cells = [f"{percentile(col, 0.5):.0f} / {percentile(col, 0.95):.0f}" for col in zip(*rows, strict=False)]
            self.stdout.write(f"| {name} | " + " | ".join(cells) + " |")

    def journal_mode(self) -> str:
        if connection.vendor != "sqlite":
            return "n/a"
        with connection.cursor() as cursor:
            return cursor.execute("PRAGMA journal_mode").fetchone()[0]

    def measure(self, client, movie_ids, genre_ids, rng, n) -> list[tuple[float, float, float]]:
        return [self.relabel(client, rng.choice(movie_ids), genre_ids, rng) for _ in range(n)]

    def relabel(self, client, movie_id, genre_ids, rng) -> tuple[float, float, float]:
        """(page ms, POST ms, total ms) of opening a movie and saving one or two genres."""
        start = time.perf_counter()
        page = client.get(f"/movies/{movie_id}/")
        if page.status_code != 200:
            raise CommandError(f"movie page answered {page.status_code}")
        loaded = time.perf_counter()
        # Whatever hidden fields the relabel form carries (e.g. a label version) go back with it.
        data = {m["name"]: m["value"] for m in HIDDEN_INPUT.finditer(page.content.decode())}
        data.pop("csrfmiddlewaretoken", None)
        data.update(genres=[str(g) for g in rng.sample(genre_ids, k=min(2, len(genre_ids)))], reason="benchmark")
        response = client.post(f"/movies/{movie_id}/labels/", data)
        if response.status_code not in (200, 302):
            raise CommandError(f"relabel answered {response.status_code}")
        done = time.perf_counter()
        return (loaded - start) * 1000, (done - loaded) * 1000, (done - start) * 1000

    def write_like_a_job(self, batch: int, pause: float, seconds: float) -> None:
        """Progress/log updates and prediction batches, as a training or batch-predict job writes them."""
        genres = list(Genre.objects.order_by("name").values_list("name", flat=True))
        snapshot, _ = DatasetSnapshot.objects.get_or_create(
            name=WRITER_NAME, defaults={"genres": genres, "content_hash": "b" * 64, "n_members": 0}
        )
        version, _ = ModelVersion.objects.get_or_create(
            name=WRITER_NAME,
            defaults={
                "snapshot": snapshot,
                "config_name": "benchmark",
                "genres": genres,
                "thresholds": [0.5] * len(genres),
                "artifact_path": "models/none",
                "checksum": "b" * 64,
            },
        )
        job = Job.objects.create(kind="train", status=Job.Status.RUNNING, step=WRITER_NAME, started_at=timezone.now())
        movie_ids = list(Movie.objects.order_by("pk").values_list("pk", flat=True))
        rng = np.random.default_rng(0)
        thresholds = np.full(len(genres), 0.5)
        deadline, transactions, offset = time.monotonic() + seconds, 0, 0
        stop = []
        signal.signal(signal.SIGTERM, lambda *_: stop.append(True))  # finish the transaction, then stop
        while time.monotonic() < deadline and not stop:
            chunk = movie_ids[offset : offset + batch] or movie_ids[:batch]
            offset = offset + batch if offset + batch < len(movie_ids) else 0
            probs = rng.random((len(chunk), len(genres)))
            # As ml.services.inference writes a batch: rows built first, then one short upsert.
            rows = [
                Prediction(
                    movie_id=movie_id,
                    model_version=version,
                    **prediction_fields(genres, thresholds, row, row >= thresholds, []),
                )
                for movie_id, row in zip(chunk, probs, strict=False)
            ]
            with transaction.atomic():
                Prediction.objects.bulk_create(
                    rows, update_conflicts=True, unique_fields=["movie", "model_version"], update_fields=UPDATE_FIELDS
                )
            transactions += 1
            with transaction.atomic():
                job.progress = min(100.0, transactions / 10)
                job.log = (job.log + [f"batch {transactions}: {len(chunk)} predictions"])[-50:]
                job.result = {"transactions": transactions}
                job.save(update_fields=["progress", "log", "result"])
            if transactions == 1:
                self.stdout.write("writing")
                self.stdout.flush()
            if pause:
                time.sleep(pause)
        job.status, job.finished_at = Job.Status.CANCELLED, timezone.now()
        job.save(update_fields=["status", "finished_at"])
