"""A small, polite HTTP client for importers (httpx): bounded retries, Retry-After, backoff.

- 429: wait for Retry-After (seconds or an HTTP date) when given, else exponential backoff
  with jitter; a server asking for more than ``max_retry_after`` seconds is an error.
- 5xx, timeouts, connection errors and (for JSON) malformed bodies: retried with backoff,
  at most ``max_retries`` times, then ``HttpError``.
- 401: ``AuthError`` at once (retrying a refused key only burns quota).
- other 4xx: ``HttpError`` at once (``status`` tells which).
"""

from __future__ import annotations

import email.utils
import logging
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

logger = logging.getLogger(__name__)

# Module-level so tests can swap in a recorder instead of really waiting.
sleep: Callable[[float], None] = time.sleep


@dataclass
class _Attempt:
    value: Any = None
    problem: str | None = None  # set: worth retrying
    wait: float | None = None  # seconds the server asked for (Retry-After)


class HttpError(Exception):
    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class AuthError(HttpError):
    """The server refused the credentials (HTTP 401)."""


class HttpClient:
    def __init__(
        self,
        *,
        base_url: str = "",
        params: dict | None = None,
        headers: dict | None = None,
        timeout: float = 20.0,
        max_retries: int = 5,
        backoff_base: float = 1.0,
        backoff_cap: float = 60.0,
        max_retry_after: float = 300.0,
        rng: Callable[[], float] = random.random,
        name: str = "server",
    ):
        self.base_url = base_url.rstrip("/")
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.max_retry_after = max_retry_after
        self.rng = rng
        self.name = name
        self.retries: Counter[str] = Counter()  # why we retried, for the import summary
        self._client = httpx.Client(
            params=params or {},
            headers={"Accept": "application/json", "User-Agent": "genreweb-importer", **(headers or {})},
            timeout=timeout,
            follow_redirects=True,
        )

    def close(self) -> None:
        self._client.close()

    def url(self, path: str) -> str:
        return path if path.startswith(("http://", "https://")) else f"{self.base_url}/{path.lstrip('/')}"

    def get_json(self, path: str, params: dict | None = None) -> Any:
        return self._get(self.url(path), params, want_json=True)

    def get_bytes(self, url: str) -> bytes:
        return self._get(self.url(url), None, want_json=False)

    def backoff(self, attempt: int) -> float:
        # "Equal jitter": at least half the exponential step, so retries really spread out.
        step = min(self.backoff_cap, self.backoff_base * 2 ** (attempt - 1))
        return step / 2 + self.rng() * step / 2

    def _get(self, url: str, params: dict | None, *, want_json: bool) -> Any:
        attempt = 0
        while True:
            attempt += 1
            outcome = self._try_once(url, params, want_json)
            if outcome.problem is None:
                return outcome.value
            problem, wait = outcome.problem, outcome.wait
            if attempt > self.max_retries:
                raise HttpError(f"{self.name}: {problem} for {_safe(url)}, still after {self.max_retries} retries")
            self.retries[problem.split(" (")[0]] += 1
            delay = wait if wait is not None else self.backoff(attempt)
            logger.info("%s: %s for %s; retry %d in %.1fs", self.name, problem, _safe(url), attempt, delay)
            sleep(delay)

    def _try_once(self, url: str, params: dict | None, want_json: bool) -> _Attempt:
        try:
            response = self._client.get(url, params=params)
        except httpx.TimeoutException:
            return _Attempt(problem="timeout")
        except httpx.TransportError as exc:
            return _Attempt(problem=f"connection error ({type(exc).__name__})")
        status = response.status_code
        if status == 401:
            raise AuthError(f"{self.name} refused the credentials (HTTP 401): {_message(response)}", 401)
        if status == 429:
            return _Attempt(problem="rate limited (429)", wait=self._retry_after(response))
        if status >= 500:
            return _Attempt(problem=f"HTTP {status}")
        if status >= 400:
            raise HttpError(f"{self.name}: HTTP {status} for {_safe(url)}: {_message(response)}", status)
        if not want_json:
            return _Attempt(value=response.content)
        try:
            return _Attempt(value=response.json())
        except ValueError:
            return _Attempt(problem="malformed JSON")

    def _retry_after(self, response: httpx.Response) -> float | None:
        value = response.headers.get("Retry-After", "").strip()
        if not value:
            return None
        try:
            seconds = float(value)
        except ValueError:
            try:
                when = email.utils.parsedate_to_datetime(value)
            except (TypeError, ValueError):
                return None
            if when.tzinfo is None:
                when = when.replace(tzinfo=UTC)
            seconds = (when - datetime.now(UTC)).total_seconds()
        seconds = max(seconds, 0.0)
        if seconds > self.max_retry_after:
            raise HttpError(
                f"{self.name} asks to wait {seconds:.0f}s before retrying (Retry-After), more than the "
                f"{self.max_retry_after:.0f}s this import waits; try again later",
                429,
            )
        return seconds


def _message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(body, dict):
        return str(body.get("status_message") or body.get("errors") or body)[:200]
    return str(body)[:200]


def _safe(url: str) -> str:
    # Never echo credentials into logs or summaries.
    return httpx.URL(url).copy_remove_param("api_key").__str__() if "api_key" in url else url
