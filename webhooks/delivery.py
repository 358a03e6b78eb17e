"""From event to signed HTTP request: one Delivery per subscribed endpoint, sent by the
``webhooks.deliver`` task on the default queue, retried with exponential backoff.

- ``on_event`` (connected to ``base.events.event_raised``) writes the Delivery rows first, then
  publishes one message each. The row is the record: if the broker is down the message is
  simply not sent, and the workers' stale sweep (``send_due``) publishes every pending delivery
  whose ``next_attempt_at`` has passed.
- ``attempt`` claims the delivery with a conditional update (its ``next_attempt_at`` moves a
  lease ahead), so a duplicate message, a sweep and a countdown message never send it twice at
  once. One POST, GENREWEB_WEBHOOK_TIMEOUT_S timeout, redirects not followed, proxies from the
  environment ignored, at most ``RESPONSE_LOG_BYTES`` of the answer read and kept.
- A 2xx answer: succeeded. Anything else (3xx included) or a network error: attempt again after
  ``backoff_s(attempts)``, until GENREWEB_WEBHOOK_MAX_ATTEMPTS attempts; then failed. A URL that
  the address policy (``targets``) now refuses fails at once.
- Finished deliveries are kept GENREWEB_WEBHOOK_RETENTION_DAYS (``prune_finished``, also on
  the sweep), so the log does not grow without bound.
The endpoint's secret is read only to sign; it is never logged nor stored on the delivery.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from datetime import timedelta
from urllib.parse import urlsplit, urlunsplit

import httpx
from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from base.runs import storable_text

from . import signing, targets
from .models import Delivery, Endpoint

logger = logging.getLogger(__name__)

RESPONSE_LOG_BYTES = 2_000
BACKOFF_FACTOR = 4
# An attempt holds its delivery this long past its timeout; after that (its worker died) the
# sweep sends it again.
LEASE_MARGIN_S = 30
USER_AGENT = "genreweb-webhooks/1"


def max_attempts() -> int:
    return max(1, settings.GENREWEB_WEBHOOK_MAX_ATTEMPTS)


def backoff_s(failed_attempts: int) -> float:
    """Seconds between the ``failed_attempts``-th failed attempt and the next one:
    base, base x 4, base x 16, ... (base = GENREWEB_WEBHOOK_RETRY_BASE_S, default 30 s)."""
    return settings.GENREWEB_WEBHOOK_RETRY_BASE_S * BACKOFF_FACTOR ** (failed_attempts - 1)


def retry_schedule() -> list[float]:
    """The waits between attempts of a delivery that keeps failing (one fewer than attempts)."""
    return [backoff_s(n) for n in range(1, max_attempts())]


def encode(payload: dict) -> bytes:
    """The exact body sent (and signed)."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


# --- enqueue ----------------------------------------------------------------------------------


def on_event(sender=None, *, event: str, event_id: str, occurred_at: str, data: dict, **kwargs) -> list[int]:
    """Receiver of base.events.event_raised: a pending Delivery per active subscribed endpoint."""
    endpoints = [e for e in Endpoint.objects.filter(active=True) if event in (e.events or [])]
    if not endpoints:
        return []
    payload = {"id": event_id, "event": event, "occurred_at": occurred_at, "data": data}
    now = timezone.now()
    with transaction.atomic():
        ids = [
            Delivery.objects.create(endpoint=e, event=event, event_id=event_id, payload=payload, next_attempt_at=now).pk
            for e in endpoints
        ]
    transaction.on_commit(lambda: publish_all(ids))
    return ids


# After the broker refused a message, events stop trying for a while (their rows wait for the
# sweep): a bulk change of thousands of movies must not wait a connect timeout per movie.
BROKER_BACKOFF_S = 15.0
_broker_down_until = 0.0


