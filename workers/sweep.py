"""The stale-job sweep: bring back or end work that nobody will finish otherwise. It runs in a
thread of every worker's main process (started by workers.tasks at worker start) and as the
``requeue_stale_jobs`` command."""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from . import broker, kinds
from .lifecycle import _drop_broken_connection, _silent, append_log, finish_job, heartbeat_cutoff
from .models import Job, JobShard

logger = logging.getLogger(__name__)


@dataclass
class SweepReport:
    requeued_jobs: list[int] = field(default_factory=list)
    requeued_shards: list[int] = field(default_factory=list)
    failed_lost_jobs: list[int] = field(default_factory=list)
    cancelled_lost_jobs: list[int] = field(default_factory=list)

    def __str__(self) -> str:
        return (
            f"re-sent {len(self.requeued_jobs)} queued job(s) {self.requeued_jobs}, "
            f"{len(self.requeued_shards)} shard(s) {self.requeued_shards}; "
            f"failed {len(self.failed_lost_jobs)} job(s) whose worker was lost {self.failed_lost_jobs}; "
            f"ended {len(self.cancelled_lost_jobs)} cancelled job(s) whose worker was lost "
            f"{self.cancelled_lost_jobs}"
        )


def _resend_shard(shard: JobShard, expected_status: str, now) -> bool:
    """Give a shard a new message (a new task id, so the old message is ignored if it ever
    comes back); the conditional update makes one concurrent sweeper win."""
    from .tasks import predict_shard

    new_task_id = str(uuid.uuid4())
    claimed = JobShard.objects.filter(
        pk=shard.pk,
        status=expected_status,
        celery_task_id=shard.celery_task_id,
        heartbeat_at=shard.heartbeat_at,
    ).update(status=JobShard.Status.QUEUED, celery_task_id=new_task_id, heartbeat_at=now)
    if not claimed:
        return False
    try:
        predict_shard.apply_async(
            args=[shard.job_id, shard.pk],
            task_id=new_task_id,
            queue=kinds.queue_for_task(predict_shard.name),
            retry=False,
            ignore_result=True,
        )
    except Exception as exc:  # broker down: still pending, the next sweep sends it
        logger.warning("could not re-send shard %s: %s", shard.pk, exc)
    return True


