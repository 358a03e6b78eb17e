"""Celery tasks. Thin: they take ids, call catalog/ml services and record progress on a Job.

Conventions (see genreweb/celery.py for queues):
- a job task runs only a job it can move from ``queued`` to ``running`` (one conditional
  UPDATE), so a duplicate message (sweep, redelivery) never runs a job twice;
- only batch-inference shards are ``acks_late`` + ``reject_on_worker_lost``: they are idempotent
  (predictions upsert on (movie, model version)), so a shard whose worker died runs again;
  the other kinds are acknowledged on start and a lost worker is caught by the stale sweep;
- transient errors (database connection, network) are retried a bounded number of times with
  exponential backoff; everything else fails the job with its error and traceback;
- soft/hard time limits per kind; the soft limit fails the job cleanly;
- while a job or shard body runs, a heartbeat ticker thread stamps its row every
  GENREWEB_HEARTBEAT_INTERVAL_S, so the sweep (workers.jobs) can tell a dead worker from a
  slow one within minutes, whatever the broker's visibility timeout;
- every end goes through ``workers.jobs.finish_job`` (one way to a terminal state).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
import time
import traceback
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from celery.signals import worker_process_init, worker_ready, worker_shutdown
from django.conf import settings
from django.db import InterfaceError, OperationalError, close_old_connections, transaction
from django.db.models import Count, F, Sum, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from base.runs import Cancelled, storable_text

from .jobs import TEST_HOOK_PREFIX, append_log, enqueue, finish_job, jsonable  # noqa: F401 - re-exported
from .models import Job, JobShard

logger = logging.getLogger(__name__)

HOUR = 3600
# Hard limits per kind (seconds); the soft limit is a few minutes earlier so the job is
# marked failed cleanly. The Redis visibility timeout (settings) is longer than all of them.
HARD_TIME_LIMITS = {
    Job.Kind.IMPORT: 4 * HOUR,
    Job.Kind.PREPROCESS: 2 * HOUR,
    Job.Kind.SNAPSHOT: 1 * HOUR,
    Job.Kind.TRAIN: 6 * HOUR,
    Job.Kind.EVALUATE: 1 * HOUR,
    Job.Kind.PREDICT: 10 * 60,  # the fan-out step; each shard has SHARD_HARD_LIMIT
    Job.Kind.RETRAIN: 7 * HOUR,
}
SHARD_HARD_LIMIT = 30 * 60
SOFT_MARGIN = 120

TRANSIENT_ERRORS = (OperationalError, InterfaceError, ConnectionError, TimeoutError)
MAX_TRANSIENT_RETRIES = 3


def _drop_broken_connection() -> None:
    """After a transient DB error, let Django reconnect on the next query (not inside atomic)."""
    from django.db import connection

    if not connection.in_atomic_block:
        close_old_connections()


def backoff_s(retries: int) -> int:
    return min(300, 5 * 2**retries)


def limits(kind: str) -> dict:
    hard = HARD_TIME_LIMITS[kind]
    return {"time_limit": hard, "soft_time_limit": hard - SOFT_MARGIN}


class JobCancelled(Cancelled):
    """Raised from a progress callback when the job's cancellation was requested."""


class ServiceFailed(Exception):
    """A service finished but reported failure (e.g. an ImportRun marked failed)."""