def publish(delivery_id: int, countdown: float | None = None, *, force: bool = False) -> bool:
    """Send the task message; False (and the row stays pending for the sweep) if the broker is
    down or was down a moment ago (``force``: try anyway, as the sweep does)."""
    global _broker_down_until
    from workers import broker

    from .tasks import deliver

    if not force and time.monotonic() < _broker_down_until:
        return False
    try:
        broker.publish(deliver, args=[delivery_id], countdown=countdown or None)
        _broker_down_until = 0.0
        return True
    except Exception as exc:  # noqa: BLE001 - the row is the record; the sweep sends it later
        _broker_down_until = time.monotonic() + BROKER_BACKOFF_S
        logger.warning("could not send webhook delivery %s to the broker (%s); the sweep will", delivery_id, exc)
        return False


def publish_all(ids: list[int], *, force: bool = False) -> int:
    sent = 0
    for pk in ids:
        if not publish(pk, force=force):
            break  # the broker is down: the rest wait for the sweep too, without a timeout each
        sent += 1
        force = False
    return sent


def send_due(limit: int = 500) -> list[int]:
    """The sweep's part: publish pending deliveries whose next attempt is due (a message for
    one already on its way is harmless: the attempt's claim lets only one through)."""
    due = list(
        Delivery.objects.filter(status=Delivery.Status.PENDING, next_attempt_at__lte=timezone.now())
        .order_by("next_attempt_at", "pk")
        .values_list("pk", flat=True)[:limit]
    )
    publish_all(due, force=True)
    return due


def prune_finished(limit: int = 1000) -> int:
    """The sweep's other part: delete succeeded and failed deliveries finished more than
    GENREWEB_WEBHOOK_RETENTION_DAYS ago (0 keeps them all), at most ``limit`` a sweep so one
    sweep never holds a long delete; pending ones are never pruned. Returns how many went."""
    days = settings.GENREWEB_WEBHOOK_RETENTION_DAYS
    if days <= 0:
        return 0
    cutoff = timezone.now() - timedelta(days=days)
    old = list(
        Delivery.objects.filter(
            status__in=(Delivery.Status.SUCCEEDED, Delivery.Status.FAILED), finished_at__lt=cutoff
        ).values_list("pk", flat=True)[:limit]
    )
    if old:
        Delivery.objects.filter(pk__in=old).delete()
    return len(old)


PING = "ping"  # not a domain event: sent only on request, to check a receiver


def ping(endpoint: Endpoint, user=None) -> Delivery:
    """A ``ping`` delivery to this endpoint (whatever it subscribes to): lets staff check that
    the receiver answers and verifies signatures."""
    event_id = str(uuid.uuid4())
    payload = {
        "id": event_id,
        "event": PING,
        "occurred_at": timezone.now().isoformat(),
        "data": {"endpoint": endpoint.pk, "name": endpoint.name, "events": endpoint.events},
    }
    with transaction.atomic():
        new = Delivery.objects.create(
            endpoint=endpoint,
            event=PING,
            event_id=event_id,
            payload=payload,
            requested_by=user,
            next_attempt_at=timezone.now(),
        )
        transaction.on_commit(lambda: publish(new.pk))
    return new


def redeliver(delivery: Delivery, user=None) -> Delivery:
    """A new delivery of the same event (same payload and event id, a new delivery id)."""
    with transaction.atomic():
        new = Delivery.objects.create(
            endpoint=delivery.endpoint,
            event=delivery.event,
            event_id=delivery.event_id,
            payload=delivery.payload,
            redelivery_of=delivery,
            requested_by=user,
            next_attempt_at=timezone.now(),
        )
        transaction.on_commit(lambda: publish(new.pk))
    return new


# --- one attempt ------------------------------------------------------------------------------


def _claim(delivery_id: int) -> bool:
    now = timezone.now()
    lease = timedelta(seconds=settings.GENREWEB_WEBHOOK_TIMEOUT_S * 2 + LEASE_MARGIN_S)
    # A countdown message may arrive a moment early by another machine's clock.
    due = Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now + timedelta(seconds=1))
    return bool(
        Delivery.objects.filter(due, pk=delivery_id, status=Delivery.Status.PENDING).update(
            next_attempt_at=now + lease, attempts=F("attempts") + 1, updated_at=now
        )
    )


