"""The one progress type and the one way to give a sub-step its share of it.

A long-running service takes ``progress(message, fraction)`` (fraction 0..1 of its own work);
whoever runs it (a job, a command, a test) decides what a call does. A service that runs
sub-steps hands each ``scaled(progress, start, end)``, so the caller sees one range that never
restarts at 0. Standard library only: ml/engine may use it without importing Django.
"""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[str, float], None]


def clamp(fraction: float) -> float:
    return max(0.0, min(1.0, float(fraction)))


def report(progress: Progress | None, message: str, fraction: float) -> None:
    """Call ``progress`` (if any) with ``fraction`` kept within 0..1."""
    if progress is not None:
        progress(message, clamp(fraction))


def scaled(progress: Progress | None, start: float, end: float) -> Progress | None:
    """A progress callback mapping a sub-step's 0..1 onto ``start..end`` of ``progress``'s range."""
    if progress is None:
        return None

    def sub_step(message: str, fraction: float) -> None:
        progress(message, start + (end - start) * clamp(fraction))

    return sub_step
