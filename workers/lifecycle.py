"""How a job runs and ends: claim it, run its kind's service with a progress reporter and a
heartbeat, record the outcome. The one way to a terminal state is ``finish_job``.

- a job task runs only a job it can move from ``queued`` to ``running`` (one conditional
  UPDATE), so a duplicate message (sweep, redelivery) never runs a job twice;
- transient errors (database connection, network) are retried a bounded number of times with
  exponential backoff; everything else fails the job with its error and traceback;
- the soft time limit (per kind, workers.kinds) fails the job cleanly;
- while a job or shard body runs, a heartbeat ticker thread stamps its row every
  GENREWEB_HEARTBEAT_INTERVAL_S, so the sweep (workers.sweep) can tell a dead worker from a
  slow one within minutes, whatever the broker's visibility timeout;
- ``finish_job(job_id, status, ...)``, used by the worker, by cancel and by the sweep, removes
  credentials, closes the job's open shards and its ImportRun, and cannot fail on what it stores.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
import time
import traceback
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import InterfaceError, OperationalError, close_old_connections, models, transaction
from django.db.models import F, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from base import events
from base.runs import Cancelled, storable_json, storable_text, without_secrets

from . import kinds
from .models import MAX_LOG_LINES, Job, JobShard

logger = logging.getLogger(__name__)

TRANSIENT_ERRORS = (OperationalError, InterfaceError, ConnectionError, TimeoutError)
MAX_TRANSIENT_RETRIES = 3


def _drop_broken_connection() -> None:
    """After a transient DB error, let Django reconnect on the next query (not inside atomic)."""
    from django.db import connection

    if not connection.in_atomic_block:
        close_old_connections()


def backoff_s(retries: int) -> int:
    return min(300, 5 * 2**retries)


class JobCancelled(Cancelled):
    """Raised from a progress callback when the job's cancellation was requested."""


class ProgressReporter:
    """The ``progress(message, fraction)`` callback services get.

    Writes progress/step/heartbeat to the Job at most every ``min_interval`` seconds (and at
    the end), logs each new message, and raises JobCancelled once cancellation is requested.
    A sub-step gets its share through ``base.progress.scaled``.
    """

    def __init__(self, job_id: int, min_interval: float = 1.0):
        self.job_id = job_id
        self.min_interval = min_interval
        self.last_write: float | None = None
        self.last_logged: str | None = None

    def __call__(self, message: str, fraction: float) -> None:
        fraction = min(1.0, max(0.0, float(fraction)))
        now = time.monotonic()
        if self.last_write is not None and now - self.last_write < self.min_interval and fraction < 1.0:
            return
        self.last_write = now
        message = storable_text(message, 255)
        Job.objects.filter(pk=self.job_id).update(
            progress=round(100 * fraction, 2), step=message, heartbeat_at=timezone.now()
        )
        if message != self.last_logged:
            self.last_logged = message
            append_log(self.job_id, f"{message} ({100 * fraction:.0f}%)")
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


