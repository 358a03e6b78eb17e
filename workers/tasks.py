"""Celery tasks. Thin: they take ids, call catalog/ml services and record progress on a Job."""
from celery import shared_task


@shared_task(name="workers.ping")
def ping(value: str = "pong") -> str:
    """Trivial task proving the broker -> worker -> result path end to end."""
    return value
