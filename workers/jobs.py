"""The one way to start, cancel, retry and recover jobs. Views, the API and commands call these.

- ``enqueue(kind, params, user)`` validates ``params`` for the kind, creates the Job and sends
  its Celery message when the surrounding transaction commits (so a worker never sees a job
  row that does not exist yet, and a rolled-back request sends nothing).
- ``finish_job(job_id, status, ...)``: the one way a job reaches succeeded / failed /
  cancelled, used by the worker, by cancel and by the sweep. It removes credentials, closes
  the job's open shards and its ImportRun, and cannot fail on what it stores.
- ``cancel(job)``: a queued job is marked cancelled at once (its message is revoked, and the
  task refuses to start a job that is not queued); a running job gets ``cancel_requested``,
  which the task's progress callback turns into ``JobCancelled`` between rows/batches; a
  running job whose worker is gone (no heartbeat) ends cancelled at once.
- ``retry(job)``: a new Job with the same parameters; for batch prediction the new job reuses
  the shards that already succeeded and runs only the rest.
- ``requeue_stale_jobs()``: re-sends jobs whose message vanished from the broker (Redis
  restarted without persistence, send failed), re-sends shards whose worker is gone and
  fails running jobs whose worker is gone (heartbeat older than GENREWEB_HEARTBEAT_TIMEOUT_S).
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.apps import apps
from django.conf import settings
from django.db import models, transaction
from django.db.models import Q
from django.utils import timezone

from base.runs import storable_json, storable_text, without_secrets

from .models import MAX_LOG_LINES, Job, JobShard
from .queues import TASK_ROUTES

logger = logging.getLogger(__name__)

TEST_HOOK_PREFIX = "_test_"
MAX_SHARD_SIZE = 20_000


class JobError(Exception):
    """A job operation that cannot be done in the job's current state."""


class InvalidJobParams(ValueError):
    """Parameters that do not fit the job kind. ``errors`` maps field name -> message."""

    def __init__(self, errors: dict[str, str]):
        self.errors = errors
        super().__init__("; ".join(f"{name}: {message}" for name, message in errors.items()))


# --- validation ---------------------------------------------------------------------------


def _int_field(
    params: dict,
    name: str,
    errors: dict,
    *,
    required: bool = False,
    minimum: int | None = None,
    maximum: int | None = None,
) -> int | None:
    if params.get(name) in (None, ""):
        if required:
            errors[name] = "This field is required."
        params.pop(name, None)
        return None
    value = params[name]
    if isinstance(value, bool) or not isinstance(value, (int, str)) or not str(value).strip().lstrip("-").isdigit():
        errors[name] = f"Must be a whole number, got {value!r}."
        return None
    value = int(value)
    if minimum is not None and value < minimum:
        errors[name] = f"Must be at least {minimum}."
    elif maximum is not None and value > maximum:
        errors[name] = f"Must be at most {maximum}."
    params[name] = value
    return value


def _id_list_field(params: dict, name: str, errors: dict) -> list[int] | None:
    value = params.get(name)
    if value is None:
        params.pop(name, None)
        return None
    if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        errors[name] = "Must be a list of integer ids."
        return None
    if not value:
        errors[name] = "Must not be empty (leave it out to mean all movies)."
        return None
    params[name] = sorted(set(value))
    return params[name]


def _must_exist(app_label: str, model_name: str, pk: int | None, name: str, errors: dict) -> None:
    """Check that a referenced row exists; skipped while the model is not installed yet."""
    if pk is None or name in errors:
        return
    try:
        model = apps.get_model(app_label, model_name)
    except LookupError:
        return
    if not model.objects.filter(pk=pk).exists():
        errors[name] = f"No {model._meta.verbose_name} with id {pk}."


def _config_field(params: dict, errors: dict, *, required: bool) -> None:
    config = params.get("config")
    if config is None:
        if required:
            errors["config"] = "This field is required: a model config (object) or a preset name (string)."
        return
    if not isinstance(config, (dict, str)) or (isinstance(config, str) and not config.strip()):
        errors["config"] = "Must be a model config object or a preset name."
        return
    from ml.engine.registry import get_config  # pure config code, no torch

    try:
        get_config(config)
    except (ValueError, TypeError) as exc:  # unknown preset, bad field
        errors["config"] = str(exc)


