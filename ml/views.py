"""Pages that need model output: the catalog browse/movie pages extended with the
production model (see catalog/views.py for why they are composed here), review queues,
model reports (list, detail, compare, promote, plots) and ad-hoc prediction."""

from __future__ import annotations

import hashlib
import json

from django import forms
from django.contrib import messages
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import Exists, OuterRef, Prefetch
from django.http import Http404, HttpResponse, HttpResponseBadRequest, HttpResponseRedirect
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from base.permissions import labeler_required, reader_required, staff_required
from catalog.images import ImageRejected, read_upload
from catalog.labels import change_labels
from catalog.models import Genre, LabelChange, LabelOrigin, MovieGenre
from catalog.views import CatalogView, MovieView, poster_url
from catalog.views import RelabelView as CatalogRelabelView

from . import plots
from .models import Evaluation, GenreMetric, ModelVersion, Prediction
from .services.registry import production_version, promote

# A prediction counts as "unsure" from this uncertainty on (1 = a genre sits exactly on its
# threshold, 0 = every genre far from it); the review queue ranks everything above it.
UNSURE_MIN = 0.8
QUEUES = {
    "disagrees": "Model disagrees with the label",
    "unsure": "Model unsure",
}


def queue_predictions(queue: str, version: ModelVersion):
    """Predictions of ``version`` in a review queue, best first, minus movies whose labels a
    person changed after the prediction was made (those have been reviewed)."""
    if queue not in QUEUES:
        raise Http404("No such review queue.")
    predictions = Prediction.objects.filter(model_version=version)
    if queue == "disagrees":
        predictions = predictions.filter(disagrees=True).order_by("-disagreement", "id")
    else:
        predictions = predictions.filter(uncertainty__gte=UNSURE_MIN).order_by("-uncertainty", "id")
    reviewed = LabelChange.objects.filter(movie=OuterRef("movie_id"), created_at__gte=OuterRef("updated_at")).exclude(
        origin=LabelOrigin.IMPORTED
    )
    return predictions.exclude(Exists(reviewed))


def refresh_disagreements(movie_ids) -> None:
    # Imported on use: ml.services.inference loads torch, which page views otherwise never need.
    from .services.inference import refresh_disagreements as refresh

    refresh(movie_ids)


def with_suggestion_scores(prediction: Prediction) -> Prediction:
    """Pair each suggested genre with its score for display."""
    prediction.add_scores = [(g, prediction.scores.get(g)) for g in prediction.suggested_add]
    prediction.remove_scores = [(g, prediction.scores.get(g)) for g in prediction.suggested_remove]
    return prediction


def score_rows(prediction: Prediction, version: ModelVersion, label_names: set[str]) -> list[dict]:
    thresholds = dict(zip(version.genres, version.thresholds or [], strict=False))
    rows = []
    for genre, score in sorted(prediction.scores.items(), key=lambda kv: -kv[1]):
        rows.append(
            {
                "genre": genre,
                "score": score,
                "pct": round(100 * score, 1),
                "threshold_pct": round(100 * thresholds[genre], 1) if genre in thresholds else None,
                "predicted": genre in prediction.predicted,
                "labelled": genre in label_names,
            }
        )
    return rows


# --- catalog pages with the production model -----------------------------------------------


class ModelFilterForm(forms.Form):
    model = forms.ChoiceField(
        required=False,
        choices=[("", "any model opinion"), ("disagrees", "model disagrees"), ("unsure", "model unsure")],
    )


class BrowseView(CatalogView):
    def extend_movies(self, movies, filter_form):
        self.version = production_version()
        self.model_form = ModelFilterForm(self.request.GET or None)
        wanted = self.model_form.cleaned_data.get("model") if self.model_form.is_valid() else ""
        if wanted and self.version is None:
            self.note = "No production model yet, so the model filter matches nothing."
            return movies.none()
        if wanted == "disagrees":
            movies = movies.filter(predictions__model_version=self.version, predictions__disagrees=True)
        elif wanted == "unsure":
            movies = movies.filter(predictions__model_version=self.version, predictions__uncertainty__gte=UNSURE_MIN)
        return movies

    def extend_context(self, page_movies):
        if self.version is not None:
            by_movie = {
                p.movie_id: p
                for p in Prediction.objects.filter(
                    model_version=self.version, movie_id__in=[m.pk for m in page_movies]
                ).only("movie_id", "predicted", "disagrees", "uncertainty", "top_genre", "top_score")
            }
            for movie in page_movies:
                movie.current_prediction = by_movie.get(movie.pk)
                if movie.current_prediction:
                    movie.current_prediction.unsure = movie.current_prediction.uncertainty >= UNSURE_MIN
        return {
            "model_filter_form": self.model_form,
            "model_filter_note": getattr(self, "note", ""),
            "show_model_column": self.version is not None,
        }


