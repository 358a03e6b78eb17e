"""What the broker still holds: task ids of waiting and delivered-but-unacked messages, read
straight from Redis (or the filesystem broker's folder), so the sweep can tell a queued job
whose message vanished from one that is only waiting."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from .queues import QUEUES

logger = logging.getLogger(__name__)


def publish(task, *, args: list, task_id: str | None = None, countdown: float | None = None) -> None:
    """Send one message for ``task`` to its queue, waiting at most GENREWEB_ENQUEUE_TIMEOUT_S
    to connect and never retrying: web requests must not hang while the broker is down.
    Raises whatever the broker raised; the caller's database row stays the record of the work
    (the stale sweep sends it later). No result-backend subscription is made (the row reports)."""
    from celery import current_app
    from django.conf import settings

    from . import kinds

    timeout = settings.GENREWEB_ENQUEUE_TIMEOUT_S
    options = {**(current_app.conf.broker_transport_options or {}), "max_retries": 0}
    if (current_app.conf.broker_write_url or current_app.conf.broker_url or "").startswith(("redis", "rediss")):
        options.update(socket_connect_timeout=timeout, socket_timeout=timeout)
    with current_app.connection_for_write(connect_timeout=timeout, transport_options=options) as conn:
        task.apply_async(
            args=args,
            task_id=task_id,
            countdown=countdown,
            queue=kinds.queue_for_task(task.name),
            connection=conn,
            retry=False,
            ignore_result=True,
        )


def broker_message_ids() -> set[str] | None:
    """Task ids of messages the broker still holds (waiting or delivered-but-unacked).

    None when the broker cannot be inspected; callers then rely on age alone.
    """
    from celery import current_app

    url = current_app.conf.broker_url or ""
    try:
        if url.startswith(("redis://", "rediss://")):
            return _redis_message_ids(current_app)
        if url.startswith("filesystem://"):
            return filesystem_message_ids(current_app)
    except Exception as exc:
        logger.warning("could not inspect the broker: %s", exc)
    return None


def _task_id_of(payload: Any) -> str | None:
    if isinstance(payload, dict):
        return (payload.get("headers") or {}).get("id") or (payload.get("properties") or {}).get("correlation_id")
    return None


def _redis_message_ids(app) -> set[str]:
    import redis

    ids: set[str] = set()
    prefix = (app.conf.broker_transport_options or {}).get("global_keyprefix", "")
    with app.connection_for_read() as conn:
        channel = conn.default_channel
        # A plain client on kombu's pool: kombu's own client prefixes only some commands.
        client = redis.Redis(connection_pool=channel.client.connection_pool)
        for queue in QUEUES:
            for priority in channel.priority_steps:
                for raw in client.lrange(prefix + channel._q_for_pri(queue, priority), 0, -1):
                    task_id = _task_id_of(json.loads(raw))
                    if task_id:
                        ids.add(task_id)
        for raw in client.hvals(prefix + channel.unacked_key):
            entry = json.loads(raw)
            task_id = _task_id_of(entry[0] if isinstance(entry, list) else entry)
            if task_id:
                ids.add(task_id)
    return ids


def filesystem_message_ids(app) -> set[str]:
    """Task ids of the messages waiting in the filesystem broker's folder (half-written ones skipped)."""
    folder = Path((app.conf.broker_transport_options or {}).get("data_folder_in", ""))
    ids: set[str] = set()
    for path in folder.glob("*.msg"):
        try:
            task_id = _task_id_of(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue  # taken by a worker while we looked
        if task_id:
            ids.add(task_id)
    return ids