class ProgressReporter:
    """The ``progress(message, fraction)`` callback services get.

    Writes progress/step/heartbeat to the Job at most every ``min_interval`` seconds (and at
    the end), logs each new message, and raises JobCancelled once cancellation is requested.
    ``span(a, b)`` maps a sub-step's 0..1 onto a..b of this reporter's range.
    """

    def __init__(
        self, job_id: int, start: float = 0.0, end: float = 1.0, min_interval: float = 1.0, _shared: dict | None = None
    ):
        self.job_id = job_id
        self.start, self.end = start, end
        self.min_interval = min_interval
        self._state = _shared if _shared is not None else {"last_write": None, "last_logged": None}

    def span(self, start: float, end: float) -> ProgressReporter:
        width = self.end - self.start
        return ProgressReporter(
            self.job_id, self.start + width * start, self.start + width * end, self.min_interval, self._state
        )

    def __call__(self, message: str, fraction: float) -> None:
        fraction = min(1.0, max(0.0, float(fraction)))
        now = time.monotonic()
        last = self._state["last_write"]
        if last is not None and now - last < self.min_interval and fraction < 1.0:
            return
        self._state["last_write"] = now
        overall = self.start + (self.end - self.start) * fraction
        message = storable_text(message, 255)
        Job.objects.filter(pk=self.job_id).update(
            progress=round(100 * overall, 2), step=message, heartbeat_at=timezone.now()
        )
        if message != self._state["last_logged"]:
            self._state["last_logged"] = message
            append_log(self.job_id, f"{message} ({100 * overall:.0f}%)")
        if Job.objects.filter(pk=self.job_id, cancel_requested=True).exists():
            raise JobCancelled(f"job #{self.job_id} was cancelled")


# --- job lifecycle -----------------------------------------------------------------------


def claim_job(job_id: int, worker: str = "") -> Job | None:
    """Move a queued job to running; None when it is gone, cancelled or already taken."""
    now = timezone.now()
    claimed = Job.objects.filter(pk=job_id, status=Job.Status.QUEUED, cancel_requested=False).update(
        status=Job.Status.RUNNING, started_at=Coalesce(F("started_at"), Value(now)), heartbeat_at=now, step="started"
    )
    if not claimed:
        logger.info("job %s is not queued any more; message ignored", job_id)
        return None
    append_log(job_id, f"started on {worker or 'a worker'}")
    return Job.objects.get(pk=job_id)


@contextlib.contextmanager
def heartbeat_ticker(task, job_id: int, shard_id: int | None = None):
    """While the body runs, stamp the job's (and shard's) heartbeat every
    GENREWEB_HEARTBEAT_INTERVAL_S from a background thread, so a long service call that
    reports no progress still looks alive, and a killed worker goes silent."""
    interval = settings.GENREWEB_HEARTBEAT_INTERVAL_S
    if task.request.is_eager or interval <= 0:  # in-process: nothing can be lost separately
        yield
        return
    stop = threading.Event()

    def beat() -> None:
        from django.db import connection

        try:
            while not stop.wait(interval):
                try:
                    now = timezone.now()
                    if shard_id is not None:
                        JobShard.objects.filter(pk=shard_id, status=JobShard.Status.RUNNING).update(heartbeat_at=now)
                    Job.objects.filter(pk=job_id, status=Job.Status.RUNNING).update(heartbeat_at=now)
                except Exception:  # noqa: BLE001 - a missed beat is retried at the next tick
                    logger.warning("heartbeat of job %s failed", job_id, exc_info=True)
                    connection.close()
        finally:
            connection.close()  # this thread's own connection

    thread = threading.Thread(target=beat, daemon=True, name=f"heartbeat-job-{job_id}")
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=10)


def run_job(task, job_id: int, body: Callable[[Job, ProgressReporter], dict | None]) -> dict | None:
    """Claim, run ``body`` and record the outcome. ``body`` returning None leaves the job running
    (it finishes elsewhere: batch-predict shards, a retrain's child job)."""
    job = claim_job(job_id, task.request.hostname or "")
    if job is None:
        return None
    progress = ProgressReporter(job_id)
    try:
        with heartbeat_ticker(task, job_id):
            result = body(job, progress)
    except JobCancelled:
        finish_job(job_id, Job.Status.CANCELLED, step="cancelled")
        return None
    except SoftTimeLimitExceeded:
        finish_job(
            job_id,
            Job.Status.FAILED,
            error=f"Time limit exceeded ({limits(job.kind)['soft_time_limit']} s).",
            tb=traceback.format_exc(),
        )
        return None
    except TRANSIENT_ERRORS as exc:
        if task.request.retries < MAX_TRANSIENT_RETRIES:
            countdown = backoff_s(task.request.retries)
            _drop_broken_connection()
            Job.objects.filter(pk=job_id, status=Job.Status.RUNNING).update(
                status=Job.Status.QUEUED,
                enqueued_at=timezone.now() + timedelta(seconds=countdown),
                step=f"transient error, retrying in {countdown}s",
            )
            append_log(
                job_id,
                f"transient error {type(exc).__name__}: {exc}; retry "
                f"{task.request.retries + 1}/{MAX_TRANSIENT_RETRIES} in {countdown}s",
            )
            raise task.retry(exc=exc, countdown=countdown) from exc
        finish_job(
            job_id,
            Job.Status.FAILED,
            error=f"{type(exc).__name__}: {exc} (after {MAX_TRANSIENT_RETRIES} retries)",
            tb=traceback.format_exc(),
        )
        return None
    except Exception as exc:
        logger.exception("job %s failed", job_id)
        finish_job(job_id, Job.Status.FAILED, error=f"{type(exc).__name__}: {exc}", tb=traceback.format_exc())
        return None
    if result is not None:
        finish_job(job_id, Job.Status.SUCCEEDED, result=result, step="done")
    return result


