"""The one way to start, cancel and retry jobs. Views, the API and commands call these.

- ``enqueue(kind, params, user)`` validates ``params`` for the kind (workers.kinds), creates the
  Job and sends its Celery message when the surrounding transaction commits (so a worker never
  sees a job row that does not exist yet, and a rolled-back request sends nothing).
- ``cancel(job)``: a queued job is marked cancelled at once (its message is revoked, and the
  task refuses to start a job that is not queued); a running job gets ``cancel_requested``,
  which the task's progress callback turns into ``JobCancelled`` between rows/batches; a
  running job whose worker is gone (no heartbeat) ends cancelled at once.
- ``retry(job)``: a new Job with the same parameters; for batch prediction the new job reuses
  the shards that already succeeded and runs only the rest.
How a job runs and ends is workers.lifecycle; the stale sweep is workers.sweep.
"""

from __future__ import annotations

import logging
import uuid

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from . import broker, kinds
from .kinds import validate_params
from .lifecycle import _silent, append_log, finish_job, heartbeat_cutoff
from .models import Job, JobShard

logger = logging.getLogger(__name__)


class JobError(Exception):
    """A job operation that cannot be done in the job's current state."""


def task_named(task_name: str):
    """The Celery task object; importing workers.tasks registers it in any process (web, commands)."""
    from celery import current_app

    from . import tasks  # noqa: F401

    return current_app.tasks[task_name]


def send_job_message(job_id: int, task_name: str, task_id: str) -> bool:
    """Send the job's Celery message (``broker.publish``: bounded, no retry, because this runs
    in web requests, which must not hang while the broker is down); on failure leave the job
    queued for the stale sweep."""
    try:
        broker.publish(task_named(task_name), args=[job_id], task_id=task_id)
        return True
    except Exception as exc:  # broker down: the job row is safe, the sweep re-sends it
        logger.warning("could not send job %s: %s", job_id, exc)
        append_log(job_id, f"could not reach the broker ({type(exc).__name__}); it will be re-sent automatically")
        return False


def _schedule_send(job: Job) -> None:
    task_name = kinds.get(job.kind).task_name
    job_id, task_id = job.pk, job.celery_task_id
    transaction.on_commit(lambda: send_job_message(job_id, task_name, task_id))


def enqueue(
    kind: str, params: dict | None = None, user=None, *, parent: Job | None = None, retry_of: Job | None = None
) -> Job:
    """Validate, create a queued Job and send it to its queue once the transaction commits."""
    cleaned = validate_params(kind, params)
    queue = kinds.get(kind).queue
    if user is not None and not getattr(user, "is_authenticated", False):
        user = None
    with transaction.atomic():
        job = Job.objects.create(
            kind=kind,
            params=cleaned,
            requested_by=user,
            queue=queue,
            celery_task_id=str(uuid.uuid4()),
            enqueued_at=timezone.now(),
            parent=parent,
            retry_of=retry_of,
            step="queued",
            log=[
                f"{timezone.now():%H:%M:%S} queued on {queue}" + (f" (retry of job #{retry_of.pk})" if retry_of else "")
            ],
        )
        if retry_of is not None and retry_of.shards.exists():
            _copy_shards_for_retry(retry_of, job)
        _schedule_send(job)
    return job


def enqueue_change_set(change_set, user=None) -> Job:
    """Run a new, queued change set (catalog.bulk: a bulk change or an undo) as a bulk_labels
    job; the pages and the API call this and answer at once. If the job cannot be made, the
    change set ends failed (it changed nothing) and the error is raised."""
    try:
        return enqueue(kinds.BULK_LABELS, {"change_set": change_set.pk}, user)
    except Exception as exc:
        from catalog.bulk import end_unfinished

        end_unfinished(change_set.pk, f"its job could not be queued: {type(exc).__name__}: {exc}")
        raise


