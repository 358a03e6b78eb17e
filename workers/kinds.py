"""Job kinds: one table. Each entry says what a kind is, and everything else derives from it.

An entry (``JobKind``) names the kind's parameter schema (owned by the service it runs), what
it runs, its queue, its soft/hard time limits and whether it is idempotent. From the table:
the Job model's kind choices, the Celery task of each kind (``workers.tasks``) with its limits
and acknowledgement mode, the routes, parameter validation, the queue-job form (one field per
declared parameter, ``workers.forms``), and what the stale sweep may re-queue.

Functions and schemas are given as ``"module:name"`` so this module loads no Django model and
no service until a job needs one (genreweb/celery.py imports it before Django is set up).
- ``params``: a ``base.params.ParamSchema`` (or a callable returning one): each parameter's
  type, limits, default and help; validation and the form both read it;
- ``validate(params, errors)`` (optional): further checks; cleans ``params`` in place and
  records ``errors[field]``. A kind with a ``validate`` but no ``params`` is offered in the
  form as one JSON object field;
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
from typing import Any

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
    run: str | Callable
    params: Any = None  # base.params.ParamSchema, "module:NAME" or a callable returning one
    validate: str | Callable[[dict, dict], None] | None = None
    queue: str = DEFAULT_QUEUE
    hard_time_limit_s: int = HOUR
    soft_time_limit_s: int | None = None  # default: SOFT_MARGIN_S before the hard limit
    # Running it twice does no harm: its task is acks_late + reject_on_worker_lost (a message
    # whose worker died is delivered again), and the sweep re-queues it when its worker is lost.
    idempotent: bool = False
    # Sharded kinds (batch predict, embed catalog): what one shard runs over its movie ids,
    # ``work(params, movie_ids, progress) -> rows written`` (workers.sharding runs the shards).
    shard_work: str | Callable | None = None
    description: str = ""  # help shown with the kind in the form
    task_name: str = field(default="")

    def __post_init__(self):
        if self.params is None and self.validate is None:
            raise ValueError(f"job kind {self.name!r} needs params (a ParamSchema) or a validate function")
        if not self.task_name:
            object.__setattr__(self, "task_name", f"workers.run_{self.name}")
        if self.soft_time_limit_s is None:
            object.__setattr__(self, "soft_time_limit_s", self.hard_time_limit_s - SOFT_MARGIN_S)

    @property
    def limits(self) -> dict:
        return {"time_limit": self.hard_time_limit_s, "soft_time_limit": self.soft_time_limit_s}

    def validator(self) -> Callable[[dict, dict], None] | None:
        return _resolve(self.validate) if self.validate is not None else None

    def schema(self):
        """The kind's ParamSchema, or None (its parameters are one JSON object)."""
        schema = _resolve(self.params) if self.params is not None else None
        if callable(schema) and not hasattr(schema, "clean"):
            schema = schema()
        return schema

    def runner(self) -> Callable:
        return _resolve(self.run)

    def shard_runner(self) -> Callable:
        return _resolve(self.shard_work)


def _resolve(target):
    if not isinstance(target, str):
        return target
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


IMPORT, PREPROCESS, SNAPSHOT, TRAIN, EVALUATE, PREDICT, RETRAIN, EMBED = (
    "import",
    "preprocess",
    "snapshot",
    "train",
    "evaluate",
    "predict",
    "retrain",
    "embed_catalog",
)
AUDIT_LABELS = "audit_labels"
BULK_LABELS = "bulk_labels"

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


def sharded_kinds() -> list[str]:
    """Kinds whose work runs in JobShard rows (workers.sharding)."""
    return [kind.name for kind in KINDS.values() if kind.shard_work is not None]


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
    entry = KINDS[kind]
    schema = entry.schema()
    if schema is not None:
        schema.clean(cleaned, errors)
    validator = entry.validator()
    if validator is not None and not errors:
        validator(cleaned, errors)
    if errors:
        raise InvalidJobParams(errors)
    return cleaned


# --- parameters that belong to no single service -------------------------------------------


def _shard_size():
    from base.params import Param

    return Param(
        "shard_size",
        "int",
        minimum=1,
        maximum=MAX_SHARD_SIZE,
        help="Movies per batch-inference shard (empty: GENREWEB_PREDICT_SHARD_SIZE).",
    )


def predict_params():
    """Which model and movies (ml's inference service), and the shard size (workers.sharding)."""
    from base.params import ParamSchema
    from ml.services.params import PREDICT_PARAMS

    return ParamSchema((*PREDICT_PARAMS, _shard_size()))


def embed_params():
    """Which encoders, config and movies (ml's embedding service), and the shard size."""
    from base.params import ParamSchema
    from ml.services.params import EMBED_PARAMS

    return ParamSchema((*EMBED_PARAMS, _shard_size()))