def _pinned_request(url: str, target: targets.Target) -> tuple[str, dict, dict]:
    """The URL with the checked address in place of the host, the Host header and TLS name."""
    parts = urlsplit(url)
    address = f"[{target.address}]" if ":" in target.address else target.address
    default_port = 443 if target.scheme == "https" else 80
    netloc = address if parts.port is None else f"{address}:{parts.port}"
    host = f"[{target.host}]" if ":" in target.host else target.host
    host_header = host if target.port == default_port else f"{host}:{target.port}"
    extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
    return urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, "")), {"Host": host_header}, extensions


def _post(endpoint: Endpoint, delivery: Delivery, body: bytes) -> tuple[int, str]:
    """(status code, start of the response body); raises httpx/targets errors."""
    target = targets.resolve(endpoint.url)
    url, host, extensions = _pinned_request(endpoint.url, target)
    headers = {
        **host,
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        signing.EVENT_HEADER: delivery.event,
        signing.DELIVERY_HEADER: str(delivery.uid),
        signing.SIGNATURE_HEADER: signing.signature_header(endpoint.secret, body),
    }
    timeout = httpx.Timeout(settings.GENREWEB_WEBHOOK_TIMEOUT_S)
    with httpx.Client(timeout=timeout, follow_redirects=False, trust_env=False) as client:
        with client.stream("POST", url, content=body, headers=headers, extensions=extensions) as response:
            kept = b""
            for chunk in response.iter_bytes():
                kept += chunk
                if len(kept) >= RESPONSE_LOG_BYTES:
                    break
            text = kept[:RESPONSE_LOG_BYTES].decode("utf-8", "replace")
            if response.is_redirect:
                text = f"(redirect to {response.headers.get('location', '?')} not followed) {text}"
            return response.status_code, text


def attempt(delivery_id: int) -> str | None:
    """Make one attempt if the delivery is due and nobody else has it; returns its status then
    (None when there was nothing to do)."""
    if not _claim(delivery_id):
        return None
    delivery = Delivery.objects.select_related("endpoint").get(pk=delivery_id)
    endpoint = delivery.endpoint
    code, error, response_text, final = None, "", "", False
    if not endpoint.active:
        error, final = "the endpoint is not active; nothing sent", True
    else:
        try:
            code, response_text = _post(endpoint, delivery, encode(delivery.payload))
            if not 200 <= code < 300:
                error = f"HTTP {code}"
        except targets.Unresolvable as exc:
            error = str(exc)  # DNS may come back: retried
        except targets.UnsafeURL as exc:
            error, final = f"refused: {exc}", True
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return _record(delivery, code, error, response_text, final)


def _record(delivery: Delivery, code: int | None, error: str, response_text: str, final: bool) -> str:
    now = timezone.now()
    fields = {
        "last_status_code": code,
        "last_error": storable_text(error, 2_000),
        "last_response": storable_text(response_text, RESPONSE_LOG_BYTES),
        "updated_at": now,
    }
    retry_in = None
    if not error:
        fields.update(status=Delivery.Status.SUCCEEDED, finished_at=now, next_attempt_at=None)
    elif final or delivery.attempts >= max_attempts():
        fields.update(status=Delivery.Status.FAILED, finished_at=now, next_attempt_at=None)
    else:
        retry_in = backoff_s(delivery.attempts)
        fields.update(next_attempt_at=now + timedelta(seconds=retry_in))
    Delivery.objects.filter(pk=delivery.pk, status=Delivery.Status.PENDING).update(**fields)
    status = fields.get("status", Delivery.Status.PENDING)
    logger.info(
        "webhook delivery %s (%s) to endpoint %s, attempt %s: %s%s",
        delivery.uid,
        delivery.event,
        delivery.endpoint_id,
        delivery.attempts,
        status,
        f" ({error[:200]})" if error else "",
    )
    if retry_in is not None:
        publish(delivery.pk, countdown=retry_in)
    return status
