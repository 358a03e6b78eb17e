"""Django-side ML services: the functions management commands, Celery tasks and views call.

- snapshots.build_snapshot     freeze movies + labels + split into a DatasetSnapshot
- training.train_model         snapshot + config -> TrainingRun -> ModelVersion (+ evaluations)
- evaluation.evaluate_model    ModelVersion x snapshot split -> Evaluation + GenreMetric rows
- inference.predict_movies     bulk, idempotent Prediction upserts; predict_raw for ad-hoc input
- registry.promote             move the "production" alias in one transaction

Long-running services take ``progress(message, fraction)``; a callback that raises
(e.g. to cancel a job) leaves the data consistent: work is committed per batch or
not at all.
"""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[str, float], None]


def report(progress: Progress | None, message: str, fraction: float) -> None:
    if progress is not None:
        progress(message, max(0.0, min(1.0, float(fraction))))


def scaled(progress: Progress | None, start: float, end: float) -> Progress | None:
    """A progress callback mapping a sub-task's 0..1 onto ``start..end`` of the caller's."""
    if progress is None:
        return None

    def inner(message: str, fraction: float) -> None:
        progress(message, start + (end - start) * max(0.0, min(1.0, float(fraction))))

    return inner
