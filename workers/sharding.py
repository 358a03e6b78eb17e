"""Sharded jobs (batch predict, embed catalog): the fan-out job splits the movies ml chooses into
JobShard rows and sends one ``workers.predict_shard`` task per shard; each shard runs its kind's
``shard_work`` over its movies (idempotent: predictions upsert, stored vectors are skipped) and
the job's bookkeeping counts shard rows, so progress, failures and retries are exact even when a
worker dies and a shard message is delivered twice. Progress moves per batch inside a shard.

Shard tasks are ``acks_late`` + ``reject_on_worker_lost`` (idempotent), and the sweep re-sends
a running shard whose heartbeat stopped.
"""

from __future__ import annotations

import logging
import time
import traceback
import uuid
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import transaction
from django.db.models import Count, F, Q, Sum
from django.utils import timezone

from base.progress import Progress
from base.runs import storable_text

from . import kinds
from .lifecycle import (
    MAX_TRANSIENT_RETRIES,
    TRANSIENT_ERRORS,
    JobCancelled,
    _drop_broken_connection,
    append_log,
    backoff_s,
    finish_job,
    heartbeat_ticker,
)
from .models import Job, JobShard

logger = logging.getLogger(__name__)

SHARD_HARD_LIMIT_S = 30 * 60
SHARD_SOFT_LIMIT_S = SHARD_HARD_LIMIT_S - 120


def _create_shards(job: Job) -> None:
    from ml.services.inference import movies_to_predict  # ml chooses the movies

    shard_size = job.params.get("shard_size") or settings.GENREWEB_PREDICT_SHARD_SIZE
    movie_ids, missing = movies_to_predict(job.params.get("movie_ids"))
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
    now = timezone.now()
    pending = list(JobShard.objects.filter(job=job, status=JobShard.Status.QUEUED).only("pk"))
    for shard in pending:
        shard.celery_task_id = str(uuid.uuid4())
        shard.heartbeat_at = now  # "sent at" until it runs; the sweep re-sends it if it vanishes
    JobShard.objects.bulk_update(pending, ["celery_task_id", "heartbeat_at"], batch_size=500)
    Job.objects.filter(pk=job.pk).update(heartbeat_at=now)
    from .tasks import predict_shard

    for shard in pending:
        predict_shard.apply_async(args=[job.pk, shard.pk], task_id=shard.celery_task_id)
    return len(pending)


def start_sharded_job(job: Job, progress: Progress) -> None:
    """The run of every sharded kind (batch predict, embed catalog): split the movies into
    shards and send one task per pending shard; each shard runs the kind's ``shard_work``."""
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


class ShardProgress:
    """Inside a shard, per batch (at most every ``min_interval`` s): record the shard's
    fraction, move the job's progress by it (so a job of few large shards does not sit at 0 %),
    and raise JobCancelled once the job is cancelled."""

    def __init__(self, job_id: int, shard_id: int | None = None, min_interval: float = 1.0):
        self.job_id, self.shard_id, self.min_interval = job_id, shard_id, min_interval
        self.last = time.monotonic()

    def __call__(self, message: str, fraction: float) -> None:
        if time.monotonic() - self.last < self.min_interval:
            return
        self.last = time.monotonic()
        if self.shard_id is not None:
            JobShard.objects.filter(pk=self.shard_id, status=JobShard.Status.RUNNING).update(
                progress=round(max(0.0, min(1.0, fraction)), 4)
            )
            _move_job_progress(self.job_id)
        if Job.objects.filter(pk=self.job_id, cancel_requested=True).exists():
            raise JobCancelled(f"job #{self.job_id} was cancelled")


def _shard_fraction(job_id: int) -> tuple[float, int, int]:
    """(fraction of the job done, shards done, shards in all): finished shards count whole,
    running ones by their own progress (shards are of one size but the last; two aggregate
    queries, whatever the number of shards)."""
    finished = (JobShard.Status.SUCCEEDED, JobShard.Status.FAILED, JobShard.Status.CANCELLED)
    totals = JobShard.objects.filter(job_id=job_id).aggregate(
        shards=Count("pk"),
        done=Count("pk", filter=Q(status__in=finished)),
        running=Sum("progress", filter=Q(status=JobShard.Status.RUNNING)),
    )
    shards, done = totals["shards"], totals["done"]
    fraction = (done + (totals["running"] or 0.0)) / shards if shards else 1.0
    return min(1.0, fraction), done, shards


