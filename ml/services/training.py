"""Train a model on a snapshot: TrainingRun -> engine fit -> stored ModelVersion -> evaluations."""

from __future__ import annotations

import hashlib
import json
import platform
import shutil
import subprocess
import tempfile
import time
import traceback
import uuid
from importlib import metadata
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from base.progress import Progress, report, scaled
from ml.models import DatasetSnapshot, ModelVersion, TrainingRun

from .data import engine_image_limits, snapshot_examples
from .embeddings import embedding_store
from .evaluation import record_evaluation, score_examples
from .registry import files_checksum, store_artifact

LIBRARIES = ("torch", "torchvision", "numpy", "sentence-transformers", "safetensors", "pillow", "django")
LOG_FLUSH_SECONDS = 2.0


class TrainingFailed(RuntimeError):
    """Training raised; the TrainingRun (``run``) holds the error and traceback."""

    def __init__(self, message: str, run: TrainingRun):
        super().__init__(message)
        self.run = run


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def code_version() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], cwd=settings.BASE_DIR, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


class _RunLog:
    """Collects engine log lines and writes them to the run every few seconds."""

    def __init__(self, run: TrainingRun):
        self.run = run
        self.lines: list[str] = [run.log] if run.log else []
        self.flushed_at = 0.0

    def __call__(self, line: str) -> None:
        self.lines.append(f"{timezone.now():%H:%M:%S} {line}")
        if time.monotonic() - self.flushed_at > LOG_FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        self.run.log = "\n".join(self.lines)
        TrainingRun.objects.filter(pk=self.run.pk).update(log=self.run.log)
        self.flushed_at = time.monotonic()


def _checkpoint_dir(snapshot: DatasetSnapshot, config: dict) -> Path:
    """Same snapshot + same config -> same folder, so a retried run resumes where it stopped."""
    key = hashlib.sha256(
        (snapshot.content_hash + json.dumps(config, sort_keys=True, default=str)).encode()
    ).hexdigest()[:20]
    return Path(settings.GENREWEB_ML_CACHE_DIR) / "checkpoints" / key


def _caused_by(exc: BaseException, target: BaseException | None) -> bool:
    seen = set()
    while exc is not None and id(exc) not in seen:
        if exc is target:
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


