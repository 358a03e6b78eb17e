"""Domain events: what happened, said once, after it committed.

The lowest layer holds the vocabulary and the signal, so every app can raise an event without
knowing who listens (the ``webhooks`` app, at the top, turns them into signed HTTP deliveries).

Raise one with ``emit(name, data)`` where the change is made, inside or outside a transaction:
the ``event_raised`` signal is sent only once the outermost transaction commits (never for a
change that rolled back), and a failing receiver is logged, never raised into the caller.
``data`` must be JSON (ids, names, numbers): receivers run later, in other processes too.

Adding an event type is one entry in ``EVENTS`` and one ``emit`` call. The events and who emits them:

- ``labels.changed``: ``catalog.labels.write_labels`` when a person's change (origin ``person``
  or ``suggestion``) altered a movie's labels. Imports do not emit it (one import would raise
  thousands); they end as a job, which emits ``job.finished``. Nor do the writes of a bulk
  change set: ``catalog.bulk`` raises one ``labels.bulk_changed`` when the set ends.
- ``review.finished``: ``review_finished(...)`` below, called by whoever records that a person
  finished reviewing a movie's labels (the label-review record), after creating it.
- ``job.finished``: ``workers.lifecycle.finish_job``, for every job that ends (succeeded,
  failed or cancelled), child jobs included (they carry ``parent``).
- ``model.promoted``: ``ml.services.registry.promote`` when an alias (``production``) moves.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.dispatch import Signal
from django.utils import timezone

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EventType:
    name: str
    label: str
    help: str


LABELS_CHANGED = "labels.changed"
LABELS_BULK_CHANGED = "labels.bulk_changed"
REVIEW_FINISHED = "review.finished"
JOB_FINISHED = "job.finished"
MODEL_PROMOTED = "model.promoted"

EVENTS: dict[str, EventType] = {
    e.name: e
    for e in (
        EventType(
            LABELS_CHANGED,
            "Labels changed",
            "a person changed a movie's genre labels: movie, title, label_version, added, removed, genres, "
            "origin, user, reason",
        ),
        EventType(
            LABELS_BULK_CHANGED,
            "Bulk label change finished",
            "a bulk change set (or its undo) ended: change_set, kind, status, undoes, add, remove, matched, "
            "changed, unchanged, skipped, user",
        ),
        EventType(
            REVIEW_FINISHED,
            "Review finished",
            "a person finished reviewing a movie's labels: review, movie, outcome, user, and what the "
            "reviewer recorded",
        ),
        EventType(
            JOB_FINISHED,
            "Job finished",
            "a job ended: job, kind, status (succeeded/failed/cancelled), error, parent, requested_by",
        ),
        EventType(
            MODEL_PROMOTED,
            "Model promoted",
            "an alias now points at a model version: alias, model_version, previous_model_version, user",
        ),
    )
}

# sender: the event name; kwargs: event (the same name), event_id (a UUID string, the same in
# every delivery of this event), occurred_at (ISO 8601, UTC), data (JSON-able dict).
event_raised = Signal()


class UnknownEvent(ValueError):
    pass


def event_choices() -> list[tuple[str, str]]:
    return [(e.name, e.label) for e in EVENTS.values()]


def emit(name: str, data: dict[str, Any]) -> str:
    """Send ``event_raised`` for ``name`` once the current transaction commits; returns the event id."""
    if name not in EVENTS:
        raise UnknownEvent(f"unknown event {name!r}; add it to base.events.EVENTS")
    event_id = str(uuid.uuid4())
    occurred_at = timezone.now().isoformat()

    def send() -> None:
        for receiver, result in event_raised.send_robust(
            sender=name, event=name, event_id=event_id, occurred_at=occurred_at, data=data
        ):
            if isinstance(result, Exception):
                logger.error("receiver %r of event %s failed: %r", receiver, name, result, exc_info=result)

    transaction.on_commit(send, robust=True)
    return event_id


def username(user) -> str | None:
    return getattr(user, "username", None) if user is not None else None


def review_finished(*, review_id: int, movie_id: int, outcome: str, user=None, **details: Any) -> str:
    """Raise ``review.finished`` (call it right after creating the review record, in the same
    transaction: the event goes out only if that commits). ``details``: any further JSON-able
    fields worth telling integrations (e.g. ``genres``, ``label_version``, ``note``)."""
    return emit(
        REVIEW_FINISHED,
        {"review": review_id, "movie": movie_id, "outcome": outcome, "user": username(user), **details},
    )
