"""The catalog's browse, movie and relabel pages extended with the models: the production
model's scores, the label-audit filter (?audit=), review-queue refresh after a label change.

They render ml/ templates that extend the catalog ones and fill the blocks those leave empty.
The bulk change, undo and export views use the extended browse filter and refresh the queues.
"""

from __future__ import annotations

from django import forms
from django.http import HttpResponseRedirect

from catalog import views as catalog_views
from catalog.views import CatalogView, MovieView
from catalog.views import RelabelView as CatalogRelabelView

from ..models import ModelVersion, Prediction
from ..services.registry import production_version
from ..services.review import (
    AUDIT_QUEUES,
    REPLACED_QUEUES,
    ReviewedLabelExport,
    filter_movies_by_queue,
    labels_changed,
)
from ..services.similar import SIMILAR_BY, NotEmbedded, similar_movies

# The catalog's audit filter (?audit=...): membership of an audit queue, the same query the
# review queues and the API use. "errors" is the "label issues" filter.
AUDIT_FILTER_CHOICES = [
    ("", "any audit result"),
    ("errors", "label issues"),
    ("unlabeled", "unlabeled, with suggestions"),
    ("uncertain", "model unsure"),
]


def score_rows(prediction: Prediction, version: ModelVersion, label_names: set[str]) -> list[dict]:
    # the thresholds the prediction was decided with (its input set's)
    thresholds = dict(zip(version.genres, version.thresholds_for(prediction.inputs) or [], strict=False))
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


# The removed in-sample opinion filter (?model=disagrees|unsure): a page or export URL that
# still has it redirects to the same query with the audit filter that replaces it.
REMOVED_FILTER = "model"


def without_removed_filter(request) -> HttpResponseRedirect | None:
    """302 to ``request``'s URL with ``?model=`` replaced by its audit filter (``?audit=``
    wins if both are given; an unknown old value is dropped); None without ``?model=``."""
    if REMOVED_FILTER not in request.GET:
        return None
    query = request.GET.copy()
    old = query.pop(REMOVED_FILTER)[-1]
    if not query.get("audit") and old in REPLACED_QUEUES:
        query["audit"] = REPLACED_QUEUES[old]
    return HttpResponseRedirect(f"{request.path}?{query.urlencode()}" if query else request.path)


class ModelFilterForm(forms.Form):
    audit = forms.ChoiceField(required=False, choices=AUDIT_FILTER_CHOICES)


class BrowseView(CatalogView):
    template_name = "ml/browse.html"

    def get(self, request, *args, **kwargs):
        return without_removed_filter(request) or super().get(request, *args, **kwargs)

    def extend_movies(self, movies, filter_form):
        self.version = production_version()
        # the filter's own parameters (the page's query, or a bulk change's / an export's)
        params = filter_form.data or {}
        self.model_form = ModelFilterForm(params or None)
        if REMOVED_FILTER in params:  # only a bulk change's filter gets here (pages redirect)
            filter_form.add_error(None, "The model filter was removed: use the audit filter (audit=errors, uncertain).")
        valid = self.model_form.is_valid()
        for error in self.model_form.errors.get("audit", []):  # shown on the page; a bulk change is refused
            filter_form.add_error(None, f"audit: {error}")
        queue = self.model_form.cleaned_data.get("audit") if valid else ""
        if queue in AUDIT_QUEUES:
            movies = filter_movies_by_queue(movies, queue)
        return movies

    def extend_context(self, page_movies):
        if self.version is not None:
            by_movie = {
                p.movie_id: p
                for p in Prediction.objects.filter(
                    model_version=self.version, movie_id__in=[m.pk for m in page_movies]
                ).only("movie_id", "predicted", "disagrees", "top_genre", "top_score")
            }
            for movie in page_movies:
                movie.current_prediction = by_movie.get(movie.pk)
        return {
            "model_filter_form": self.model_form,
            "show_model_column": self.version is not None,
        }


SIMILAR_ON_PAGE = 8


class MovieWithScoresView(MovieView):
    template_name = "ml/movie.html"

    def extend_context(self, movie):
        return {**self.score_context(movie), **self.similar_context(movie)}

    def score_context(self, movie):
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

    def similar_context(self, movie):
        """The "Similar movies" panel: ?similar=text|poster|fused chooses (default text)."""
        by = self.request.GET.get("similar", "text")
        if by not in SIMILAR_BY:
            by = "text"
        query = self.request.GET.copy()
        choices = []
        for choice, label in zip(SIMILAR_BY, ("by overview", "by poster", "both"), strict=True):
            query["similar"] = choice
            choices.append({"by": choice, "label": label, "query": query.urlencode(), "active": choice == by})
        try:
            neighbours, note = similar_movies(movie, by=by, k=SIMILAR_ON_PAGE), ""
        except NotEmbedded as exc:
            neighbours, note = [], str(exc)
        return {"similar": {"by": by, "choices": choices, "neighbours": neighbours, "note": note}}


class RelabelView(CatalogRelabelView):
    movie_view = MovieWithScoresView

    def labels_changed(self, movie):
        labels_changed([movie.pk])


class BulkLabelView(catalog_views.BulkLabelView):
    """Bulk changes over the browse page's filter, the audit filter included; queues and
    label issues refreshed after each batch (workers.views runs them as jobs)."""

    browse_view = BrowseView

    def labels_changed(self, movie_ids):
        labels_changed(movie_ids)


class UndoChangeSetView(catalog_views.UndoChangeSetView):
    def labels_changed(self, movie_ids):
        labels_changed(movie_ids)


class ExportView(catalog_views.ExportView):
    """Export of the browse page's filter, the audit filter included, with the "reviewed"
    column from the label reviews (ml.services.review.ReviewedLabelExport)."""

    browse_view = BrowseView
    exporter = ReviewedLabelExport

    def get(self, request, fmt: str):
        return without_removed_filter(request) or super().get(request, fmt)