# --- services per kind (imported late: workers -> ml -> catalog, and tasks load fast) --------


@contextlib.contextmanager
def same_import_lock(source: str, target: str, progress: ProgressReporter):
    """Serialise imports of the same source + path across all workers (Postgres advisory lock).

    Two identical imports at once would otherwise race on the same TMDB/IMDb ids; in turn,
    the second finds everything already there. Waiting stays cancellable. SQLite already
    serialises writers, so there it is a no-op.
    """
    from django.db import connection

    if connection.vendor != "postgresql":
        yield
        return
    key = int.from_bytes(hashlib.sha256(f"genreweb-import:{source}:{target}".encode()).digest()[:8], "big", signed=True)
    with connection.cursor() as cursor:
        while True:
            cursor.execute("SELECT pg_try_advisory_lock(%s)", [key])
            if cursor.fetchone()[0]:
                break
            progress(f"waiting for another {source} import of {target} to finish", 0.0)
            time.sleep(0.5)
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [key])


def _import_body(job: Job, progress: ProgressReporter) -> dict:
    from catalog.importers import run_import

    params = {k: v for k, v in job.params.items() if not k.startswith(TEST_HOOK_PREFIX)}
    source = params.pop("source")
    delay = float(job.params.get(TEST_HOOK_PREFIX + "batch_delay_s") or 0) if settings.GENREWEB_TEST_HOOKS else 0

    def report(message: str, fraction: float) -> None:
        progress(message, fraction)
        if delay:
            time.sleep(delay)  # test hook: a slow import, to kill its worker mid-way

    def record_run(run) -> None:  # so a sweep that finds this worker dead ends the run too
        Job.objects.filter(pk=job.pk).update(result={**job.result, "import_run_id": run.pk})

    with same_import_lock(source, str(params.get("path") or params.get("start_date") or ""), progress):
        run = run_import(source, params, progress=report, on_run=record_run)
    summary = {
        "import_run_id": run.pk,
        "source": source,
        **{
            name: getattr(run, name)
            for name in ("created", "updated", "unchanged", "skipped", "posters_stored")
            if hasattr(run, name)
        },
    }
    if getattr(run, "status", "") == "failed":
        raise ServiceFailed(f"import run #{run.pk} failed: {run.error}")
    return summary


def _preprocess_body(job: Job, progress: ProgressReporter) -> dict:
    from catalog.preprocessing import preprocess_posters

    return {"summary": jsonable(preprocess_posters(**job.params, progress=progress))}


def _build_snapshot(options: dict, user, progress: ProgressReporter):
    from ml.services.snapshots import build_snapshot

    return build_snapshot(**options, user=user, progress=progress)


def _snapshot_body(job: Job, progress: ProgressReporter) -> dict:
    snapshot = _build_snapshot(job.params, job.requested_by, progress)
    return {"snapshot_id": snapshot.pk, "snapshot": jsonable(snapshot)}


def _model_version_id(trained) -> int:
    """train_model returns the training run or the model version; find the version id."""
    if trained._meta.model_name == "modelversion":
        return trained.pk
    version_id = getattr(trained, "model_version_id", None)
    if version_id is None and hasattr(trained, "model_version"):
        version_id = trained.model_version.pk
    if version_id is None:
        raise ServiceFailed(f"training {trained} produced no model version")
    return version_id