def train_model(snapshot_id: int, config, *, user=None, progress: Progress | None = None) -> TrainingRun:
    """Train ``config`` (a preset name or a config dict) on the snapshot's train split.

    Early stopping and thresholds use the val split; on success the run gets a
    ModelVersion (artifact in storage) and evaluations on val and test. Any error is
    recorded on the run (status failed, error with traceback) and raised as
    TrainingFailed. An exception raised by ``progress`` (a cancelled job) marks the run
    cancelled and propagates unchanged; a retry with the same snapshot and config
    resumes from the engine's checkpoint.
    """
    from ml.engine.identity import missing_encoder_packages
    from ml.engine.registry import get_config
    from ml.engine.train import fit

    model_config = get_config(config)  # ValueError on an unknown preset or bad field
    for missing in missing_encoder_packages(model_config):  # before a run is recorded
        raise ValueError(f"{model_config.name}: {missing}")
    snapshot = DatasetSnapshot.objects.get(pk=snapshot_id)
    config_dict = model_config.to_dict()
    run = TrainingRun.objects.create(
        snapshot=snapshot,
        config_name=model_config.name,
        config=config_dict,
        seed=getattr(model_config, "seed", 0),
        status=TrainingRun.Status.RUNNING,
        created_by=user,
        started_at=timezone.now(),
        library_versions=library_versions(),
        code_version=code_version(),
    )
    log = _RunLog(run)
    cancel: dict[str, BaseException] = {}

    def watched(message: str, fraction: float) -> None:
        try:
            report(progress, message, fraction)
        except BaseException as exc:  # remember it: this is a cancellation, not a failure
            cancel["exc"] = exc
            raise

    timings: dict[str, float] = {}
    started = time.perf_counter()
    try:
        mark = time.perf_counter()
        watched(f"Loading snapshot {snapshot.pk}", 0.0)
        data = snapshot_examples(snapshot, ("train", "val", "test"), progress=scaled(watched, 0.0, 0.05))
        for note in data.notes:
            log(f"warning: {note}")
        train, val, test = data.examples["train"], data.examples["val"], data.examples["test"]
        if not train or not val:
            raise ValueError(
                f"snapshot {snapshot.pk} needs movies in both train ({len(train)}) and val ({len(val)}) splits"
            )
        log(
            f"snapshot {snapshot.pk} ({snapshot.content_hash[:12]}): train {len(train)}, val {len(val)}, test {len(test)}"
        )
        timings["load_data_s"] = round(time.perf_counter() - mark, 3)

        mark = time.perf_counter()
        checkpoint_dir = _checkpoint_dir(snapshot, config_dict)
        model = fit(
            model_config,
            list(snapshot.genres),
            train,
            val,
            device=None,
            store=embedding_store(),
            checkpoint_dir=str(checkpoint_dir),
            progress=scaled(watched, 0.05, 0.85),
            log=log,
            image_limits=engine_image_limits(),
        )
        timings["fit_s"] = round(time.perf_counter() - mark, 3)

        mark = time.perf_counter()
        watched("Saving the model", 0.86)
        uid = uuid.uuid4()
        with tempfile.TemporaryDirectory(prefix="genreweb-model-") as tmp:
            saved = model.save(tmp)
            meta = json.loads((Path(tmp) / "config.json").read_text())
            folder, names = store_artifact(Path(tmp), uid)
            checksum = files_checksum(Path(tmp), names)
        timings["save_s"] = round(time.perf_counter() - mark, 3)
        version = ModelVersion.objects.create(
            uid=uid,
            name=f"{model_config.name} on snapshot {snapshot.pk}",
            training_run=run,
            snapshot=snapshot,
            config_name=model_config.name,
            config=config_dict,
            genres=list(model.genres),
            thresholds=[float(t) for t in model.thresholds],
            thresholds_by_inputs=meta.get("thresholds_by_inputs") or {},
            normaliser=meta.get("normaliser") or meta.get("normalizer") or {},
            artifact_path=folder,
            artifact_files=names,
            checksum=checksum,
            library_versions=meta.get("library_versions") or run.library_versions,
        )
        log(f"model version {version.pk} stored at {folder} (engine sha256 {str(saved.get('sha256', ''))[:12]})")

        mark = time.perf_counter()
        device = str(getattr(model, "device", ""))
        for position, (split, examples) in enumerate((("val", val), ("test", test))):
            if not examples:
                log(f"no {split} movies: skipping the {split} evaluation")
                continue
            split_started = time.perf_counter()
            result = score_examples(
                model,
                examples,
                snapshot.genres,
                progress=scaled(watched, 0.88 + 0.06 * position, 0.94 + 0.06 * position),
            )
            record_evaluation(
                version, snapshot, split, result, duration_s=time.perf_counter() - split_started, device=device
            )
            log(
                f"{split}: micro-F1 {result['micro_f1']:.4f} macro-F1 {result['macro_f1']:.4f} "
                f"samples-F1 {result['samples_f1']:.4f} ROC AUC {result['roc_auc_macro'] or float('nan'):.4f}"
            )
        timings["evaluate_s"] = round(time.perf_counter() - mark, 3)
        timings["total_s"] = round(time.perf_counter() - started, 3)

        log.flush()
        with transaction.atomic():
            run.status = TrainingRun.Status.SUCCEEDED
            run.finished_at = timezone.now()
            run.timings = timings
            run.device = device
            run.history = _jsonable(getattr(model, "history", []))
            run.save()
    except BaseException as exc:
        cancelled = _caused_by(exc, cancel.get("exc"))
        log(("cancelled: " if cancelled else "failed: ") + f"{type(exc).__name__}: {exc}")
        run.log = "\n".join(log.lines)
        run.status = TrainingRun.Status.CANCELLED if cancelled else TrainingRun.Status.FAILED
        run.error = "".join(traceback.format_exception(exc))
        run.finished_at = timezone.now()
        timings["total_s"] = round(time.perf_counter() - started, 3)
        run.timings = timings
        run.save()
        if cancelled or not isinstance(exc, Exception):
            raise
        raise TrainingFailed(f"training run {run.pk} failed: {type(exc).__name__}: {exc}", run) from exc
    # The run has succeeded and its model is stored: a cancel arriving now changes nothing.
    shutil.rmtree(checkpoint_dir, ignore_errors=True)
    try:
        report(progress, "Training finished", 1.0)
    except Exception:
        pass
    return run


def _jsonable(value):
    """Engine history may hold numpy scalars; make it plain JSON."""
    return json.loads(json.dumps(value, default=lambda v: v.item() if hasattr(v, "item") else str(v)))
