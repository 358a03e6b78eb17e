"""Celery task shims (Celery autodiscovery imports this module). They take ids and hand over to
workers.lifecycle (jobs), workers.sharding (batch-predict shards) and workers.sweep.

Every job kind in the table (workers.kinds) gets one task, named by the kind, with the kind's
soft/hard time limits; ``acks_late`` + ``reject_on_worker_lost`` only for idempotent kinds (a
message whose worker died is delivered again); the others are acknowledged on start and a lost
worker is caught by the stale sweep.
"""

from __future__ import annotations

from celery import shared_task
from celery.signals import worker_process_init, worker_ready, worker_shutdown
from django.conf import settings

from . import kinds, sweep
from .lifecycle import MAX_TRANSIENT_RETRIES, run_job
from .sharding import SHARD_HARD_LIMIT_S, SHARD_SOFT_LIMIT_S, run_shard

# Job kind name -> its task (kinds registered later, e.g. by a test, are added by register).
JOB_TASKS: dict = {}


def job_task(kind: kinds.JobKind):
    """The Celery task of a job kind (made once per kind)."""
    if kind.name in JOB_TASKS:
        return JOB_TASKS[kind.name]

    def task(self, job_id: int):
        return run_job(self, job_id, kinds.get(kind.name))

    task.__name__ = task.__qualname__ = kind.task_name.rpartition(".")[2]
    task.__doc__ = f"Run a {kind.name} job (by id)."
    JOB_TASKS[kind.name] = shared_task(
        name=kind.task_name,
        bind=True,
        max_retries=MAX_TRANSIENT_RETRIES,
        acks_late=kind.idempotent,
        reject_on_worker_lost=kind.idempotent,
        **kind.limits,
    )(task)
    return JOB_TASKS[kind.name]


for _kind in list(kinds.KINDS.values()):
    job_task(_kind)


@shared_task(
    name="workers.predict_shard",
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=MAX_TRANSIENT_RETRIES,
    time_limit=SHARD_HARD_LIMIT_S,
    soft_time_limit=SHARD_SOFT_LIMIT_S,
)
def predict_shard(self, job_id: int, shard_id: int):
    """Run one shard of a sharded job (batch predict, embed catalog; idempotent), then update
    the job's bookkeeping."""
    return run_shard(self, job_id, shard_id)


@shared_task(name="workers.ping")
def ping(value: str = "pong") -> str:
    """Trivial task proving the broker -> worker -> result path end to end."""
    return value


@worker_ready.connect
def start_stale_job_sweep(sender=None, **kwargs) -> None:
    sweep.start_in_worker()


@worker_shutdown.connect
def stop_stale_job_sweep(sender=None, **kwargs) -> None:
    sweep.stop_in_worker()


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
