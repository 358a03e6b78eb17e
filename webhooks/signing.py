"""Delivery signatures: HMAC-SHA256 of ``"<timestamp>.<body>"`` with the endpoint's secret.

Header ``X-Genreweb-Signature: t=<unix seconds>,v1=<hex digest>``. A receiver recomputes the
digest over the raw body it got, compares in constant time, and refuses timestamps older than
a few minutes (a replayed request keeps its old timestamp: changing it breaks the digest).
"""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "X-Genreweb-Signature"
EVENT_HEADER = "X-Genreweb-Event"
DELIVERY_HEADER = "X-Genreweb-Delivery"
DEFAULT_TOLERANCE_S = 300


def digest(secret: str, timestamp: int, body: bytes) -> str:
    return hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()


def signature_header(secret: str, body: bytes, timestamp: int | None = None) -> str:
    timestamp = int(time.time()) if timestamp is None else timestamp
    return f"t={timestamp},v1={digest(secret, timestamp, body)}"


def verify(secret: str, body: bytes, header: str, *, tolerance_s: int = DEFAULT_TOLERANCE_S, now=None) -> bool:
    """What a receiver does (also usable by Python receivers that import genreweb)."""
    try:
        fields = dict(item.split("=", 1) for item in header.split(","))
        timestamp = int(fields["t"])
    except (KeyError, ValueError):
        return False
    now = time.time() if now is None else now
    if abs(now - timestamp) > tolerance_s:
        return False
    return hmac.compare_digest(digest(secret, timestamp, body), fields.get("v1", ""))
