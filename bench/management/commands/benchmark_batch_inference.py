"""Measure batch-inference throughput (movies/s) through the real job path with 1..N worker processes.

For each worker count it starts that many Celery worker processes (concurrency 1 each, queues
default+gpu) on the configured broker and database, runs a small warm-up job so every process
has loaded the model, then times one batch-predict job over the chosen movies from enqueue to
the job's last shard. Existing predictions of that model for those movies are deleted first,
so every run inserts the same number of rows.

Use Postgres + Redis (SQLite serialises writers). Example:
  DATABASE_URL=postgres://... CELERY_BROKER_URL=redis://.../0 \\
    python manage.py benchmark_batch_inference --model-version 3 --movies 2000 --workers 1 2
With --use-running-workers it starts nothing and measures whatever fleet consumes the queues
(e.g. GPU machines), labelling the row with --workers.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from catalog.models import Movie
from ml.models import ModelVersion, Prediction
from workers.jobs import enqueue
from workers.models import Job


class Command(BaseCommand):
    help = "Batch-inference throughput (movies/s) through the job/shard path with 1..N worker processes."

    def add_arguments(self, parser):
        parser.add_argument("--model-version", type=int, required=True, help="ModelVersion id to predict with")
        parser.add_argument("--movies", type=int, default=0, help="how many catalog movies (lowest ids); 0 = all")
        parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker process counts to try")
        parser.add_argument("--shard-size", type=int, default=128)
        parser.add_argument("--timeout", type=float, default=3600, help="seconds to wait for one job")
        parser.add_argument(
            "--use-running-workers",
            action="store_true",
            help="start no workers; measure the fleet already consuming the queues",
        )
        parser.add_argument("--output", type=Path, help="append the result rows to this Markdown file")

    def handle(
        self,
        *args,
        model_version: int,
        movies: int,
        workers: list[int],
        shard_size: int,
        timeout: float,
        use_running_workers: bool,
        output: Path | None,
        **options,
    ):
        version = ModelVersion.objects.filter(pk=model_version).first()
        if version is None:
            raise CommandError(f"No model version {model_version}; train one first (python manage.py train_model ...).")
        if settings.CELERY_TASK_ALWAYS_EAGER:
            raise CommandError("CELERY_TASK_ALWAYS_EAGER is on: nothing would go through workers.")
        movie_ids = list(Movie.objects.order_by("pk").values_list("pk", flat=True)[: movies or None])
        if not movie_ids or (movies and len(movie_ids) < movies):
            raise CommandError(
                f"The catalog has {len(movie_ids)} movies, fewer than --movies {movies}; import some "
                "first (e.g. python manage.py import_csv ../shared/data/devset)."
            )
        if settings.DATABASES["default"]["ENGINE"].endswith("sqlite3"):
            self.stderr.write("warning: SQLite serialises writers; use DATABASE_URL=postgres://... for real figures")
        rows = []
        for count in workers:
            fleet = [] if use_running_workers else self._start_workers(count)
            try:
                self._run_job(version.pk, movie_ids[: max(count * 4, 1)], 1, timeout, "warm-up")
                Prediction.objects.filter(model_version=version, movie_id__in=movie_ids).delete()
                job = self._run_job(version.pk, movie_ids, shard_size, timeout, f"{count} worker(s)")
            finally:
                self._stop_workers(fleet)
            shard_seconds = sum(s.duration_s or 0 for s in job.shards.all())
            wall = (job.finished_at - job.created_at).total_seconds()
            rows.append(
                {
                    "workers": count,
                    "movies": len(movie_ids),
                    "shards": job.result["shards_total"],
                    "shard_size": shard_size,
                    "wall_s": round(wall, 2),
                    "movies_per_s": round(len(movie_ids) / wall, 1),
                    "per_worker_movies_per_s": round(len(movie_ids) / shard_seconds, 1) if shard_seconds else None,
                    "db_rows_per_s": round(job.result["predictions_written"] / wall, 1),
                    "model": version.config_name or str(version),
                    "job": job.pk,
                }
            )
            self.stdout.write(
                f"  {count} worker(s): {rows[-1]['movies_per_s']} movies/s "
                f"({len(movie_ids)} movies in {wall:.1f} s, job #{job.pk})"
            )
        table = self._table(rows)
        self.stdout.write(table)
        if output:
            output.parent.mkdir(parents=True, exist_ok=True)
            with open(output, "a") as handle:
                handle.write(table + "\n")

    def _run_job(self, version_id: int, movie_ids: list[int], shard_size: int, timeout: float, label: str) -> Job:
        job = enqueue("predict", {"model_version_id": version_id, "movie_ids": movie_ids, "shard_size": shard_size})
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            job.refresh_from_db()
            if job.is_finished:
                break
            if job.step != last:
                last = job.step
                self.stdout.write(f"    {label}: {job.step} ({job.progress:.0f}%)")
            time.sleep(0.5)
        else:
            raise CommandError(f"{label}: job #{job.pk} did not finish within {timeout:.0f} s (step: {job.step}).")
        if job.status != Job.Status.SUCCEEDED:
            raise CommandError(f"{label}: job #{job.pk} {job.status}: {job.error}")
        return job

    def _start_workers(self, count: int) -> list[subprocess.Popen]:
        log_dir = settings.DATA_DIR / "log"
        log_dir.mkdir(parents=True, exist_ok=True)
        fleet = []
        # Share the cores between the processes instead of each taking all of them.
        env = {
            **os.environ,
            "GENREWEB_TORCH_THREADS": os.environ.get("GENREWEB_TORCH_THREADS")
            or str(max(1, (os.cpu_count() or 1) // count)),
        }
        for i in range(count):
            log = open(log_dir / f"benchmark-worker-{i}.log", "ab")
            fleet.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "celery",
                        "-A",
                        "genreweb",
                        "worker",
                        "-Q",
                        "default,gpu",
                        "--concurrency",
                        "1",
                        "--prefetch-multiplier",
                        "1",
                        "--without-gossip",
                        "--without-mingle",
                        "--loglevel",
                        "WARNING",
                        "-n",
                        f"bench{i}-{os.getpid()}@%h",
                    ],
                    cwd=settings.BASE_DIR,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
        from celery import current_app

        deadline = time.monotonic() + 180
        prefix = "bench"
        while True:
            replies = current_app.control.ping(timeout=1.0)
            ours = [
                name for reply in replies for name in reply if name.startswith(prefix) and f"-{os.getpid()}@" in name
            ]
            if len(ours) == count:
                return fleet
            if time.monotonic() > deadline or any(p.poll() is not None for p in fleet):
                self._stop_workers(fleet)
                raise CommandError(f"{len(ours)} of {count} workers started; see {log_dir}/benchmark-worker-*.log")

    @staticmethod
    def _stop_workers(fleet: list[subprocess.Popen]) -> None:
        for proc in fleet:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in fleet:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)

    @staticmethod
    def _table(rows: list[dict]) -> str:
        columns = [
            "model",
            "workers",
            "movies",
            "shard_size",
            "shards",
            "wall_s",
            "movies_per_s",
            "per_worker_movies_per_s",
            "db_rows_per_s",
        ]
        lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        lines += ["| " + " | ".join(str(row[c]) for c in columns) + " |" for row in rows]
        return "\n".join(lines)
