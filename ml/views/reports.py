"""Model pages: the list of versions, a version's report, comparison, promotion, plots."""

from __future__ import annotations

import hashlib
import json

from django.contrib import messages
from django.core.cache import cache
from django.http import Http404, HttpResponse, HttpResponseBadRequest
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from base.permissions import reader_required, staff_required

from .. import plots
from ..models import Evaluation, GenreMetric, ModelVersion
from ..services.registry import production_version, promote
from ..services.review import headline_evaluation


@reader_required
def model_list(request):
    versions = list(ModelVersion.objects.select_related("training_run", "snapshot").prefetch_related("evaluations"))
    current = production_version()
    for version in versions:
        version.headline = headline_evaluation(version)
        version.is_production = current is not None and version.pk == current.pk
    return render(request, "ml/models.html", {"versions": versions, "production": current})


def _genre_rows(evaluation: Evaluation | None) -> list[GenreMetric]:
    return list(evaluation.genre_metrics.all()) if evaluation else []


@reader_required
def model_detail(request, pk: int):
    version = get_object_or_404(
        ModelVersion.objects.select_related("training_run", "snapshot").prefetch_related("evaluations"), pk=pk
    )
    evaluation = headline_evaluation(version, request.GET.get("split"))
    current = production_version()
    return render(
        request,
        "ml/model_detail.html",
        {
            "version": version,
            "evaluation": evaluation,
            "genre_rows": _genre_rows(evaluation),
            "is_production": current is not None and current.pk == version.pk,
            "evaluations": version.evaluations.all(),
            "run": version.training_run,
            "alias_history": version.alias_changes.select_related("user", "previous")[:20],
            "plot_kinds": [
                ("f1", "Per-genre F1"),
                ("pr", "Precision-recall curves"),
                ("calibration", "Calibration"),
                ("training", "Training curves"),
                ("confusion", "Confusion matrices"),
            ],
            "others": ModelVersion.objects.exclude(pk=pk).only("id", "name", "config_name")[:50],
        },
    )


@reader_required
def model_compare(request):
    versions = ModelVersion.objects.prefetch_related("evaluations")
    try:
        a = versions.get(pk=int(request.GET["a"]))
        b = versions.get(pk=int(request.GET["b"]))
    except (KeyError, ValueError, ModelVersion.DoesNotExist):
        messages.error(request, "Pick two model versions to compare.")
        return redirect("ml:models")
    ea, eb = headline_evaluation(a), headline_evaluation(b)
    keys = [
        ("micro_f1", "micro-F1"),
        ("macro_f1", "macro-F1"),
        ("samples_f1", "samples-F1"),
        ("roc_auc_macro", "mean ROC AUC"),
    ]
    headline = []
    for key, label in keys:
        va, vb = getattr(ea, key, None), getattr(eb, key, None)
        headline.append(
            {"label": label, "a": va, "b": vb, "delta": (vb - va) if va is not None and vb is not None else None}
        )
    rows_a = {r.genre: r for r in _genre_rows(ea)}
    rows_b = {r.genre: r for r in _genre_rows(eb)}
    genre_rows = []
    for genre in sorted(rows_a.keys() | rows_b.keys()):
        ra, rb = rows_a.get(genre), rows_b.get(genre)
        genre_rows.append({"genre": genre, "a": ra, "b": rb, "delta": (rb.f1 - ra.f1) if ra and rb else None})
    return render(
        request,
        "ml/compare.html",
        {
            "a": a,
            "b": b,
            "ea": ea,
            "eb": eb,
            "headline": headline,
            "genre_rows": genre_rows,
        },
    )


@require_POST
@staff_required
def promote_view(request, pk: int):
    version = get_object_or_404(ModelVersion, pk=pk)
    promote(version.pk, user=request.user)
    messages.success(request, f"{version} is now the production model.")
    return redirect("ml:model", pk=pk)


@reader_required
def plot_png(request, pk: int, kind: str):
    """A report plot as PNG, cached. A model version never changes; re-evaluating updates
    its Evaluation row in place, so the key includes a digest of the stored metrics."""
    if kind not in plots.PLOT_KINDS:
        raise Http404("Unknown plot.")
    version = get_object_or_404(
        ModelVersion.objects.select_related("training_run").prefetch_related("evaluations"), pk=pk
    )
    evaluation = headline_evaluation(version, request.GET.get("split"))
    other = None
    if kind == "f1" and request.GET.get("vs"):
        vs = request.GET["vs"]
        if not (vs.isascii() and vs.isdigit() and 0 < int(vs) < 2**31):
            return HttpResponseBadRequest("vs must be the id of a model version.", content_type="text/plain")
        other = ModelVersion.objects.prefetch_related("evaluations").filter(pk=int(vs)).first()
    other_eval = headline_evaluation(other) if other else None
    key = f"ml-plot:{pk}:{kind}:{_evaluation_digest(evaluation)}:{_evaluation_digest(other_eval)}"
    png = cache.get(key)
    if png is None:
        png = _draw(kind, version, evaluation, other, other_eval)
        cache.set(key, png, 24 * 3600)
    response = HttpResponse(png, content_type="image/png")
    response["Cache-Control"] = "private, max-age=300"
    return response


def _evaluation_digest(evaluation) -> str:
    if evaluation is None:
        return "none"
    content = json.dumps(
        [evaluation.pk, evaluation.n_examples, evaluation.metrics, evaluation.duration_s], sort_keys=True, default=str
    )
    return hashlib.sha1(content.encode()).hexdigest()[:16]


def _metric_dicts(evaluation):
    return [
        {"genre": r.genre, "f1": r.f1, "tp": r.tp, "fp": r.fp, "fn": r.fn, "tn": r.tn} for r in _genre_rows(evaluation)
    ]


def _draw(kind, version, evaluation, other, other_eval) -> bytes:
    if kind == "training":
        run = version.training_run
        return plots.training_curves(run.history if run else [])
    if evaluation is None:
        return plots.no_data("Not evaluated yet")
    if kind == "f1":
        return plots.f1_bars(
            _metric_dicts(evaluation),
            _metric_dicts(other_eval) if other_eval else None,
            labels=(str(version), str(other)) if other else ("this", "other"),
        )
    if kind == "pr":
        return plots.pr_curves(evaluation.curves.get("pr_curves", {}))
    if kind == "calibration":
        return plots.calibration_curve(evaluation.curves.get("calibration") or evaluation.metrics.get("calibration"))
    return plots.confusion_grid(_metric_dicts(evaluation))