def _validate_import(params: dict, errors: dict) -> None:
    from catalog.importers import registry  # sources, their params, paths under GENREWEB_IMPORT_ROOTS

    hooks = [name for name in params if name.startswith(TEST_HOOK_PREFIX)]  # validate_params checks them
    errors.update(registry.job_param_errors(params, carried=hooks))


def _validate_preprocess(params: dict, errors: dict) -> None:
    _id_list_field(params, "movie_ids", errors)
    min_year = _int_field(params, "min_year", errors, minimum=1870, maximum=2200)
    max_year = _int_field(params, "max_year", errors, minimum=1870, maximum=2200)
    if min_year and max_year and min_year > max_year and "min_year" not in errors:
        errors["min_year"] = "Must not be after max_year."
    for flag in ("dedupe", "force"):
        if flag in params and not isinstance(params[flag], bool):
            errors[flag] = "Must be true or false."
    policy = params.get("grayscale_policy")
    if policy is not None and policy not in ("keep", "convert", "exclude"):
        errors["grayscale_policy"] = "Must be keep, convert or exclude."


def _validate_snapshot(params: dict, errors: dict) -> None:
    _int_field(params, "seed", errors, minimum=0)
    _int_field(params, "min_genre_count", errors, minimum=1)
    fractions = params.get("fractions")
    if fractions is not None and (
        not isinstance(fractions, list)
        or len(fractions) != 3
        or not all(isinstance(f, (int, float)) and not isinstance(f, bool) and f >= 0 for f in fractions)
    ):
        errors["fractions"] = "Must be three non-negative numbers: train, validation, test."
    if "keep_rare_genres" in params and not isinstance(params["keep_rare_genres"], bool):
        errors["keep_rare_genres"] = "Must be true or false."


def _validate_train(params: dict, errors: dict) -> None:
    snapshot_id = _int_field(params, "snapshot_id", errors, required=True, minimum=1)
    _must_exist("ml", "DatasetSnapshot", snapshot_id, "snapshot_id", errors)
    _config_field(params, errors, required=True)


def _validate_evaluate(params: dict, errors: dict) -> None:
    version_id = _int_field(params, "model_version_id", errors, required=True, minimum=1)
    _must_exist("ml", "ModelVersion", version_id, "model_version_id", errors)
    snapshot_id = _int_field(params, "snapshot_id", errors, minimum=1)
    _must_exist("ml", "DatasetSnapshot", snapshot_id, "snapshot_id", errors)


def _validate_predict(params: dict, errors: dict) -> None:
    version_id = _int_field(params, "model_version_id", errors, required=True, minimum=1)
    _must_exist("ml", "ModelVersion", version_id, "model_version_id", errors)
    _id_list_field(params, "movie_ids", errors)
    _int_field(params, "shard_size", errors, minimum=1, maximum=MAX_SHARD_SIZE)
    _int_field(params, TEST_HOOK_PREFIX + "fail_shard", errors, minimum=0)


def _validate_retrain(params: dict, errors: dict) -> None:
    _config_field(params, errors, required=True)
    if "snapshot" in params and not isinstance(params["snapshot"], dict):
        errors["snapshot"] = "Must be an object of snapshot options."
    elif "snapshot" in params:
        nested: dict[str, str] = {}
        _validate_snapshot(params["snapshot"], nested)
        errors.update({f"snapshot.{name}": message for name, message in nested.items()})
    _int_field(params, "shard_size", errors, minimum=1, maximum=MAX_SHARD_SIZE)


@dataclass(frozen=True)
class KindSpec:
    task_name: str
    validate: Callable[[dict, dict], None]
    # Extra keys a kind passes straight to its service (documented by the service).
    passthrough: bool = True
    description: str = ""


