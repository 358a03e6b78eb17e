"""Server-side request latency, measured one way for every page benchmark (pages, search,
similar movies): p50/p95/max per case and the most queries one request made."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

from django.core.management.base import CommandError
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

TARGET_P95_MS = 200.0  # the page budget


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def get_ok(client: Client, url: str) -> None:
    response = client.get(url)
    if response.status_code != 200:
        raise CommandError(f"GET {url} answered {response.status_code}: {response.content[:200]!r}")


def measure(client: Client, make_url: Callable[[], str], requests: int, warmup: int) -> tuple[float, float, float, int]:
    """(p50 ms, p95 ms, max ms, most queries) of ``requests`` GETs after ``warmup`` untimed ones."""
    for _ in range(warmup):
        get_ok(client, make_url())
    timings, queries = [], []
    for _ in range(requests):
        url = make_url()
        with CaptureQueriesContext(connection) as captured:
            started = time.perf_counter()
            get_ok(client, url)
            timings.append(1000 * (time.perf_counter() - started))
        queries.append(len(captured))
    return statistics.median(timings), percentile(timings, 0.95), max(timings), max(queries)


def latency_table(rows: list[tuple], first: str, target_ms: float = TARGET_P95_MS) -> tuple[str, list[str]]:
    """The markdown table of ``(name, p50, p95, max, queries)`` rows and the names whose p95
    is over ``target_ms``."""
    table = [f"| {first} | p50 ms | p95 ms | max ms | queries |", "|---|---:|---:|---:|---:|"]
    table += [f"| {r[0]} | {r[1]:.1f} | {r[2]:.1f} | {r[3]:.1f} | {r[4]} |" for r in rows]
    return "\n".join(table), [r[0] for r in rows if r[2] > target_ms]
