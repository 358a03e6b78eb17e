"""What each job kind runs: the glue from a Job's parameters to the service that does the work
(catalog and ml services, imported late: workers -> ml -> catalog, and tasks load fast).

Each ``run_<kind>(job, progress)`` returns the job's result, or None when the job finishes
elsewhere; the kinds table (workers.kinds) names them.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from typing import Any

from base.progress import Progress, scaled

from . import kinds
from .lifecycle import append_log, jsonable
from .models import Job


@contextlib.contextmanager
def same_import_lock(source: str, target: str, progress: Progress):
    """Serialise imports of the same source + path across all workers (Postgres advisory lock).

    Two identical imports at once would otherwise race on the same TMDB/IMDb ids; in turn,
    the second finds everything already there. Waiting stays cancellable. SQLite already
    serialises writers, so there it is a no-op.
    """
    from django.db import connection

    if connection.vendor != "postgresql":
        yield
        return
    key = int.from_bytes(hashlib.sha256(f"genreweb-import:{source}:{target}".encode()).digest()[:8], "big", signed=True)
    with connection.cursor() as cursor:
        while True:
            cursor.execute("SELECT pg_try_advisory_lock(%s)", [key])
            if cursor.fetchone()[0]:
                break
            progress(f"waiting for another {source} import of {target} to finish", 0.0)
            time.sleep(0.5)
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [key])


def run_import(job: Job, progress: Progress) -> dict:
    from catalog.importers import run_import

    params = dict(job.params)
    source = params.pop("source")

    def record_run(run) -> None:  # so a sweep that finds this worker dead ends the run too
        Job.objects.filter(pk=job.pk).update(result={**job.result, "import_run_id": run.pk})

    # A file import is identified by its path, a TMDB import by its release-date window.
    target = params.get("path") or f"{params.get('date_from') or ''}..{params.get('date_to') or ''}"
    with same_import_lock(source, str(target), progress):
        run = run_import(source, params, progress=progress, on_run=record_run)
    summary = {
        "import_run_id": run.pk,
        "source": source,
        **{
            name: getattr(run, name)
            for name in ("created", "updated", "unchanged", "skipped", "posters_stored")
            if hasattr(run, name)
        },
    }
    return summary


def run_preprocess(job: Job, progress: Progress) -> dict:
    from catalog.preprocessing import preprocess_posters

    return {"summary": jsonable(preprocess_posters(**job.params, progress=progress))}


def _build_snapshot(options: dict, user, progress: Progress):
    from ml.services.snapshots import build_snapshot

    return build_snapshot(**options, user=user, progress=progress)


def run_snapshot(job: Job, progress: Progress) -> dict:
    snapshot = _build_snapshot(job.params, job.requested_by, progress)
    return {"snapshot_id": snapshot.pk, "snapshot": jsonable(snapshot)}


def _train(snapshot_id: int, config, user, progress: Progress) -> tuple[Any, int]:
    from ml.services.training import train_model

    run = train_model(snapshot_id, config, user=user, progress=progress)  # raises unless it succeeded
    return run, run.model_version.pk


def _evaluate(model_version_id: int, snapshot_id: int | None, progress: Progress):
    from ml.services.evaluation import evaluate_model

    kwargs = {"snapshot_id": snapshot_id} if snapshot_id else {}
    return evaluate_model(model_version_id, progress=progress, **kwargs)


def run_train(job: Job, progress: Progress) -> dict:
    trained, version_id = _train(job.params["snapshot_id"], job.params["config"], job.requested_by, progress)
    return {"model_version_id": version_id, "training": jsonable(trained)}


def run_evaluate(job: Job, progress: Progress) -> dict:
    evaluation = _evaluate(job.params["model_version_id"], job.params.get("snapshot_id"), progress)
    return {"model_version_id": job.params["model_version_id"], "evaluation": jsonable(evaluation)}


def run_retrain(job: Job, progress: Progress) -> None:
    """snapshot -> train -> evaluate here, then a batch-predict child job; the retrain job
    finishes when that child does (workers.lifecycle._child_finished)."""
    params = job.params
    snapshot = _build_snapshot(params.get("snapshot", {}), job.requested_by, scaled(progress, 0.0, 0.1))
    _, version_id = _train(snapshot.pk, params["config"], job.requested_by, scaled(progress, 0.1, 0.8))
    evaluation = _evaluate(version_id, snapshot.pk, scaled(progress, 0.8, 0.9))
    predict_params = {"model_version_id": version_id}
    if params.get("shard_size"):
        predict_params["shard_size"] = params["shard_size"]
    from .jobs import enqueue

    child = enqueue(kinds.PREDICT, predict_params, job.requested_by, parent=job)
    Job.objects.filter(pk=job.pk).update(
        progress=90.0,
        step=f"batch predict (job #{child.pk})",
        result={
            "snapshot_id": snapshot.pk,
            "model_version_id": version_id,
            "evaluation": jsonable(evaluation),
            "predict_job_id": child.pk,
        },
    )
    append_log(
        job.pk,
        f"snapshot #{snapshot.pk}, model version #{version_id} evaluated; predicting all movies in job #{child.pk}",
    )
    return None


def run_audit_labels(job: Job, progress: Progress) -> dict:
    from ml.services.audit import run_audit

    run = run_audit(**job.params, user=job.requested_by, progress=progress)
    return {"audit_id": run.pk, "counts": run.counts, "duration_s": run.duration_s}


def run_bulk_labels(job: Job, progress: Progress) -> dict:
    """A queued change set (catalog.bulk) run to its end: a bulk change over what its stored
    selection matches now (the ids, or the filter through the catalog page's one filter, the
    audit filter included), or an undo; ml's predictions and label issues follow each batch."""
    from catalog.bulk import BulkError, run_change_set
    from catalog.models import ChangeSet, Movie
    from ml.services.review import labels_changed
    from ml.views import BrowseView

    change_set = ChangeSet.objects.get(pk=job.params["change_set"])
    movies = None
    if change_set.kind == ChangeSet.Kind.BULK:
        selection = change_set.selection
        if "ids" in selection:
            movies = Movie.objects.filter(pk__in=selection["ids"])
        else:
            form, movies = BrowseView().filtered_movies(selection.get("filter", {}))
            if form.errors:  # checked when it was asked; never "every movie" instead
                raise BulkError(f"the stored filter is not valid any more: {form.errors.as_text()}")
    run_change_set(change_set, movies, on_changed=labels_changed, progress=progress)
    return {
        "change_set_id": change_set.pk,
        "status": change_set.status,
        **{name: getattr(change_set, name) for name in ("matched", "changed", "unchanged", "skipped")},
    }