def _train(snapshot_id: int, config, user, progress: ProgressReporter) -> tuple[Any, int]:
    from ml.services.training import train_model

    trained = train_model(snapshot_id, config, user=user, progress=progress)
    return trained, _model_version_id(trained)


def _evaluate(model_version_id: int, snapshot_id: int | None, progress: ProgressReporter):
    from ml.services.evaluation import evaluate_model

    kwargs = {"snapshot_id": snapshot_id} if snapshot_id else {}
    return evaluate_model(model_version_id, progress=progress, **kwargs)


def _train_body(job: Job, progress: ProgressReporter) -> dict:
    trained, version_id = _train(job.params["snapshot_id"], job.params["config"], job.requested_by, progress)
    return {"model_version_id": version_id, "training": jsonable(trained)}


def _evaluate_body(job: Job, progress: ProgressReporter) -> dict:
    evaluation = _evaluate(job.params["model_version_id"], job.params.get("snapshot_id"), progress)
    return {"model_version_id": job.params["model_version_id"], "evaluation": jsonable(evaluation)}


def _retrain_body(job: Job, progress: ProgressReporter) -> None:
    """snapshot -> train -> evaluate here, then a batch-predict child job; the retrain job
    finishes when that child does (see _child_finished)."""
    params = job.params
    snapshot = _build_snapshot(params.get("snapshot", {}), job.requested_by, progress.span(0.0, 0.1))
    _, version_id = _train(snapshot.pk, params["config"], job.requested_by, progress.span(0.1, 0.8))
    evaluation = _evaluate(version_id, snapshot.pk, progress.span(0.8, 0.9))
    predict_params = {"model_version_id": version_id}
    if params.get("shard_size"):
        predict_params["shard_size"] = params["shard_size"]
    child = enqueue(Job.Kind.PREDICT, predict_params, job.requested_by, parent=job)
    Job.objects.filter(pk=job.pk).update(
        progress=90.0,
        step=f"batch predict (job #{child.pk})",
        result={
            "snapshot_id": snapshot.pk,
            "model_version_id": version_id,
            "evaluation": jsonable(evaluation),
            "predict_job_id": child.pk,
        },
    )
    append_log(
        job.pk,
        f"snapshot #{snapshot.pk}, model version #{version_id} evaluated; predicting all movies in job #{child.pk}",
    )
    return None


def _job_task(kind: str, name: str, body):
    @shared_task(name=name, bind=True, max_retries=MAX_TRANSIENT_RETRIES, **limits(kind))
    def task(self, job_id: int):
        return run_job(self, job_id, body)

    task.__doc__ = f"Run a {kind} job (by id)."
    return task


run_import = _job_task(Job.Kind.IMPORT, "workers.run_import", _import_body)
run_preprocess = _job_task(Job.Kind.PREPROCESS, "workers.run_preprocess", _preprocess_body)
run_snapshot = _job_task(Job.Kind.SNAPSHOT, "workers.run_snapshot", _snapshot_body)
run_train = _job_task(Job.Kind.TRAIN, "workers.run_train", _train_body)
run_evaluate = _job_task(Job.Kind.EVALUATE, "workers.run_evaluate", _evaluate_body)
run_retrain = _job_task(Job.Kind.RETRAIN, "workers.run_retrain", _retrain_body)


# --- batch prediction: fan-out over shards ---------------------------------------------------


def _create_shards(job: Job) -> None:
    from catalog.models import Movie

    shard_size = job.params.get("shard_size") or settings.GENREWEB_PREDICT_SHARD_SIZE
    movies = Movie.objects.order_by("pk")
    if job.params.get("movie_ids"):
        movies = movies.filter(pk__in=job.params["movie_ids"])
    movie_ids = list(movies.values_list("pk", flat=True))
    missing = len(job.params.get("movie_ids") or []) - len(movie_ids) if job.params.get("movie_ids") else 0
    shards = [
        JobShard(job=job, index=i, movie_ids=movie_ids[start : start + shard_size])
        for i, start in enumerate(range(0, len(movie_ids), shard_size))
    ]
    with transaction.atomic():
        if not JobShard.objects.filter(job=job).exists():  # a redelivered fan-out keeps the first split
            JobShard.objects.bulk_create(shards, batch_size=500)
            Job.objects.filter(pk=job.pk).update(
                result={
                    "movies": len(movie_ids),
                    "shard_size": shard_size,
                    "shards": len(shards),
                    "unknown_movie_ids": missing,
                }
            )
    if missing:
        append_log(job.pk, f"{missing} requested movie id(s) do not exist and are skipped")


