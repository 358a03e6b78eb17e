"""Evaluate a model version on a snapshot split and store Evaluation + GenreMetric rows."""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
from django.db import transaction

from base.progress import Progress, report, scaled
from ml.engine.contracts import Example
from ml.engine.metrics import evaluate
from ml.models import DatasetSnapshot, Evaluation, GenreMetric, ModelVersion, SnapshotMember

from .data import snapshot_examples


def label_matrix(
    examples: Sequence[Example], snapshot_genres: Sequence[str], model_genres: Sequence[str]
) -> np.ndarray:
    """0/1 matrix in the model's genre order from labels indexing the snapshot's genres.

    Snapshot genres the model does not know are ignored; model genres the snapshot
    lacks stay all-zero (support 0).
    """
    column = {g: j for j, g in enumerate(model_genres)}
    mapping = [column.get(g) for g in snapshot_genres]
    y = np.zeros((len(examples), len(model_genres)), dtype=np.int8)
    for i, example in enumerate(examples):
        for label in example.labels:
            j = mapping[label]
            if j is not None:
                y[i, j] = 1
    return y


def score_examples(
    model, examples: Sequence[Example], snapshot_genres: Sequence[str], progress: Progress | None = None
) -> dict:
    """Metrics of a loaded TrainedModel on labelled examples (ml.engine.metrics.evaluate's dict);
    each example decided with the thresholds of its input set, as predictions are."""
    genres = list(model.genres)
    probs, decisions = model.predict(list(examples), progress=progress)
    probs = np.asarray(probs)
    y = label_matrix(examples, snapshot_genres, genres)
    return evaluate(y, probs, decisions, genres)


def record_evaluation(
    version: ModelVersion,
    snapshot: DatasetSnapshot,
    split: str,
    result: dict,
    *,
    duration_s: float | None = None,
    device: str = "",
) -> Evaluation:
    """Store (or replace) the evaluation of ``version`` on ``snapshot``/``split`` with its genre rows."""
    per_genre = result["per_genre"]
    thresholds = dict(zip(version.genres, version.thresholds, strict=False))
    headline = {k: v for k, v in result.items() if k not in ("per_genre", "calibration")}
    curves = {
        "pr_curves": {row["genre"]: row["pr_curve"] for row in per_genre},
        "calibration": result["calibration"],
        "per_genre_calibration": {row["genre"]: row["calibration"] for row in per_genre},
        "confusion": {row["genre"]: {k: row[k] for k in ("tp", "fp", "fn", "tn")} for row in per_genre},
    }
    with transaction.atomic():
        evaluation, _ = Evaluation.objects.update_or_create(
            model_version=version,
            snapshot=snapshot,
            split=split,
            defaults=dict(
                n_examples=result["n_examples"],
                micro_f1=result["micro_f1"],
                macro_f1=result["macro_f1"],
                samples_f1=result["samples_f1"],
                roc_auc_macro=result["roc_auc_macro"],
                metrics=headline,
                curves=curves,
                duration_s=duration_s,
                device=device,
            ),
        )
        evaluation.genre_metrics.all().delete()
        GenreMetric.objects.bulk_create(
            [
                GenreMetric(
                    evaluation=evaluation,
                    model_version=version,
                    snapshot=snapshot,
                    split=split,
                    genre=row["genre"],
                    threshold=thresholds.get(row["genre"]),
                    f1=row["f1"],
                    precision=row["precision"],
                    recall=row["recall"],
                    roc_auc=row["roc_auc"],
                    pr_auc=row["pr_auc"],
                    support=row["support"],
                    tp=row["tp"],
                    fp=row["fp"],
                    fn=row["fn"],
                    tn=row["tn"],
                )
                for row in per_genre
            ]
        )
    return evaluation


def evaluate_model(
    model_version_id: int, snapshot_id: int | None = None, split: str = "test", progress: Progress | None = None
) -> Evaluation:
    """Score a model version on a split (default: its own snapshot's test split) and store the result."""
    from .inference import get_predictor

    if split not in SnapshotMember.Split.values:
        raise ValueError(f"unknown split {split!r}; choose from {', '.join(SnapshotMember.Split.values)}")
    version = ModelVersion.objects.get(pk=model_version_id)
    snapshot = DatasetSnapshot.objects.get(pk=snapshot_id) if snapshot_id is not None else version.snapshot
    started = time.perf_counter()
    report(progress, f"Loading the {split} split of snapshot {snapshot.pk}", 0.0)
    data = snapshot_examples(snapshot, [split], progress=scaled(progress, 0.0, 0.2))
    examples = data.examples[split]
    if not examples:
        raise ValueError(f"snapshot {snapshot.pk} has no movies in its {split} split")
    if not set(snapshot.genres) & set(version.genres):
        raise ValueError(f"snapshot {snapshot.pk} shares no genre with model version {version.pk}")
    model = get_predictor(version.pk)
    result = score_examples(model, examples, snapshot.genres, progress=scaled(progress, 0.2, 0.95))
    evaluation = record_evaluation(
        version,
        snapshot,
        split,
        result,
        duration_s=time.perf_counter() - started,
        device=str(getattr(model, "device", "")),
    )
    report(progress, f"{split}: micro-F1 {result['micro_f1']:.3f}, macro-F1 {result['macro_f1']:.3f}", 1.0)
    return evaluation