def requeue_stale_jobs(grace_s: float | None = None, *, dry_run: bool = False) -> SweepReport:
    """Bring back or end work that nobody will finish otherwise. Safe to run anywhere, often.

    - queued jobs last sent more than ``grace_s`` ago whose message the broker no longer holds
      (with an uninspectable broker: any queued job that old) are sent again; the task only
      runs a job it can move from queued to running, so a duplicate message is harmless;
    - pending shards of running batch-predict jobs, the same way;
    - running shards with no heartbeat for GENREWEB_HEARTBEAT_TIMEOUT_S (their worker died as
      a whole; Redis would hand the message back only after its visibility timeout, hours)
      are re-sent (predictions are idempotent), or cancelled when the job's cancel was asked;
    - a batch-predict job whose fan-out worker died before it made shards is re-queued
      (idempotent); every other running job with no heartbeat and no live shard or child job
      is failed ("worker lost"), or ends cancelled when that was asked.
    """
    from .jobs import send_job_message
    from .sharding import account_shards

    grace_s = settings.GENREWEB_REQUEUE_GRACE_S if grace_s is None else grace_s
    now = timezone.now()
    cutoff = now - timedelta(seconds=grace_s)
    lost_cutoff = heartbeat_cutoff(now)
    in_broker = broker.broker_message_ids()
    report = SweepReport()

    for job in Job.objects.filter(status=Job.Status.QUEUED, enqueued_at__lt=cutoff):
        if in_broker is not None and job.celery_task_id in in_broker:
            continue
        if dry_run:
            report.requeued_jobs.append(job.pk)
            continue
        # Conditional update: when several workers sweep at once, only one re-sends.
        claimed = Job.objects.filter(pk=job.pk, status=Job.Status.QUEUED, enqueued_at=job.enqueued_at).update(
            enqueued_at=now, celery_task_id=str(uuid.uuid4())
        )
        if claimed:
            job.refresh_from_db()
            append_log(job.pk, "message lost from the broker; re-sent by the stale-job sweep")
            send_job_message(job.pk, kinds.get(job.kind).task_name, job.celery_task_id)
            report.requeued_jobs.append(job.pk)

    running_predict = Q(job__status=Job.Status.RUNNING, job__kind__in=kinds.sharded_kinds())
    stale_pending = JobShard.objects.filter(
        running_predict, job__cancel_requested=False, status=JobShard.Status.QUEUED
    ).filter(Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True, job__heartbeat_at__lt=cutoff))
    for shard in stale_pending:
        if in_broker is not None and shard.celery_task_id in in_broker:
            continue
        if dry_run or _resend_shard(shard, JobShard.Status.QUEUED, now):
            report.requeued_shards.append(shard.pk)

    lost_shards = (
        JobShard.objects.filter(running_predict, status=JobShard.Status.RUNNING)
        .filter(Q(heartbeat_at__lt=lost_cutoff) | Q(heartbeat_at__isnull=True, started_at__lt=lost_cutoff))
        .select_related("job")
    )
    touched_jobs: set[int] = set()
    for shard in lost_shards:
        if dry_run:
            report.requeued_shards.append(shard.pk)
            continue
        touched_jobs.add(shard.job_id)
        if shard.job.cancel_requested:
            JobShard.objects.filter(pk=shard.pk, status=JobShard.Status.RUNNING).update(
                status=JobShard.Status.CANCELLED, finished_at=now, error="its worker was lost"
            )
        elif _resend_shard(shard, JobShard.Status.RUNNING, now):
            append_log(
                shard.job_id,
                f"shard {shard.index}: its worker was lost (no heartbeat for "
                f"{settings.GENREWEB_HEARTBEAT_TIMEOUT_S:.0f} s); re-sent",
            )
            report.requeued_shards.append(shard.pk)
    for job_id in touched_jobs:
        account_shards(job_id)  # a job whose last shards were cancelled ends now

    silent = Job.objects.filter(status=Job.Status.RUNNING).filter(
        Q(heartbeat_at__lt=lost_cutoff) | Q(heartbeat_at__isnull=True, started_at__lt=lost_cutoff)
    )
    for job in silent:
        if not _silent(job, lost_cutoff):
            continue
        if job.shards.exists():
            if not job.shards.filter(status__in=(JobShard.Status.QUEUED, JobShard.Status.RUNNING)).exists():
                if not dry_run:
                    account_shards(job.pk)  # every shard ended; make sure the job does
            continue
        if dry_run:
            report.failed_lost_jobs.append(job.pk)
            continue
        kind = kinds.KINDS.get(job.kind)
        if kind is not None and kind.idempotent and not job.cancel_requested:
            # An idempotent kind (e.g. a batch-predict fan-out that died before it made
            # shards) is simply run again.
            if Job.objects.filter(pk=job.pk, status=Job.Status.RUNNING, heartbeat_at=job.heartbeat_at).update(
                status=Job.Status.QUEUED,
                enqueued_at=now,
                heartbeat_at=now,
                celery_task_id=str(uuid.uuid4()),
                step="re-queued: its worker was lost",
            ):
                job.refresh_from_db()
                append_log(job.pk, "its worker was lost; re-queued (this kind is idempotent)")
                send_job_message(job.pk, kinds.get(job.kind).task_name, job.celery_task_id)
                report.requeued_jobs.append(job.pk)
            continue
        still_silent = lambda j: j.status == Job.Status.RUNNING and _silent(j, lost_cutoff)  # noqa: E731
        silence = f"no heartbeat for {settings.GENREWEB_HEARTBEAT_TIMEOUT_S:.0f} s"
        if job.cancel_requested:
            if finish_job(
                job.pk, Job.Status.CANCELLED, step=f"cancelled (its worker was lost: {silence})", only_if=still_silent
            ):
                report.cancelled_lost_jobs.append(job.pk)
        elif finish_job(
            job.pk,
            Job.Status.FAILED,
            only_if=still_silent,
            step="worker lost",
            error=f"The worker running this job was lost ({silence}). Retry it to run it again.",
        ):
            report.failed_lost_jobs.append(job.pk)
    return report


# --- the sweep inside every worker ----------------------------------------------------------

_sweeper_stop = threading.Event()

# Other work that must not wait for a message the broker lost, registered by apps above this
# one (e.g. webhooks: deliveries due again): name -> a callable run on every sweep.
EXTRA_SWEEPS: dict[str, Callable[[], object]] = {}


def register_sweep(name: str, sweep: Callable[[], object]) -> None:
    """Run ``sweep()`` on every stale sweep, after the jobs' (it must be cheap when idle and
    safe to run on several workers at once)."""
    EXTRA_SWEEPS[name] = sweep


def run_extra_sweeps() -> None:
    for name, sweep in list(EXTRA_SWEEPS.items()):
        try:
            sweep()
        except Exception:
            logger.exception("sweep of %s failed; trying again later", name)


def _sweep_loop(interval: float) -> None:
    while True:
        try:
            report = requeue_stale_jobs()
            if report.requeued_jobs or report.requeued_shards or report.failed_lost_jobs:
                logger.warning("stale-job sweep: %s", report)
        except Exception:
            logger.exception("stale-job sweep failed; trying again later")
        finally:
            _drop_broken_connection()
        try:
            run_extra_sweeps()
        finally:
            _drop_broken_connection()
        if interval <= 0 or _sweeper_stop.wait(interval):
            return


def start_in_worker() -> None:
    """Recover lost messages at worker start and then every GENREWEB_REQUEUE_INTERVAL_S.

    Runs in a thread of the worker's main process; it touches only the database and broker
    (never CUDA), so forked pool children are unaffected.
    """
    if getattr(settings, "CELERY_TASK_ALWAYS_EAGER", False):
        return
    _sweeper_stop.clear()
    threading.Thread(
        target=_sweep_loop, args=(settings.GENREWEB_REQUEUE_INTERVAL_S,), daemon=True, name="stale-job-sweep"
    ).start()


def stop_in_worker() -> None:
    _sweeper_stop.set()