def dispatch_pending_shards(job: Job) -> int:
    import uuid

    now = timezone.now()
    pending = list(JobShard.objects.filter(job=job, status=JobShard.Status.PENDING).only("pk"))
    for shard in pending:
        shard.celery_task_id = str(uuid.uuid4())
        shard.heartbeat_at = now  # "sent at" until it runs; the sweep re-sends it if it vanishes
    JobShard.objects.bulk_update(pending, ["celery_task_id", "heartbeat_at"], batch_size=500)
    Job.objects.filter(pk=job.pk).update(heartbeat_at=now)
    for shard in pending:
        predict_shard.apply_async(args=[job.pk, shard.pk], task_id=shard.celery_task_id)
    return len(pending)


def _predict_body(job: Job, progress: ProgressReporter) -> None:
    _create_shards(job)
    total = JobShard.objects.filter(job=job).count()
    sent = dispatch_pending_shards(job)
    append_log(
        job.pk,
        f"{total} shard(s) of up to "
        f"{job.params.get('shard_size') or settings.GENREWEB_PREDICT_SHARD_SIZE} movies; sent {sent}"
        + (f", {total - sent} reused from job #{job.retry_of_id}" if total - sent else ""),
    )
    account_shards(job.pk)  # finishes at once when there is nothing to do
    return None


@shared_task(
    name="workers.start_batch_predict", bind=True, max_retries=MAX_TRANSIENT_RETRIES, **limits(Job.Kind.PREDICT)
)
def start_batch_predict(self, job_id: int):
    """Split a batch-predict job into shards and send one task per pending shard."""
    return run_job(self, job_id, _predict_body)


class ShardProgress:
    """Inside a shard: raise JobCancelled between batches once the job is cancelled."""

    def __init__(self, job_id: int, min_interval: float = 1.0):
        self.job_id, self.min_interval, self.last = job_id, min_interval, time.monotonic()

    def __call__(self, message: str, fraction: float) -> None:
        if time.monotonic() - self.last >= self.min_interval:
            self.last = time.monotonic()
            if Job.objects.filter(pk=self.job_id, cancel_requested=True).exists():
                raise JobCancelled(f"job #{self.job_id} was cancelled")


def _run_predictions(model_version_id: int, movie_ids: list[int], progress) -> int:
    from ml.services.inference import predict_movies

    return predict_movies(model_version_id, movie_ids, progress=progress)