def _move_job_progress(job_id: int) -> None:
    fraction, done, total = _shard_fraction(job_id)
    now = timezone.now()
    step = f"{done}/{total} shards done, {100 * fraction:.0f}% of the work"
    Job.objects.filter(pk=job_id, status=Job.Status.RUNNING).update(
        progress=round(100 * fraction, 2), step=step, heartbeat_at=now
    )
    parent_id = Job.objects.filter(pk=job_id).values_list("parent_id", flat=True).first()
    if parent_id:
        Job.objects.filter(pk=parent_id, status=Job.Status.RUNNING).update(
            progress=round(90 + 10 * fraction, 2), step=f"batch predict (job #{job_id}): {step}", heartbeat_at=now
        )


def run_shard_work(kind: str, params: dict, movie_ids: list[int], progress) -> int:
    return kinds.get(kind).shard_runner()(params, movie_ids, progress)


def predict_shard_movies(params: dict, movie_ids: list[int], progress) -> int:
    """The predict kind's shard work: predictions upserted, rows written."""
    from ml.services.inference import predict_movies

    return predict_movies(params["model_version_id"], movie_ids, progress=progress)


def embed_shard_movies(params: dict, movie_ids: list[int], progress) -> int:
    """The embed_catalog kind's shard work: vectors not stored yet computed and stored; how many."""
    from ml.services.embeddings import embed_movies

    result = embed_movies(
        movie_ids, config=params.get("config"), encoders=params.get("encoders") or ("text", "image"), progress=progress
    )
    return result.texts_encoded + result.posters_encoded


def run_shard(task, job_id: int, shard_id: int):
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
    if shard.celery_task_id and task.request.id != shard.celery_task_id:
        # An old message of a shard the sweep re-sent (its worker was lost): the new one runs it.
        logger.info("shard %s: message %s superseded by %s; ignored", shard_id, task.request.id, shard.celery_task_id)
        return None
    started = time.monotonic()
    now = timezone.now()
    claimed = JobShard.objects.filter(
        pk=shard_id,
        status__in=(JobShard.Status.QUEUED, JobShard.Status.RUNNING),
        celery_task_id=shard.celery_task_id,
    ).update(
        status=JobShard.Status.RUNNING,
        attempts=F("attempts") + 1,
        started_at=now,
        heartbeat_at=now,
        worker=task.request.hostname or "",
    )
    if not claimed:
        return None
    outcome: dict[str, Any]
    try:
        with heartbeat_ticker(task, job_id, shard_id):
            written = run_shard_work(job.kind, job.params, shard.movie_ids, ShardProgress(job_id, shard_id))
        outcome = {"status": JobShard.Status.SUCCEEDED, "predictions_written": written, "error": ""}
    except JobCancelled:
        outcome = {"status": JobShard.Status.CANCELLED, "error": ""}
    except SoftTimeLimitExceeded:
        outcome = {"status": JobShard.Status.FAILED, "error": f"time limit exceeded ({SHARD_HARD_LIMIT_S} s)"}
    except TRANSIENT_ERRORS as exc:
        if task.request.retries < MAX_TRANSIENT_RETRIES:
            _drop_broken_connection()
            JobShard.objects.filter(pk=shard_id).update(
                status=JobShard.Status.QUEUED, error=f"retrying after {type(exc).__name__}: {exc}"
            )
            raise task.retry(exc=exc, countdown=backoff_s(task.request.retries)) from exc
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
        progress=1.0,
        **outcome,
    )
    account_shards(job_id)
    return outcome.get("predictions_written")


def account_shards(job_id: int) -> None:
    """Progress = fraction of the movies done (running shards by their own progress); when no
    shard is left, finish the job with totals.

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
        fraction = _shard_fraction(job_id)[0] if done < total else 1.0
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
    predict = job.kind == kinds.PREDICT
    result = {
        **({"model_version_id": job.params["model_version_id"]} if predict else {}),
        "shards_total": total,
        "shards_succeeded": counts.get(JobShard.Status.SUCCEEDED, 0),
        "shards_reused": shards.filter(reused=True).count(),
        "shards_failed": [
            {"index": f["index"], "error": f["error"].splitlines()[0] if f["error"] else ""} for f in failed
        ],
        "shards_cancelled": counts.get(JobShard.Status.CANCELLED, 0),
        ("movies_predicted" if predict else "movies_embedded"): movies_done,
        ("predictions_written" if predict else "vectors_written"): written,
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
        verb = "predicted" if predict else "embedded"
        finish_job(job_id, Job.Status.SUCCEEDED, result=result, step=f"{movies_done} movies {verb} in {total} shard(s)")