class MovieWithScoresView(MovieView):
    def extend_context(self, movie):
        version = production_version()
        if version is None:
            return {"score_note": "No production model yet: train one and promote it on the Models page."}
        prediction = Prediction.objects.filter(movie=movie, model_version=version).first()
        if prediction is None:
            return {"score_note": f"{version} has not scored this movie yet (queue a batch prediction)."}
        labels = {mg.genre.name for mg in movie.labels.all()}
        return {
            "scores": score_rows(prediction, version, labels),
            "score_version": str(version),
            "prediction": prediction,
        }


class RelabelView(CatalogRelabelView):
    movie_view = MovieWithScoresView

    def labels_changed(self, movie):
        refresh_disagreements([movie.pk])


# --- review queues ----------------------------------------------------------------------


def _queue_context(queue: str):
    version = production_version()
    if version is None:
        return None, None
    return version, queue_predictions(queue, version)


@reader_required
def review_list(request, queue: str):
    version, predictions = _queue_context(queue)
    page = None
    if predictions is not None:
        page = Paginator(
            predictions.select_related("movie", "movie__poster").prefetch_related(
                Prefetch("movie__labels", queryset=MovieGenre.objects.select_related("genre"))
            ),
            25,
        ).get_page(request.GET.get("page"))
        for offset, prediction in enumerate(page.object_list):
            prediction.position = page.start_index() + offset
            with_suggestion_scores(prediction)
            prediction.movie.poster_src = poster_url(prediction.movie)
    return render(
        request,
        "ml/review_list.html",
        {
            "queue": queue,
            "queue_title": QUEUES[queue] if queue in QUEUES else "",
            "queues": QUEUES,
            "version": version,
            "page": page,
            "query_without_page": "",
        },
    )


class ReviewItemView(MovieWithScoresView):
    """The movie page of the n-th item of a queue, with previous/next and accept controls.

    Navigation is by position: after accepting, the item leaves the queue and the same
    position shows the next one, so the reviewer never loses their place."""

    def get_context_data(self, queue: str, position: int, **kwargs):
        predictions, total = self.predictions, self.total
        position = max(1, min(position, total))
        prediction = predictions.select_related("movie")[position - 1]
        ctx = super().get_context_data(pk=prediction.movie_id, **kwargs)
        base = reverse("ml:review_item", args=[queue, 0])[:-2]
        ctx["queue_nav"] = {
            "queue": queue,
            "title": QUEUES[queue],
            "position": position,
            "total": total,
            "prev": f"{base}{position - 1}/" if position > 1 else None,
            "next": f"{base}{position + 1}/" if position < total else None,
            "list": reverse("ml:review", args=[queue]) + f"?page={(position - 1) // 25 + 1}",
            "prediction": with_suggestion_scores(prediction),
            "here": f"{base}{position}/",
        }
        return ctx

    def get(self, request, *args, **kwargs):
        if kwargs["queue"] not in QUEUES:
            raise Http404("No such review queue.")
        version, self.predictions = _queue_context(kwargs["queue"])
        self.total = self.predictions.count() if version is not None else 0
        if self.total == 0:  # e.g. the last item was just accepted: back to the (empty) list
            return redirect("ml:review", kwargs["queue"])
        return super().get(request, *args, **kwargs)