@shared_task(
    name="workers.predict_shard",
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=MAX_TRANSIENT_RETRIES,
    time_limit=SHARD_HARD_LIMIT,
    soft_time_limit=SHARD_HARD_LIMIT - SOFT_MARGIN,
)
def predict_shard(self, job_id: int, shard_id: int):
    """Predict one shard's movies (idempotent upsert), then update the job's bookkeeping."""
    shard = JobShard.objects.select_related("job").filter(pk=shard_id, job_id=job_id).first()
    if shard is None:
        return None
    job = shard.job
    if shard.status in (JobShard.Status.SUCCEEDED, JobShard.Status.CANCELLED, JobShard.Status.FAILED):
        account_shards(job_id)  # a duplicate message: only make sure the job is accounted
        return shard.predictions_written
    if job.cancel_requested or job.status == Job.Status.CANCELLED:
        JobShard.objects.filter(pk=shard_id).exclude(status=JobShard.Status.SUCCEEDED).update(
            status=JobShard.Status.CANCELLED, finished_at=timezone.now()
        )
        account_shards(job_id)
        return None
    if shard.celery_task_id and self.request.id != shard.celery_task_id:
        # An old message of a shard the sweep re-sent (its worker was lost): the new one runs it.
        logger.info("shard %s: message %s superseded by %s; ignored", shard_id, self.request.id, shard.celery_task_id)
        return None
    started = time.monotonic()
    now = timezone.now()
    claimed = JobShard.objects.filter(
        pk=shard_id,
        status__in=(JobShard.Status.PENDING, JobShard.Status.RUNNING),
        celery_task_id=shard.celery_task_id,
    ).update(
        status=JobShard.Status.RUNNING,
        attempts=F("attempts") + 1,
        started_at=now,
        heartbeat_at=now,
        worker=self.request.hostname or "",
    )
    if not claimed:
        return None
    outcome: dict[str, Any]
    try:
        hooks = job.params if settings.GENREWEB_TEST_HOOKS else {}
        with heartbeat_ticker(self, job_id, shard_id):
            if hooks.get(TEST_HOOK_PREFIX + "shard_delay_s"):
                time.sleep(float(hooks[TEST_HOOK_PREFIX + "shard_delay_s"]))
            if hooks.get(TEST_HOOK_PREFIX + "fail_shard") == shard.index:
                raise RuntimeError(f"injected failure in shard {shard.index} (test hook)")
            written = _run_predictions(job.params["model_version_id"], shard.movie_ids, ShardProgress(job_id))
        outcome = {"status": JobShard.Status.SUCCEEDED, "predictions_written": written, "error": ""}
    except JobCancelled:
        outcome = {"status": JobShard.Status.CANCELLED, "error": ""}
    except SoftTimeLimitExceeded:
        outcome = {"status": JobShard.Status.FAILED, "error": f"time limit exceeded ({SHARD_HARD_LIMIT} s)"}
    except TRANSIENT_ERRORS as exc:
        if self.request.retries < MAX_TRANSIENT_RETRIES:
            _drop_broken_connection()
            JobShard.objects.filter(pk=shard_id).update(
                status=JobShard.Status.PENDING, error=f"retrying after {type(exc).__name__}: {exc}"
            )
            raise self.retry(exc=exc, countdown=backoff_s(self.request.retries)) from exc
        outcome = {"status": JobShard.Status.FAILED, "error": f"{type(exc).__name__}: {exc}"}
    except Exception as exc:
        logger.exception("shard %s of job %s failed", shard.index, job_id)
        outcome = {
            "status": JobShard.Status.FAILED,
            "error": f"{type(exc).__name__}: {exc}\n{traceback.format_exc()[-4000:]}",
        }
    outcome["error"] = storable_text(outcome["error"], 10_000)
    # Only the run that holds the shard records its end (not one the sweep superseded).
    JobShard.objects.filter(pk=shard_id, status=JobShard.Status.RUNNING, celery_task_id=shard.celery_task_id).update(
        finished_at=timezone.now(),
        heartbeat_at=timezone.now(),
        duration_s=round(time.monotonic() - started, 3),
        **outcome,
    )
    account_shards(job_id)
    return outcome.get("predictions_written")