KINDS: dict[str, KindSpec] = {
    Job.Kind.IMPORT: KindSpec(
        "workers.run_import",
        _validate_import,
        description="source (a kind of catalog.importers.registry), path for file sources, importer options",
    ),
    Job.Kind.PREPROCESS: KindSpec(
        "workers.run_preprocess",
        _validate_preprocess,
        description="optional movie_ids, min_year, max_year, dedupe, force, grayscale_policy",
    ),
    Job.Kind.SNAPSHOT: KindSpec(
        "workers.run_snapshot",
        _validate_snapshot,
        description="snapshot options: name, seed, fractions, min_genre_count, keep_rare_genres",
    ),
    Job.Kind.TRAIN: KindSpec("workers.run_train", _validate_train, description="snapshot_id, config"),
    Job.Kind.EVALUATE: KindSpec(
        "workers.run_evaluate", _validate_evaluate, description="model_version_id, optional snapshot_id"
    ),
    Job.Kind.PREDICT: KindSpec(
        "workers.start_batch_predict", _validate_predict, description="model_version_id, optional movie_ids, shard_size"
    ),
    Job.Kind.RETRAIN: KindSpec(
        "workers.run_retrain", _validate_retrain, description="config, optional snapshot options, shard_size"
    ),
}


def validate_params(kind: str, params: dict | None) -> dict:
    """Return cleaned params for ``kind`` or raise InvalidJobParams naming each bad field."""
    if kind not in KINDS:
        raise InvalidJobParams({"kind": f"Unknown job kind {kind!r}; choose one of {', '.join(KINDS)}."})
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise InvalidJobParams({"params": "Must be an object."})
    try:
        cleaned = json.loads(json.dumps(params))
    except (TypeError, ValueError) as exc:
        raise InvalidJobParams({"params": f"Must be JSON-serialisable: {exc}"}) from exc
    errors: dict[str, str] = {}
    hooks = [key for key in cleaned if key.startswith(TEST_HOOK_PREFIX)]
    if hooks and not settings.GENREWEB_TEST_HOOKS:
        errors[hooks[0]] = "Test hooks are disabled (set GENREWEB_TEST_HOOKS=1 only in tests)."
    KINDS[kind].validate(cleaned, errors)
    if errors:
        raise InvalidJobParams(errors)
    return cleaned


# --- queue plumbing ----------------------------------------------------------------------


def queue_for_task(task_name: str) -> str:
    return TASK_ROUTES.get(task_name, {}).get("queue", settings.CELERY_TASK_DEFAULT_QUEUE)


def append_log(job_id: int, line: str) -> None:
    """Add a timestamped line to a job's log, keeping the last MAX_LOG_LINES.

    Never raises: a log line is worth less than the work that writes it.
    """
    stamp = timezone.now().strftime("%H:%M:%S")
    try:
        with transaction.atomic():
            log = Job.objects.select_for_update().values_list("log", flat=True).get(pk=job_id) or []
            log.append(f"{stamp} {storable_text(line, 2000)}")
            if len(log) > MAX_LOG_LINES:
                log = [f"({len(log) - MAX_LOG_LINES + 1} earlier lines dropped)"] + log[-(MAX_LOG_LINES - 1) :]
            Job.objects.filter(pk=job_id).update(log=log)
    except Exception:  # noqa: BLE001
        logger.exception("could not add a log line to job %s", job_id)