def _copy_shards_for_retry(old: Job, new: Job) -> None:
    shards = []
    for shard in old.shards.all():
        done = shard.status == JobShard.Status.SUCCEEDED
        shards.append(
            JobShard(
                job=new,
                index=shard.index,
                movie_ids=shard.movie_ids,
                status=JobShard.Status.SUCCEEDED if done else JobShard.Status.QUEUED,
                predictions_written=shard.predictions_written if done else 0,
                reused=done,
                progress=1.0 if done else 0.0,
                duration_s=shard.duration_s if done else None,
            )
        )
    JobShard.objects.bulk_create(shards)


def revoke_tasks(task_ids: list[str]) -> None:
    """Best effort: the task itself also refuses to run a job/shard that is no longer wanted."""
    from celery import current_app

    if not task_ids:
        return
    try:
        current_app.control.revoke(task_ids)
    except Exception as exc:  # e.g. the filesystem broker has no broadcast
        logger.info("revoke not delivered (%s); tasks will notice the cancellation themselves", exc)


def cancel(job: Job, user=None) -> Job:
    """Cancel a queued job now, or ask a running one to stop at its next step/batch.

    A running job nobody runs any more (no heartbeat for GENREWEB_HEARTBEAT_TIMEOUT_S) ends
    cancelled at once; otherwise the sweep ends it if its worker dies before stopping.
    """
    who = f" by {user}" if user is not None and getattr(user, "is_authenticated", False) else ""
    revoke_ids: list[str] = []
    with transaction.atomic():
        locked = Job.objects.select_for_update().get(pk=job.pk)
        if locked.is_finished:
            raise JobError(f"Job #{locked.pk} has already {locked.status}; there is nothing to cancel.")
        # Set under the row lock: claim_job never starts a job with cancel_requested.
        Job.objects.filter(pk=locked.pk).update(
            cancel_requested=True, step="cancelling..." if locked.status == Job.Status.RUNNING else locked.step
        )
        if locked.status == Job.Status.QUEUED:
            revoke_ids.append(locked.celery_task_id)
        pending = JobShard.objects.filter(job=locked, status=JobShard.Status.QUEUED)
        revoke_ids += [tid for tid in pending.values_list("celery_task_id", flat=True) if tid]
        pending.update(status=JobShard.Status.CANCELLED, finished_at=timezone.now())
    append_log(locked.pk, f"cancel requested{who}")
    if locked.status == Job.Status.QUEUED:
        finish_job(
            locked.pk,
            Job.Status.CANCELLED,
            step="cancelled before it started",
            only_if=lambda j: j.status == Job.Status.QUEUED,
        )
    for child in locked.children.exclude(status__in=Job.FINISHED):
        cancel(child, user)
    _end_cancelled_if_nobody_runs_it(locked.pk)
    transaction.on_commit(lambda: revoke_tasks(revoke_ids))
    locked.refresh_from_db()
    return locked


def _end_cancelled_if_nobody_runs_it(job_id: int) -> None:
    """A cancel-requested running job whose worker is gone ends now; its dead shards too."""
    cutoff = heartbeat_cutoff()
    job = Job.objects.get(pk=job_id)
    if job.status != Job.Status.RUNNING or not job.cancel_requested:
        return
    if job.shards.exists():
        from .sharding import account_shards

        JobShard.objects.filter(job=job, status=JobShard.Status.RUNNING).filter(
            Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True)
        ).update(status=JobShard.Status.CANCELLED, finished_at=timezone.now(), error="its worker was gone")
        account_shards(job_id)  # finishes the job now if no shard is still running
        return
    finish_job(
        job_id,
        Job.Status.CANCELLED,
        step="cancelled (its worker was gone)",
        only_if=lambda j: j.status == Job.Status.RUNNING and _silent(j, cutoff),
    )


def retry(job: Job, user=None) -> Job:
    """Start a new job with the same parameters; batch predict reuses done shards."""
    if job.status not in (Job.Status.FAILED, Job.Status.CANCELLED):
        raise JobError(f"Only failed or cancelled jobs can be retried; job #{job.pk} is {job.status}.")
    new = enqueue(job.kind, job.params, user or job.requested_by, parent=job.parent, retry_of=job)
    append_log(job.pk, f"retried as job #{new.pk}")
    return new