def run_job(task, job_id: int, kind: kinds.JobKind) -> dict | None:
    """Claim, run the kind's ``run(job, progress)`` and record the outcome. A run returning None
    leaves the job running (it finishes elsewhere: batch-predict shards, a retrain's child job)."""
    job = claim_job(job_id, task.request.hostname or "")
    if job is None:
        return None
    progress = ProgressReporter(job_id)
    try:
        with heartbeat_ticker(task, job_id):
            result = kind.runner()(job, progress)
    except JobCancelled:
        finish_job(job_id, Job.Status.CANCELLED, step="cancelled")
        return None
    except SoftTimeLimitExceeded:
        finish_job(
            job_id,
            Job.Status.FAILED,
            error=f"Time limit exceeded ({kind.soft_time_limit_s} s).",
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


# --- the job log and results ---------------------------------------------------------------


def append_log(job_id: int, line: str) -> None:
    """Add a timestamped line to a job's log, keeping the last MAX_LOG_LINES.

    Never raises: a log line is worth less than the work that writes it.
    """
    stamp = timezone.now().strftime("%H:%M:%S")
    try:
        with transaction.atomic():
            log = Job.objects.select_for_update().values_list("log", flat=True).get(pk=job_id) or []
            log.append(f"{stamp} {storable_text(line, 2000)}")
            if len(log) > MAX_LOG_LINES:
                log = [f"({len(log) - MAX_LOG_LINES + 1} earlier lines dropped)"] + log[-(MAX_LOG_LINES - 1) :]
            Job.objects.filter(pk=job_id).update(log=log)
    except Exception:  # noqa: BLE001
        logger.exception("could not add a log line to job %s", job_id)


def jsonable(value: Any) -> Any:
    """A JSON-safe summary of what a service returned (dicts, dataclasses, model rows)."""
    if isinstance(value, models.Model):
        summary = {"id": value.pk, "model": value._meta.label, "str": str(value)}
        for name in ("status", "checksum", "content_hash", "model_version_id"):
            if hasattr(value, name):
                summary[name] = jsonable(getattr(value, name))
        return summary
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return jsonable(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [jsonable(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


# --- the one way to a terminal state -------------------------------------------------------


def finish_job(
    job_id: int,
    status: str,
    *,
    result: dict | None = None,
    error: str = "",
    tb: str = "",
    step: str = "",
    only_if: Callable[[Job], bool] | None = None,
) -> bool:
    """End a job once: succeeded, failed or cancelled. Returns False when it had already ended
    (or ``only_if(locked_job)`` said no).

    Whatever the end, credentials leave the row, open shards are closed and the job's
    ImportRun (if still running) ends too. All text is made storable first; if the database
    still refuses the outcome, a minimal one is recorded instead, so a job always ends.
    """
    assert status in Job.FINISHED, status
    error, tb = storable_text(error, 10_000), storable_text(tb, 20_000, keep="tail")
    step = storable_text(step or status, 255)
    try:
        with transaction.atomic():
            job = Job.objects.select_for_update().get(pk=job_id)
            if job.is_finished or (only_if is not None and not only_if(job)):
                return False
            job.status = status
            job.finished_at = job.heartbeat_at = timezone.now()
            if result is not None:
                job.result = storable_json({**job.result, **jsonable(result)})
            if status == Job.Status.SUCCEEDED:
                job.progress = 100.0
            job.error, job.traceback, job.step = error, tb, step
            # A finished job no longer needs credentials; don't keep them at rest.
            job.params = without_secrets(job.params)
            job.save(
                update_fields=[
                    "status",
                    "finished_at",
                    "heartbeat_at",
                    "result",
                    "progress",
                    "error",
                    "traceback",
                    "step",
                    "params",
                ]
            )
            _close_open_shards(job)
    except Job.DoesNotExist:
        return False
    except Exception as exc:  # noqa: BLE001 - the last resort must still end the job
        logger.exception("could not record the end of job %s; recording a minimal one", job_id)
        job = _finish_minimal(
            job_id, status, f"{error}\n(the full outcome could not be stored: {type(exc).__name__})".strip()
        )
        if job is None:
            return False
    append_log(job_id, f"{status}" + (f": {error.splitlines()[0][:300]}" if error else ""))
    _end_import_run(job)
    _end_change_set(job)
    _emit_finished(job)
    if job.parent_id:
        _child_finished(job)
    return True


def _emit_finished(job: Job) -> None:
    """``job.finished`` (base.events): sent once this commits; a failure here is only logged."""
    try:
        events.emit(
            events.JOB_FINISHED,
            {
                "job": job.pk,
                "kind": job.kind,
                "status": job.status,
                "step": job.step,
                "error": job.error.splitlines()[0][:500] if job.error else "",
                "parent": job.parent_id,
                "requested_by": events.username(job.requested_by) if job.requested_by_id else None,
                "finished_at": job.finished_at.isoformat() if job.finished_at else None,
            },
        )
    except Exception:  # noqa: BLE001 - ending the job must not fail on its notification
        logger.exception("could not raise job.finished for job %s", job.pk)


def _finish_minimal(job_id: int, status: str, error: str) -> Job | None:
    now = timezone.now()
    params = Job.objects.filter(pk=job_id).values_list("params", flat=True).first()
    ended = (
        Job.objects.filter(pk=job_id)
        .exclude(status__in=Job.FINISHED)
        .update(
            status=status,
            finished_at=now,
            heartbeat_at=now,
            step=status,
            traceback="",
            error=storable_text(error, 10_000).encode("ascii", "backslashreplace").decode("ascii"),
            params=without_secrets(params if isinstance(params, dict) else {}),
        )
    )
    if not ended:
        return None
    job = Job.objects.get(pk=job_id)
    _close_open_shards(job)
    return job


def _close_open_shards(job: Job) -> None:
    """A job that ended leaves no shard pending or running."""
    shard_status = JobShard.Status.CANCELLED if job.status == Job.Status.CANCELLED else JobShard.Status.FAILED
    JobShard.objects.filter(job=job, status__in=(JobShard.Status.QUEUED, JobShard.Status.RUNNING)).update(
        status=shard_status, finished_at=timezone.now()
    )


def _end_import_run(job: Job) -> None:
    """An import job's ImportRun ends with it (normally the importer ends it first)."""
    run_id = (job.result or {}).get("import_run_id")
    if job.kind != kinds.IMPORT or not run_id:
        return
    from catalog.models import ImportRun

    run_status = ImportRun.Status.CANCELLED if job.status == Job.Status.CANCELLED else ImportRun.Status.FAILED
    if job.status == Job.Status.SUCCEEDED:
        return
    ImportRun.objects.filter(pk=run_id, status=ImportRun.Status.RUNNING).update(
        status=run_status, finished_at=timezone.now(), error=job.error or f"job #{job.pk} {job.status}"
    )


def _end_change_set(job: Job) -> None:
    """A bulk_labels job's change set ends with it: one the job did not finish (cancelled
    before it started, its worker lost) ends failed with what it committed (undoable)."""
    change_set_id = (job.params or {}).get("change_set")
    if job.kind != kinds.BULK_LABELS or job.status == Job.Status.SUCCEEDED or not change_set_id:
        return
    from catalog.bulk import end_unfinished

    try:
        end_unfinished(change_set_id, f"job #{job.pk} {job.status}: {job.error or job.step}".strip(": "))
    except Exception:  # noqa: BLE001 - ending the job must not fail on its change set
        logger.exception("could not end change set %s of job %s", change_set_id, job.pk)


def _child_finished(child: Job) -> None:
    """A retrain job ends with its batch-predict child."""
    parent = Job.objects.filter(pk=child.parent_id, kind=kinds.RETRAIN).first()
    if parent is None or parent.is_finished:
        return
    if child.status == Job.Status.SUCCEEDED:
        finish_job(
            parent.pk,
            Job.Status.SUCCEEDED,
            result={"predict": child.result},
            step="done: snapshot, train, evaluate, predict",
        )
    else:
        finish_job(
            parent.pk,
            child.status,
            result={"predict": child.result},
            error=f"batch predict job #{child.pk} {child.status}: {child.error}".strip(": "),
        )


def heartbeat_cutoff(now=None):
    """Running work whose last heartbeat is older than this has lost its worker."""
    return (now or timezone.now()) - timedelta(seconds=settings.GENREWEB_HEARTBEAT_TIMEOUT_S)


def _silent(job: Job, cutoff) -> bool:
    """Nobody is running ``job``: its heartbeat (or start) is older than ``cutoff``, no shard or
    child job of it is alive."""
    beat = job.heartbeat_at or job.started_at or job.created_at
    if beat >= cutoff:
        return False
    alive_shards = JobShard.objects.filter(job=job, status=JobShard.Status.RUNNING, heartbeat_at__gte=cutoff)
    if alive_shards.exists():
        return False
    return not job.children.exclude(status__in=Job.FINISHED).exists()
