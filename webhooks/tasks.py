"""Celery task shim (autodiscovered): one attempt of one delivery, on the default queue."""

from __future__ import annotations

from celery import shared_task

from . import delivery


@shared_task(name="webhooks.deliver", ignore_result=True)
def deliver(delivery_id: int) -> str | None:
    """Attempt a webhook delivery (by id) if it is due; schedules its own retry on failure."""
    return delivery.attempt(delivery_id)