def jsonable(value: Any) -> Any:
    """A JSON-safe summary of what a service returned (dicts, dataclasses, model rows)."""
    import dataclasses

    if isinstance(value, models.Model):
        summary = {"id": value.pk, "model": value._meta.label, "str": str(value)}
        for name in ("status", "checksum", "content_hash", "model_version_id"):
            if hasattr(value, name):
                summary[name] = jsonable(getattr(value, name))
        return summary
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return jsonable(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [jsonable(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


# --- the one way to a terminal state -------------------------------------------------------


def finish_job(
    job_id: int,
    status: str,
    *,
    result: dict | None = None,
    error: str = "",
    tb: str = "",
    step: str = "",
    only_if: Callable[[Job], bool] | None = None,
) -> bool:
    """End a job once: succeeded, failed or cancelled. Returns False when it had already ended
    (or ``only_if(locked_job)`` said no).

    Whatever the end, credentials leave the row, open shards are closed and the job's
    ImportRun (if still running) ends too. All text is made storable first; if the database
    still refuses the outcome, a minimal one is recorded instead, so a job always ends.
    """
    assert status in Job.FINISHED, status
    error, tb = storable_text(error, 10_000), storable_text(tb, 20_000, keep="tail")
    step = storable_text(step or status, 255)
    try:
        with transaction.atomic():
            job = Job.objects.select_for_update().get(pk=job_id)
            if job.is_finished or (only_if is not None and not only_if(job)):
                return False
            job.status = status
            job.finished_at = job.heartbeat_at = timezone.now()
            if result is not None:
                job.result = storable_json({**job.result, **jsonable(result)})
            if status == Job.Status.SUCCEEDED:
                job.progress = 100.0
            job.error, job.traceback, job.step = error, tb, step
            # A finished job no longer needs credentials; don't keep them at rest.
            job.params = without_secrets(job.params)
            job.save(
                update_fields=[
                    "status",
                    "finished_at",
                    "heartbeat_at",
                    "result",
                    "progress",
                    "error",
                    "traceback",
                    "step",
                    "params",
                ]
            )
            _close_open_shards(job)
    except Job.DoesNotExist:
        return False
    except Exception as exc:  # noqa: BLE001 - the last resort must still end the job
        logger.exception("could not record the end of job %s; recording a minimal one", job_id)
        job = _finish_minimal(
            job_id, status, f"{error}\n(the full outcome could not be stored: {type(exc).__name__})".strip()
        )
        if job is None:
            return False
    append_log(job_id, f"{status}" + (f": {error.splitlines()[0][:300]}" if error else ""))
    _end_import_run(job)
    if job.parent_id:
        _child_finished(job)
    return True


def _finish_minimal(job_id: int, status: str, error: str) -> Job | None:
    now = timezone.now()
    params = Job.objects.filter(pk=job_id).values_list("params", flat=True).first()
    ended = (
        Job.objects.filter(pk=job_id)
        .exclude(status__in=Job.FINISHED)
        .update(
            status=status,
            finished_at=now,
            heartbeat_at=now,
            step=status,
            traceback="",
            error=storable_text(error, 10_000).encode("ascii", "backslashreplace").decode("ascii"),
            params=without_secrets(params if isinstance(params, dict) else {}),
        )
    )
    if not ended:
        return None
    job = Job.objects.get(pk=job_id)
    _close_open_shards(job)
    return job


def _close_open_shards(job: Job) -> None:
    """A job that ended leaves no shard pending or running."""
    shard_status = JobShard.Status.CANCELLED if job.status == Job.Status.CANCELLED else JobShard.Status.FAILED
    JobShard.objects.filter(job=job, status__in=(JobShard.Status.PENDING, JobShard.Status.RUNNING)).update(
        status=shard_status, finished_at=timezone.now()
    )


def _end_import_run(job: Job) -> None:
    """An import job's ImportRun ends with it (normally the importer ends it first)."""
    run_id = (job.result or {}).get("import_run_id")
    if job.kind != Job.Kind.IMPORT or not run_id:
        return
    from catalog.models import ImportRun

    run_status = ImportRun.Status.CANCELLED if job.status == Job.Status.CANCELLED else ImportRun.Status.FAILED
    if job.status == Job.Status.SUCCEEDED:
        return
    ImportRun.objects.filter(pk=run_id, status=ImportRun.Status.RUNNING).update(
        status=run_status, finished_at=timezone.now(), error=job.error or f"job #{job.pk} {job.status}"
    )


def _child_finished(child: Job) -> None:
    """A retrain job ends with its batch-predict child."""
    parent = Job.objects.filter(pk=child.parent_id, kind=Job.Kind.RETRAIN).first()
    if parent is None or parent.is_finished:
        return
    if child.status == Job.Status.SUCCEEDED:
        finish_job(
            parent.pk,
            Job.Status.SUCCEEDED,
            result={"predict": child.result},
            step="done: snapshot, train, evaluate, predict",
        )
    else:
        finish_job(
            parent.pk,
            child.status,
            result={"predict": child.result},
            error=f"batch predict job #{child.pk} {child.status}: {child.error}".strip(": "),
        )


def heartbeat_cutoff(now=None):
    """Running work whose last heartbeat is older than this has lost its worker."""
    return (now or timezone.now()) - timedelta(seconds=settings.GENREWEB_HEARTBEAT_TIMEOUT_S)


def _silent(job: Job, cutoff) -> bool:
    """Nobody is running ``job``: its heartbeat (or start) is older than ``cutoff``, no shard or
    child job of it is alive."""
    beat = job.heartbeat_at or job.started_at or job.created_at
    if beat >= cutoff:
        return False
    alive_shards = JobShard.objects.filter(job=job, status=JobShard.Status.RUNNING, heartbeat_at__gte=cutoff)
    if alive_shards.exists():
        return False
    return not job.children.exclude(status__in=Job.FINISHED).exists()


def task_named(task_name: str):
    """The Celery task object; importing workers.tasks registers it in any process (web, commands)."""
    from celery import current_app

    from . import tasks  # noqa: F401

    return current_app.tasks[task_name]


def _send_job_message(job_id: int, task_name: str, task_id: str) -> bool:
    """Send the job's Celery message; on failure leave the job queued for the stale sweep.

    Bounded (GENREWEB_ENQUEUE_TIMEOUT_S to connect, no retry): this runs in web requests,
    which must not hang while the broker is down. Job tasks report through the Job row, so
    no result-backend subscription (which retries for ~20 s on its own) is made either.
    """
    from celery import current_app

    timeout = settings.GENREWEB_ENQUEUE_TIMEOUT_S
    options = {**(current_app.conf.broker_transport_options or {}), "max_retries": 0}
    if (current_app.conf.broker_write_url or current_app.conf.broker_url or "").startswith(("redis", "rediss")):
        options.update(socket_connect_timeout=timeout, socket_timeout=timeout)
    try:
        with current_app.connection_for_write(connect_timeout=timeout, transport_options=options) as conn:
            task_named(task_name).apply_async(
                args=[job_id],
                task_id=task_id,
                queue=queue_for_task(task_name),
                connection=conn,
                retry=False,
                ignore_result=True,
            )
        return True
    except Exception as exc:  # broker down: the job row is safe, the sweep re-sends it
        logger.warning("could not send job %s: %s", job_id, exc)
        append_log(job_id, f"could not reach the broker ({type(exc).__name__}); it will be re-sent automatically")
        return False


def _schedule_send(job: Job) -> None:
    spec = KINDS[job.kind]
    job_id, task_id = job.pk, job.celery_task_id
    transaction.on_commit(lambda: _send_job_message(job_id, spec.task_name, task_id))


def enqueue(
    kind: str, params: dict | None = None, user=None, *, parent: Job | None = None, retry_of: Job | None = None
) -> Job:
    """Validate, create a queued Job and send it to its queue once the transaction commits."""
    cleaned = validate_params(kind, params)
    spec = KINDS[kind]
    if user is not None and not getattr(user, "is_authenticated", False):
        user = None
    with transaction.atomic():
        job = Job.objects.create(
            kind=kind,
            params=cleaned,
            requested_by=user,
            queue=queue_for_task(spec.task_name),
            celery_task_id=str(uuid.uuid4()),
            enqueued_at=timezone.now(),
            parent=parent,
            retry_of=retry_of,
            step="queued",
            log=[
                f"{timezone.now():%H:%M:%S} queued on {queue_for_task(spec.task_name)}"
                + (f" (retry of job #{retry_of.pk})" if retry_of else "")
            ],
        )
        if kind == Job.Kind.PREDICT and retry_of is not None:
            _copy_shards_for_retry(retry_of, job)
        _schedule_send(job)
    return job


def _copy_shards_for_retry(old: Job, new: Job) -> None:
    shards = []
    for shard in old.shards.all():
        done = shard.status == JobShard.Status.SUCCEEDED
        shards.append(
            JobShard(
                job=new,
                index=shard.index,
                movie_ids=shard.movie_ids,
                status=JobShard.Status.SUCCEEDED if done else JobShard.Status.PENDING,
                predictions_written=shard.predictions_written if done else 0,
                reused=done,
                duration_s=shard.duration_s if done else None,
            )
        )
    JobShard.objects.bulk_create(shards)


def _revoke(task_ids: list[str]) -> None:
    """Best effort: the task itself also refuses to run a job/shard that is no longer wanted."""
    from celery import current_app

    if not task_ids:
        return
    try:
        current_app.control.revoke(task_ids)
    except Exception as exc:  # e.g. the filesystem broker has no broadcast
        logger.info("revoke not delivered (%s); tasks will notice the cancellation themselves", exc)


def cancel(job: Job, user=None) -> Job:
    """Cancel a queued job now, or ask a running one to stop at its next step/batch.

    A running job nobody runs any more (no heartbeat for GENREWEB_HEARTBEAT_TIMEOUT_S) ends
    cancelled at once; otherwise the sweep ends it if its worker dies before stopping.
    """
    who = f" by {user}" if user is not None and getattr(user, "is_authenticated", False) else ""
    revoke_ids: list[str] = []
    with transaction.atomic():
        locked = Job.objects.select_for_update().get(pk=job.pk)
        if locked.is_finished:
            raise JobError(f"Job #{locked.pk} has already {locked.status}; there is nothing to cancel.")
        # Set under the row lock: claim_job never starts a job with cancel_requested.
        Job.objects.filter(pk=locked.pk).update(
            cancel_requested=True, step="cancelling..." if locked.status == Job.Status.RUNNING else locked.step
        )
        if locked.status == Job.Status.QUEUED:
            revoke_ids.append(locked.celery_task_id)
        pending = JobShard.objects.filter(job=locked, status=JobShard.Status.PENDING)
        revoke_ids += [tid for tid in pending.values_list("celery_task_id", flat=True) if tid]
        pending.update(status=JobShard.Status.CANCELLED, finished_at=timezone.now())
    append_log(locked.pk, f"cancel requested{who}")
    if locked.status == Job.Status.QUEUED:
        finish_job(
            locked.pk,
            Job.Status.CANCELLED,
            step="cancelled before it started",
            only_if=lambda j: j.status == Job.Status.QUEUED,
        )
    for child in locked.children.exclude(status__in=Job.FINISHED):
        cancel(child, user)
    _end_cancelled_if_nobody_runs_it(locked.pk)
    transaction.on_commit(lambda: _revoke(revoke_ids))
    locked.refresh_from_db()
    return locked


def _end_cancelled_if_nobody_runs_it(job_id: int) -> None:
    """A cancel-requested running job whose worker is gone ends now; its dead shards too."""
    cutoff = heartbeat_cutoff()
    job = Job.objects.get(pk=job_id)
    if job.status != Job.Status.RUNNING or not job.cancel_requested:
        return
    if job.kind == Job.Kind.PREDICT and job.shards.exists():
        from .tasks import account_shards

        JobShard.objects.filter(job=job, status=JobShard.Status.RUNNING).filter(
            Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True)
        ).update(status=JobShard.Status.CANCELLED, finished_at=timezone.now(), error="its worker was gone")
        account_shards(job_id)  # finishes the job now if no shard is still running
        return
    finish_job(
        job_id,
        Job.Status.CANCELLED,
        step="cancelled (its worker was gone)",
        only_if=lambda j: j.status == Job.Status.RUNNING and _silent(j, cutoff),
    )


def retry(job: Job, user=None) -> Job:
    """Start a new job with the same parameters (test hooks dropped); batch predict reuses done shards."""
    if job.status not in (Job.Status.FAILED, Job.Status.CANCELLED):
        raise JobError(f"Only failed or cancelled jobs can be retried; job #{job.pk} is {job.status}.")
    params = {k: v for k, v in job.params.items() if not k.startswith(TEST_HOOK_PREFIX)}
    new = enqueue(job.kind, params, user or job.requested_by, parent=job.parent, retry_of=job)
    append_log(job.pk, f"retried as job #{new.pk}")
    return new


# --- recovery ----------------------------------------------------------------------------


def broker_message_ids() -> set[str] | None:
    """Task ids of messages the broker still holds (waiting or delivered-but-unacked).

    None when the broker cannot be inspected; callers then rely on age alone.
    """
    from celery import current_app

    url = current_app.conf.broker_url or ""
    try:
        if url.startswith(("redis://", "rediss://")):
            return _redis_message_ids(current_app)
        if url.startswith("filesystem://"):
            return _filesystem_message_ids(current_app)
    except Exception as exc:
        logger.warning("could not inspect the broker: %s", exc)
    return None


def _task_id_of(payload: Any) -> str | None:
    if isinstance(payload, dict):
        return (payload.get("headers") or {}).get("id") or (payload.get("properties") or {}).get("correlation_id")
    return None


def _redis_message_ids(app) -> set[str]:
    import redis

    ids: set[str] = set()
    queues = {route["queue"] for route in TASK_ROUTES.values()}
    prefix = (app.conf.broker_transport_options or {}).get("global_keyprefix", "")
    with app.connection_for_read() as conn:
        channel = conn.default_channel
        # A plain client on kombu's pool: kombu's own client prefixes only some commands.
        client = redis.Redis(connection_pool=channel.client.connection_pool)
        for queue in queues:
            for priority in channel.priority_steps:
                for raw in client.lrange(prefix + channel._q_for_pri(queue, priority), 0, -1):
                    task_id = _task_id_of(json.loads(raw))
                    if task_id:
                        ids.add(task_id)
        for raw in client.hvals(prefix + channel.unacked_key):
            entry = json.loads(raw)
            task_id = _task_id_of(entry[0] if isinstance(entry, list) else entry)
            if task_id:
                ids.add(task_id)
    return ids


def _filesystem_message_ids(app) -> set[str]:
    folder = Path((app.conf.broker_transport_options or {}).get("data_folder_in", ""))
    ids: set[str] = set()
    for path in folder.glob("*.msg"):
        try:
            task_id = _task_id_of(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue  # taken by a worker while we looked
        if task_id:
            ids.add(task_id)
    return ids


@dataclass
class SweepReport:
    requeued_jobs: list[int] = field(default_factory=list)
    requeued_shards: list[int] = field(default_factory=list)
    failed_lost_jobs: list[int] = field(default_factory=list)
    cancelled_lost_jobs: list[int] = field(default_factory=list)

    def __str__(self) -> str:
        return (
            f"re-sent {len(self.requeued_jobs)} queued job(s) {self.requeued_jobs}, "
            f"{len(self.requeued_shards)} shard(s) {self.requeued_shards}; "
            f"failed {len(self.failed_lost_jobs)} job(s) whose worker was lost {self.failed_lost_jobs}; "
            f"ended {len(self.cancelled_lost_jobs)} cancelled job(s) whose worker was lost "
            f"{self.cancelled_lost_jobs}"
        )


def _resend_shard(shard: JobShard, expected_status: str, now) -> bool:
    """Give a shard a new message (a new task id, so the old message is ignored if it ever
    comes back); the conditional update makes one concurrent sweeper win."""
    from .tasks import predict_shard

    new_task_id = str(uuid.uuid4())
    claimed = JobShard.objects.filter(
        pk=shard.pk,
        status=expected_status,
        celery_task_id=shard.celery_task_id,
        heartbeat_at=shard.heartbeat_at,
    ).update(status=JobShard.Status.PENDING, celery_task_id=new_task_id, heartbeat_at=now)
    if not claimed:
        return False
    try:
        predict_shard.apply_async(
            args=[shard.job_id, shard.pk],
            task_id=new_task_id,
            queue=queue_for_task(predict_shard.name),
            retry=False,
            ignore_result=True,
        )
    except Exception as exc:  # broker down: still pending, the next sweep sends it
        logger.warning("could not re-send shard %s: %s", shard.pk, exc)
    return True


def requeue_stale_jobs(grace_s: float | None = None, *, dry_run: bool = False) -> SweepReport:
    """Bring back or end work that nobody will finish otherwise. Safe to run anywhere, often.

    - queued jobs last sent more than ``grace_s`` ago whose message the broker no longer holds
      (with an uninspectable broker: any queued job that old) are sent again; the task only
      runs a job it can move from queued to running, so a duplicate message is harmless;
    - pending shards of running batch-predict jobs, the same way;
    - running shards with no heartbeat for GENREWEB_HEARTBEAT_TIMEOUT_S (their worker died as
      a whole; Redis would hand the message back only after its visibility timeout, hours)
      are re-sent (predictions are idempotent), or cancelled when the job's cancel was asked;
    - a batch-predict job whose fan-out worker died before it made shards is re-queued
      (idempotent); every other running job with no heartbeat and no live shard or child job
      is failed ("worker lost"), or ends cancelled when that was asked.
    """
    from .tasks import account_shards

    grace_s = settings.GENREWEB_REQUEUE_GRACE_S if grace_s is None else grace_s
    now = timezone.now()
    cutoff = now - timedelta(seconds=grace_s)
    lost_cutoff = heartbeat_cutoff(now)
    in_broker = broker_message_ids()
    report = SweepReport()

    for job in Job.objects.filter(status=Job.Status.QUEUED, enqueued_at__lt=cutoff):
        if in_broker is not None and job.celery_task_id in in_broker:
            continue
        if dry_run:
            report.requeued_jobs.append(job.pk)
            continue
        # Conditional update: when several workers sweep at once, only one re-sends.
        claimed = Job.objects.filter(pk=job.pk, status=Job.Status.QUEUED, enqueued_at=job.enqueued_at).update(
            enqueued_at=now, celery_task_id=str(uuid.uuid4())
        )
        if claimed:
            job.refresh_from_db()
            append_log(job.pk, "message lost from the broker; re-sent by the stale-job sweep")
            _send_job_message(job.pk, KINDS[job.kind].task_name, job.celery_task_id)
            report.requeued_jobs.append(job.pk)

    running_predict = Q(job__status=Job.Status.RUNNING, job__kind=Job.Kind.PREDICT)
    stale_pending = JobShard.objects.filter(
        running_predict, job__cancel_requested=False, status=JobShard.Status.PENDING
    ).filter(Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True, job__heartbeat_at__lt=cutoff))
    for shard in stale_pending:
        if in_broker is not None and shard.celery_task_id in in_broker:
            continue
        if dry_run or _resend_shard(shard, JobShard.Status.PENDING, now):
            report.requeued_shards.append(shard.pk)

    lost_shards = (
        JobShard.objects.filter(running_predict, status=JobShard.Status.RUNNING)
        .filter(Q(heartbeat_at__lt=lost_cutoff) | Q(heartbeat_at__isnull=True, started_at__lt=lost_cutoff))
        .select_related("job")
    )
    touched_jobs: set[int] = set()
    for shard in lost_shards:
        if dry_run:
            report.requeued_shards.append(shard.pk)
            continue
        touched_jobs.add(shard.job_id)
        if shard.job.cancel_requested:
            JobShard.objects.filter(pk=shard.pk, status=JobShard.Status.RUNNING).update(
                status=JobShard.Status.CANCELLED, finished_at=now, error="its worker was lost"
            )
        elif _resend_shard(shard, JobShard.Status.RUNNING, now):
            append_log(
                shard.job_id,
                f"shard {shard.index}: its worker was lost (no heartbeat for "
                f"{settings.GENREWEB_HEARTBEAT_TIMEOUT_S:.0f} s); re-sent",
            )
            report.requeued_shards.append(shard.pk)
    for job_id in touched_jobs:
        account_shards(job_id)  # a job whose last shards were cancelled ends now

    silent = Job.objects.filter(status=Job.Status.RUNNING).filter(
        Q(heartbeat_at__lt=lost_cutoff) | Q(heartbeat_at__isnull=True, started_at__lt=lost_cutoff)
    )
    for job in silent:
        if not _silent(job, lost_cutoff):
            continue
        if job.kind == Job.Kind.PREDICT and job.shards.exists():
            if not job.shards.filter(status__in=(JobShard.Status.PENDING, JobShard.Status.RUNNING)).exists():
                if not dry_run:
                    account_shards(job.pk)  # every shard ended; make sure the job does
            continue
        if dry_run:
            report.failed_lost_jobs.append(job.pk)
            continue
        if job.kind == Job.Kind.PREDICT and not job.cancel_requested:
            # The fan-out died before it made shards; it is idempotent, so run it again.
            if Job.objects.filter(pk=job.pk, status=Job.Status.RUNNING, heartbeat_at=job.heartbeat_at).update(
                status=Job.Status.QUEUED,
                enqueued_at=now,
                heartbeat_at=now,
                celery_task_id=str(uuid.uuid4()),
                step="re-queued: its worker was lost",
            ):
                job.refresh_from_db()
                append_log(job.pk, "its worker was lost before it made shards; re-queued")
                _send_job_message(job.pk, KINDS[job.kind].task_name, job.celery_task_id)
                report.requeued_jobs.append(job.pk)
            continue
        still_silent = lambda j: j.status == Job.Status.RUNNING and _silent(j, lost_cutoff)  # noqa: E731
        silence = f"no heartbeat for {settings.GENREWEB_HEARTBEAT_TIMEOUT_S:.0f} s"
        if job.cancel_requested:
            if finish_job(
                job.pk, Job.Status.CANCELLED, step=f"cancelled (its worker was lost: {silence})", only_if=still_silent
            ):
                report.cancelled_lost_jobs.append(job.pk)
        elif finish_job(
            job.pk,
            Job.Status.FAILED,
            only_if=still_silent,
            step="worker lost",
            error=f"The worker running this job was lost ({silence}). Retry it to run it again.",
        ):
            report.failed_lost_jobs.append(job.pk)
    return report
