"""What every long-running service shares with whoever runs it (jobs, commands, tests).

- ``RunStatus``: the one status vocabulary of every run record (jobs, their shards, imports,
  training runs): queued -> running -> succeeded / failed / cancelled.
- ``Cancelled``: raised by a ``progress`` callback when the caller cancelled the work;
  services end their own run record as cancelled (not failed) when they see it.
- One list of credential parameters and one masking function, for ImportRun.params, Job
  params shown in pages and the API, and the scrub when a job ends.
- ``storable_text`` / ``storable_json``: text from errors, logs and tracebacks made safe for
  the database (PostgreSQL refuses NUL in text and jsonb, and UTF-8 cannot hold a lone
  surrogate), with a size cap, so recording an outcome can never fail on its content.

No Django model imports here: the lowest layer, imported by catalog, ml and workers.
"""

from __future__ import annotations

from typing import Any

from django.db import models


class RunStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


RUN_FINISHED = (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED)
RUN_OPEN = (RunStatus.QUEUED, RunStatus.RUNNING)

SECRET_PARAMS = frozenset({"api_key", "bearer_token", "token", "password", "secret"})
MASK = "***"


class Cancelled(Exception):
    """The caller asked the work to stop (raised from its progress callback)."""


def mask_secrets(params: dict | None) -> dict:
    """Parameters safe to show or store: credentials replaced by ``***``."""
    return {k: (MASK if k in SECRET_PARAMS and v else v) for k, v in (params or {}).items()}


def without_secrets(params: dict | None) -> dict:
    """Parameters with credentials removed (what a finished job keeps at rest)."""
    return {k: v for k, v in (params or {}).items() if k not in SECRET_PARAMS}


def storable_text(value: Any, limit: int | None = 10_000, *, keep: str = "head") -> str:
    """``value`` as text any database column accepts: NUL shown as ``\\x00``, lone surrogates
    replaced, at most ``limit`` characters (``keep="tail"`` keeps the end, for tracebacks)."""
    try:
        text = value if isinstance(value, str) else str(value)
    except Exception:  # noqa: BLE001 - a broken __str__ must not stop the caller
        text = f"<unprintable {type(value).__name__}>"
    if "\x00" in text:
        text = text.replace("\x00", "\\x00")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    if limit is not None and len(text) > limit:
        cut = len(text) - limit
        marker = f"... ({cut} characters cut) ..."
        if keep == "tail":
            text = marker + text[-(limit - len(marker)) :]
        else:
            text = text[: max(0, limit - len(marker))] + marker
    return text


def storable_json(value: Any, text_limit: int = 2_000) -> Any:
    """A JSON value whose strings (keys included) are all ``storable_text``."""
    if isinstance(value, str):
        return storable_text(value, text_limit)
    if isinstance(value, dict):
        return {storable_text(k, 200): storable_json(v, text_limit) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [storable_json(v, text_limit) for v in value]
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return storable_text(value, text_limit)
