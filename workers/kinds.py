"""Job kinds: one table. Each entry says what a kind is, and everything else derives from it.

An entry (``JobKind``) names the kind's parameter check (owned by the service it runs), what
it runs, its queue, its soft/hard time limits and whether it is idempotent. From the table:
the Job model's kind choices, the Celery task of each kind (``workers.tasks``) with its limits
and acknowledgement mode, the routes, parameter validation, the queue-job form, and what the
stale sweep may re-queue.

Functions are given as ``"module:function"`` so this module loads no Django model and no
service until a job needs one (genreweb/celery.py imports it before Django is set up).
- ``validate(params, errors)`` cleans ``params`` in place and records ``errors[field]``;
- ``run(job, progress)`` does the work and returns the job's result (a JSON-able dict), or
  None when the job finishes elsewhere (batch-predict shards, a retrain's child job).

A new kind is one service function and one ``register(JobKind(...))`` (see README, "Add a job
kind"); the test tests/workers/test_kinds.py registers one and runs it end to end.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field

from .queues import DEFAULT_QUEUE, GPU_QUEUE

HOUR = 3600
# The soft limit fails the job cleanly this long before the hard limit kills it. The Redis
# visibility timeout (settings) is longer than every hard limit.
SOFT_MARGIN_S = 120
MAX_SHARD_SIZE = 20_000


class InvalidJobParams(ValueError):
    """Parameters that do not fit the job kind. ``errors`` maps field name -> message."""

    def __init__(self, errors: dict[str, str]):
        self.errors = errors
        super().__init__("; ".join(f"{name}: {message}" for name, message in errors.items()))


@dataclass(frozen=True)
class JobKind:
    name: str
    label: str
    validate: str | Callable[[dict, dict], None]
    run: str | Callable
    queue: str = DEFAULT_QUEUE
    hard_time_limit_s: int = HOUR
    soft_time_limit_s: int | None = None  # default: SOFT_MARGIN_S before the hard limit
    # Running it twice does no harm: its task is acks_late + reject_on_worker_lost (a message
    # whose worker died is delivered again), and the sweep re-queues it when its worker is lost.
    idempotent: bool = False
    # Fields of the queue-job form this kind uses (the page hides the others).
    form_fields: tuple[str, ...] = ()
    description: str = ""
    task_name: str = field(default="")

    def __post_init__(self):
        if not self.task_name:
            object.__setattr__(self, "task_name", f"workers.run_{self.name}")
        if self.soft_time_limit_s is None:
            object.__setattr__(self, "soft_time_limit_s", self.hard_time_limit_s - SOFT_MARGIN_S)

    @property
    def limits(self) -> dict:
        return {"time_limit": self.hard_time_limit_s, "soft_time_limit": self.soft_time_limit_s}

    def validator(self) -> Callable[[dict, dict], None]:
        return _resolve(self.validate)

    def runner(self) -> Callable:
        return _resolve(self.run)


def _resolve(target):
    if callable(target):
        return target
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


IMPORT, PREPROCESS, SNAPSHOT, TRAIN, EVALUATE, PREDICT, RETRAIN = (
    "import",
    "preprocess",
    "snapshot",
    "train",
    "evaluate",
    "predict",
    "retrain",
)

KINDS: dict[str, JobKind] = {}


def register(kind: JobKind) -> JobKind:
    """Add a kind to the table (and give it its Celery task once workers.tasks is loaded)."""
    if kind.name in KINDS:
        raise ValueError(f"job kind {kind.name!r} is already registered")
    KINDS[kind.name] = kind
    import sys

    tasks = sys.modules.get("workers.tasks")
    if tasks is not None:  # loaded already: add this kind's task now (else it does at import)
        tasks.job_task(kind)
    return kind


def unregister(name: str) -> None:
    """Remove a kind (tests that register their own); jobs of that kind stay in the database."""
    import sys

    from celery import current_app

    kind = KINDS.pop(name)
    tasks = sys.modules.get("workers.tasks")
    if tasks is not None:
        tasks.JOB_TASKS.pop(name, None)
    current_app.tasks.pop(kind.task_name, None)


def get(name: str) -> JobKind:
    return KINDS[name]


def kind_choices() -> list[tuple[str, str]]:
    """Job.kind choices (a callable, so registering a kind needs no migration)."""
    return [(kind.name, kind.label) for kind in KINDS.values()]


def queue_for_task(task_name: str) -> str:
    for kind in KINDS.values():
        if kind.task_name == task_name:
            return kind.queue
    return FIXED_ROUTES.get(task_name, DEFAULT_QUEUE)


# Tasks that are not job kinds.
FIXED_ROUTES = {"workers.ping": DEFAULT_QUEUE, "workers.predict_shard": GPU_QUEUE}


def task_routes() -> dict[str, dict]:
    """Every task name and its queue (what Celery's router and the docker checks read)."""
    routes = {name: {"queue": queue} for name, queue in FIXED_ROUTES.items()}
    routes.update({kind.task_name: {"queue": kind.queue} for kind in KINDS.values()})
    return routes


def route_task(name, args, kwargs, options, task=None, **kw):
    """Celery router: a kind registered after start-up is routed too."""
    return {"queue": queue_for_task(name)}


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
    KINDS[kind].validator()(cleaned, errors)
    if errors:
        raise InvalidJobParams(errors)
    return cleaned


# --- parameter checks that belong to no single service ---------------------------------------


def import_param_errors(params: dict, errors: dict) -> None:
    """The import kind's params are the chosen source's (catalog's importer registry: paths
    under GENREWEB_IMPORT_ROOTS, no base_url, limit, allow_new_genres, the source's checks)."""
    from catalog.importers import registry

    errors.update(registry.job_param_errors(params))


def predict_param_errors(params: dict, errors: dict) -> None:
    """Which model and movies (ml's inference service), and the shard size (workers.sharding)."""
    from base.params import int_field
    from ml.services.params import predict_param_errors

    predict_param_errors(params, errors)
    int_field(params, "shard_size", errors, minimum=1, maximum=MAX_SHARD_SIZE)


def retrain_param_errors(params: dict, errors: dict) -> None:
    """snapshot options (ml's snapshot service; its defaults are the benchmark's split), a
    config (ml's training service; default: the recommended preset), shard_size."""
    from base.params import int_field
    from ml.services.params import config_errors, snapshot_param_errors

    config_errors(params, errors, required=False)
    if "snapshot" in params and not isinstance(params["snapshot"], dict):
        errors["snapshot"] = "Must be an object of snapshot options."
    elif "snapshot" in params:
        nested: dict[str, str] = {}
        snapshot_param_errors(params["snapshot"], nested)
        errors.update({f"snapshot.{name}": message for name, message in nested.items()})
    int_field(params, "shard_size", errors, minimum=1, maximum=MAX_SHARD_SIZE)


# --- the table ---------------------------------------------------------------------------

for _kind in (
    JobKind(
        IMPORT,
        "Import movies",
        validate="workers.kinds:import_param_errors",
        run="workers.runners:run_import",
        hard_time_limit_s=4 * HOUR,
        form_fields=("source", "path", "api_key", "date_from", "date_to", "limit"),
        description="source (tmdb|kaggle|mmimdb|csv), path for file sources, importer options",
    ),
    JobKind(
        PREPROCESS,
        "Preprocess posters",
        validate="catalog.preprocessing:preprocess_param_errors",
        run="workers.runners:run_preprocess",
        hard_time_limit_s=2 * HOUR,
        description="optional movie_ids, min_year, max_year, dedupe, force, grayscale_policy",
    ),
    JobKind(
        SNAPSHOT,
        "Build dataset snapshot",
        validate="ml.services.params:snapshot_param_errors",
        run="workers.runners:run_snapshot",
        hard_time_limit_s=1 * HOUR,
        description="snapshot options: name, seed, fractions, min_genre_count, keep_rare_genres",
    ),
    JobKind(
        TRAIN,
        "Train model",
        validate="ml.services.params:train_param_errors",
        run="workers.runners:run_train",
        queue=GPU_QUEUE,
        hard_time_limit_s=6 * HOUR,
        form_fields=("snapshot_id", "config"),
        description="snapshot_id, config (default: the recommended preset)",
    ),
    JobKind(
        EVALUATE,
        "Evaluate model",
        validate="ml.services.params:evaluate_param_errors",
        run="workers.runners:run_evaluate",
        queue=GPU_QUEUE,
        hard_time_limit_s=1 * HOUR,
        form_fields=("model_version_id",),
        description="model_version_id, optional snapshot_id",
    ),
    JobKind(
        PREDICT,
        "Batch predict",
        validate="workers.kinds:predict_param_errors",
        run="workers.sharding:start_batch_predict",
        # The fan-out only: each shard is a workers.predict_shard task (workers.sharding limits).
        hard_time_limit_s=10 * 60,
        # Splitting into shards again finds the first split; predictions upsert.
        idempotent=True,
        form_fields=("model_version_id",),
        description="model_version_id, optional movie_ids, shard_size",
        task_name="workers.start_batch_predict",
    ),
    JobKind(
        RETRAIN,
        "Retrain (snapshot, train, evaluate, predict all)",
        validate="workers.kinds:retrain_param_errors",
        run="workers.runners:run_retrain",
        queue=GPU_QUEUE,
        hard_time_limit_s=7 * HOUR,
        form_fields=("config",),
        description="config (default: the recommended preset), optional snapshot options, shard_size",
    ),
):
    register(_kind)