@require_POST
@labeler_required
def accept_suggestion(request, pk: int):
    """Apply a prediction's suggestion (all of it, or one ``genre``) as one audited change."""
    prediction = get_object_or_404(Prediction.objects.select_related("movie", "model_version"), pk=pk)
    only = request.POST.get("genre")
    add_names, remove_names = set(prediction.suggested_add), set(prediction.suggested_remove)
    if only:
        if only not in add_names | remove_names:
            messages.error(request, f"“{only}” is not part of this suggestion.")
            return HttpResponseRedirect(_back(request, prediction))
        add_names, remove_names = add_names & {only}, remove_names & {only}
    genres = {g.name: g for g in Genre.objects.filter(name__in=add_names | remove_names)}
    diff = change_labels(
        prediction.movie,
        add=[genres[n] for n in add_names if n in genres],
        remove=[genres[n] for n in remove_names if n in genres],
        origin=LabelOrigin.SUGGESTION,
        user=request.user,
        reason=f"accepted suggestion of {prediction.model_version}",
    )
    refresh_disagreements([prediction.movie_id])  # the queues reflect the new labels now
    summary = ", ".join([f"+{n}" for n in diff.added] + [f"−{n}" for n in diff.removed]) or "nothing to change"
    messages.success(request, f"“{prediction.movie.title}”: {summary}.")
    return HttpResponseRedirect(_back(request, prediction))


def _back(request, prediction) -> str:
    target = request.POST.get("next", "")
    if target.startswith("/") and not target.startswith("//"):
        return target
    return reverse("movie", args=[prediction.movie_id])


# --- model reports ----------------------------------------------------------------------


def headline_evaluation(version: ModelVersion, split: str | None = None) -> Evaluation | None:
    """The evaluation a report shows: the requested split, else test, else validation."""
    evaluations = {e.split: e for e in version.evaluations.all()}
    for candidate in ([split] if split else []) + ["test", "val", "train"]:
        if candidate in evaluations:
            return evaluations[candidate]
    return None


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


# --- ad-hoc prediction --------------------------------------------------------------------


class PredictForm(forms.Form):
    overview = forms.CharField(widget=forms.Textarea(attrs={"rows": 6}), max_length=10_000, required=False)
    poster = forms.FileField(required=False, help_text="JPEG/PNG/WebP, up to 10 MB")

    def clean_poster(self):
        upload = self.cleaned_data.get("poster")
        if not upload:
            return None
        try:
            return read_upload(upload)
        except ImageRejected as exc:
            raise forms.ValidationError(f"Not a usable image: {exc.reason}") from exc

    def clean(self):
        cleaned = super().clean()
        if not (cleaned.get("overview") or "").strip() and not cleaned.get("poster") and not self.errors:
            raise forms.ValidationError("Give an overview, a poster, or both.")
        return cleaned


def _predict_throttle_wait(request) -> float | None:
    """None when this prediction may run; else seconds to wait. The same "predict" rate and
    counters (per user) as POST /api/predict/, so the page is no way around the API limit."""
    from rest_framework.throttling import ScopedRateThrottle

    class PredictScope:
        throttle_scope = "predict"

    throttle = ScopedRateThrottle()
    if throttle.allow_request(request, PredictScope()):
        return None
    return throttle.wait() or 1.0


@reader_required
def predict_page(request):
    version = production_version()
    form = PredictForm(request.POST or None, request.FILES or None)
    result = None
    if request.method == "POST":
        if not request.user.is_authenticated:
            raise PermissionDenied("Log in to predict.")
        wait = _predict_throttle_wait(request)
        if wait is not None:
            messages.error(request, f"Too many predictions; try again in {int(wait or 1)} s.")
            response = render(request, "ml/predict.html", {"form": form, "version": version, "result": None})
            response.status_code = 429
            return response
        if version is None:
            messages.error(request, "No production model yet: train one and promote it first.")
        elif form.is_valid():
            from .services.inference import predict_raw  # loads torch: only when predicting

            try:
                raw = predict_raw(form.cleaned_data["overview"], form.cleaned_data["poster"], version)
            except (FileNotFoundError, ValueError) as exc:  # artifact missing or damaged
                messages.error(request, f"The production model {version} cannot be used: {exc}")
                return render(request, "ml/predict.html", {"form": form, "version": version, "result": None})
            result = {
                **raw,
                "rows": [
                    {
                        "genre": s["genre"],
                        "pct": round(100 * s["score"], 1),
                        "threshold_pct": round(100 * s["threshold"], 1),
                        "predicted": s["predicted"],
                        "labelled": False,
                    }
                    for s in raw["scores"]
                ],
            }
    return render(request, "ml/predict.html", {"form": form, "version": version, "result": result})
