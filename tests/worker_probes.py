"""Test-only Celery tasks that report on the worker process they run in.

Worker processes started by tests load this module with ``--include tests.worker_probes``
(tests/celery_worker.py, ``WorkerProcess(include=...)``); production workers never see it.
"""

from __future__ import annotations

from celery import shared_task


@shared_task(name="tests.torch_threads")
def torch_threads() -> int:
    """PyTorch's intra-op thread count in the pool process that runs this task."""
    import torch

    return torch.get_num_threads()
