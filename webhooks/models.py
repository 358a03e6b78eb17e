"""Webhook endpoints (where staff asked events to go) and deliveries (one per endpoint x event)."""

from __future__ import annotations

import json
import secrets
import uuid

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models

from base.events import EVENTS

from . import targets

SECRET_PREFIX = "whsec_"


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def validate_target(url: str) -> None:
    """http(s) only, and every address of the host allowed (webhooks.targets)."""
    try:
        targets.resolve(url)
    except targets.UnsafeURL as exc:
        raise ValidationError(str(exc), code="unsafe_url") from None


def validate_events(value) -> None:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise ValidationError("Give a non-empty list of event names.", code="events")
    unknown = sorted(set(value) - EVENTS.keys())
    if unknown:
        raise ValidationError(
            f"Unknown event(s): {', '.join(unknown)}; choose from {', '.join(EVENTS)}.", code="events"
        )


class Endpoint(models.Model):
    """A URL that receives the events it subscribes to. The secret signs every delivery; it is
    made here, shown once (on creation or rotation) and never again in pages, the API or logs."""

    name = models.CharField(max_length=100)
    url = models.URLField(
        max_length=1000, validators=[validate_target], help_text="http(s) URL the events are POSTed to"
    )
    secret = models.CharField(max_length=100, default=new_secret, editable=False)
    # Event names from base.events.EVENTS (a new event type needs no migration).
    events = models.JSONField(default=list, validators=[validate_events], help_text="subscribed event names")
    active = models.BooleanField(default=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.url})"

    def rotate_secret(self) -> str:
        self.secret = new_secret()
        self.save(update_fields=["secret", "updated_at"])
        return self.secret


class Delivery(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    uid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False, help_text="X-Genreweb-Delivery")
    endpoint = models.ForeignKey(Endpoint, on_delete=models.CASCADE, related_name="deliveries")
    event = models.CharField(max_length=64)
    event_id = models.UUIDField(help_text="the event's id; the same in a redelivery")
    payload = models.JSONField(help_text="the JSON body sent")
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    last_status_code = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    last_response = models.TextField(blank=True, help_text="the start of the last response body")
    # Pending: when the next attempt may start (an attempt in progress holds it for a while).
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    redelivery_of = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["status", "next_attempt_at"], name="webhooks_delivery_due"),
            # the retention sweep's delete (delivery.prune_finished)
            models.Index(fields=["finished_at"], name="webhooks_delivery_finished"),
        ]
        verbose_name_plural = "deliveries"

    def __str__(self) -> str:
        return f"{self.event} -> {self.endpoint.name} ({self.status})"

    @property
    def payload_json(self) -> str:
        return json.dumps(self.payload, indent=2, ensure_ascii=False)