def account_shards(job_id: int) -> None:
    """Progress = fraction of shards done; when none is left, finish the job with totals.

    Counting rows in the database (not a chord callback) works the same on every broker and
    stays right when a shard message is delivered twice.
    """
    with transaction.atomic():
        job = Job.objects.select_for_update().get(pk=job_id)
        if job.status != Job.Status.RUNNING:
            return
        counts = dict(JobShard.objects.filter(job=job).values_list("status").annotate(n=Count("pk")))
        total = sum(counts.values())
        done = sum(
            counts.get(s, 0) for s in (JobShard.Status.SUCCEEDED, JobShard.Status.FAILED, JobShard.Status.CANCELLED)
        )
        fraction = done / total if total else 1.0
        now = timezone.now()
        step = f"{done}/{total} shards done"
        Job.objects.filter(pk=job_id).update(progress=round(100 * fraction, 2), step=step, heartbeat_at=now)
        if job.parent_id:
            Job.objects.filter(pk=job.parent_id, status=Job.Status.RUNNING).update(
                progress=round(90 + 10 * fraction, 2), step=f"batch predict (job #{job_id}): {step}", heartbeat_at=now
            )
        if done < total:
            return
    shards = JobShard.objects.filter(job_id=job_id)
    written = shards.filter(status=JobShard.Status.SUCCEEDED).aggregate(n=Sum("predictions_written"))["n"] or 0
    failed = list(shards.filter(status=JobShard.Status.FAILED).values("index", "error", "attempts"))
    elapsed = (now - job.started_at).total_seconds() if job.started_at else None
    movies_done = sum(
        len(ids) for ids in shards.filter(status=JobShard.Status.SUCCEEDED).values_list("movie_ids", flat=True)
    )
    result = {
        "model_version_id": job.params["model_version_id"],
        "shards_total": total,
        "shards_succeeded": counts.get(JobShard.Status.SUCCEEDED, 0),
        "shards_reused": shards.filter(reused=True).count(),
        "shards_failed": [
            {"index": f["index"], "error": f["error"].splitlines()[0] if f["error"] else ""} for f in failed
        ],
        "shards_cancelled": counts.get(JobShard.Status.CANCELLED, 0),
        "movies_predicted": movies_done,
        "predictions_written": written,
        "redelivered_shards": shards.filter(attempts__gt=1).count(),
        "elapsed_s": round(elapsed, 3) if elapsed is not None else None,
        "movies_per_s": round(movies_done / elapsed, 1) if elapsed else None,
    }
    if failed:
        first = failed[0]
        finish_job(
            job_id,
            Job.Status.FAILED,
            result=result,
            error=f"{len(failed)} of {total} shard(s) failed; shard {first['index']}: {first['error']}",
            step=f"{len(failed)} shard(s) failed",
        )
    elif counts.get(JobShard.Status.CANCELLED) or job.cancel_requested:
        finish_job(job_id, Job.Status.CANCELLED, result=result, step="cancelled")
    else:
        finish_job(
            job_id, Job.Status.SUCCEEDED, result=result, step=f"{movies_done} movies predicted in {total} shard(s)"
        )


@shared_task(name="workers.ping")
def ping(value: str = "pong") -> str:
    """Trivial task proving the broker -> worker -> result path end to end."""
    return value


# --- the stale-job sweep inside every worker -------------------------------------------------

_sweeper_stop = threading.Event()


def _sweep_loop(interval: float) -> None:
    from .jobs import requeue_stale_jobs

    while True:
        try:
            report = requeue_stale_jobs()
            if report.requeued_jobs or report.requeued_shards or report.failed_lost_jobs:
                logger.warning("stale-job sweep: %s", report)
        except Exception:
            logger.exception("stale-job sweep failed; trying again later")
        finally:
            _drop_broken_connection()
        if interval <= 0 or _sweeper_stop.wait(interval):
            return


@worker_ready.connect
def start_stale_job_sweep(sender=None, **kwargs) -> None:
    """Recover lost messages at worker start and then periodically (GENREWEB_REQUEUE_INTERVAL_S).

    Runs in a thread of the worker's main process; it touches only the database and broker
    (never CUDA), so forked pool children are unaffected.
    """
    if getattr(settings, "CELERY_TASK_ALWAYS_EAGER", False):
        return
    _sweeper_stop.clear()
    threading.Thread(
        target=_sweep_loop, args=(settings.GENREWEB_REQUEUE_INTERVAL_S,), daemon=True, name="stale-job-sweep"
    ).start()


@worker_process_init.connect
def limit_torch_threads(**kwargs) -> None:
    """Cap PyTorch's intra-op threads in each pool process (GENREWEB_TORCH_THREADS).

    Every process otherwise takes one thread per core, so N worker processes on one CPU
    machine oversubscribe it N times over (measured: 2 processes on 2 cores were slower than
    1). Runs in the forked child, so the parent never imports torch.
    """
    threads = settings.GENREWEB_TORCH_THREADS
    if threads > 0:
        import torch

        torch.set_num_threads(threads)


@worker_shutdown.connect
def stop_stale_job_sweep(sender=None, **kwargs) -> None:
    _sweeper_stop.set()