def retrain_params():
    """A config (ml's training service), snapshot options (ml's snapshot service), shard_size."""
    from base.params import Param, ParamSchema
    from ml.services.params import CONFIG, SNAPSHOT_PARAMS

    snapshot = Param("snapshot", "object", label="snapshot options", schema=SNAPSHOT_PARAMS)
    return ParamSchema((CONFIG, snapshot, _shard_size()))


# --- the table ---------------------------------------------------------------------------

for _kind in (
    JobKind(
        IMPORT,
        "Import movies",
        params="catalog.importers.registry:job_param_schema",
        run="workers.runners:run_import",
        hard_time_limit_s=4 * HOUR,
        description="Read movies, labels and posters from a source into the catalog; files must lie "
        "under GENREWEB_IMPORT_ROOTS.",
    ),
    JobKind(
        PREPROCESS,
        "Preprocess posters",
        params="catalog.preprocessing:PREPROCESS_PARAMS",
        run="workers.runners:run_preprocess",
        hard_time_limit_s=2 * HOUR,
        description="Check every poster, build training derivatives, flag duplicates and exclusions.",
    ),
    JobKind(
        SNAPSHOT,
        "Build dataset snapshot",
        params="ml.services.params:SNAPSHOT_PARAMS",
        run="workers.runners:run_snapshot",
        hard_time_limit_s=1 * HOUR,
        description="Freeze the current labels with a stratified train/validation/test split.",
    ),
    JobKind(
        TRAIN,
        "Train model",
        params="ml.services.params:TRAIN_PARAMS",
        run="workers.runners:run_train",
        queue=GPU_QUEUE,
        hard_time_limit_s=6 * HOUR,
        description="Train a model family on a snapshot (default: the recommended preset); success makes an evaluated model version.",
    ),
    JobKind(
        EVALUATE,
        "Evaluate model",
        params="ml.services.params:EVALUATE_PARAMS",
        run="workers.runners:run_evaluate",
        queue=GPU_QUEUE,
        hard_time_limit_s=1 * HOUR,
        description="Score a model version on a snapshot's validation and test splits.",
    ),
    JobKind(
        PREDICT,
        "Batch predict",
        params="workers.kinds:predict_params",
        run="workers.sharding:start_sharded_job",
        shard_work="workers.sharding:predict_shard_movies",
        # The fan-out only: each shard is a workers.predict_shard task (workers.sharding limits).
        hard_time_limit_s=10 * 60,
        # Splitting into shards again finds the first split; predictions upsert.
        idempotent=True,
        description="Store a model version's predictions for the catalog, in shards.",
        task_name="workers.start_batch_predict",
    ),
    JobKind(
        EMBED,
        "Embed catalog (fill the embedding store)",
        params="workers.kinds:embed_params",
        run="workers.sharding:start_sharded_job",
        shard_work="workers.sharding:embed_shard_movies",
        # The fan-out runs on the default queue like batch predict's; its shards are
        # workers.predict_shard tasks on the gpu queue.
        hard_time_limit_s=10 * 60,
        # Stored vectors are skipped: running it twice encodes nothing twice.
        idempotent=True,
        description="Fill the embedding store with every movie's frozen encoder vectors, in shards.",
        task_name="workers.start_embed_catalog",
    ),
    JobKind(
        RETRAIN,
        "Retrain (snapshot, train, evaluate, predict all)",
        params="workers.kinds:retrain_params",
        run="workers.runners:run_retrain",
        queue=GPU_QUEUE,
        hard_time_limit_s=7 * HOUR,
        description="Snapshot, train and evaluate, then predict every movie with the new version.",
    ),
    JobKind(
        AUDIT_LABELS,
        "Audit labels (out-of-fold label issues)",
        params="ml.services.params:AUDIT_PARAMS",
        validate="ml.services.audit:audit_param_errors",
        run="workers.runners:run_audit_labels",
        queue=GPU_QUEUE,
        hard_time_limit_s=2 * HOUR,
        description="Score every labeled movie with heads that never saw its labels; find likely label errors.",
    ),
    JobKind(
        BULK_LABELS,
        "Bulk label change or undo",
        params="catalog.bulk:RUN_PARAMS",
        run="workers.runners:run_bulk_labels",
        # 25k movies took about a minute on a loaded 2-core machine; the soft limit ends the
        # change set failed (undoable) with what it committed.
        hard_time_limit_s=1 * HOUR,
        description="Run a queued change set (a bulk change from the catalog page or the API, or an undo); "
        "its page shows the counts as it goes.",
    ),
):
    register(_kind)
