"""Review queues: the ranked list, one item with previous/next, accepting a suggestion."""

from __future__ import annotations

from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import Prefetch
from django.http import Http404, HttpResponseRedirect
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from base.permissions import labeler_required, reader_required
from catalog.labels import change_labels
from catalog.models import Genre, LabelOrigin, MovieGenre
from catalog.views import poster_url

from ..models import Prediction
from ..services.inference import refresh_disagreements
from ..services.registry import production_version
from ..services.review import QUEUES, UnknownQueue, queue_predictions
from .catalog_pages import MovieWithScoresView


def with_suggestion_scores(prediction: Prediction) -> Prediction:
    """Pair each suggested genre with its score for display."""
    prediction.add_scores = [(g, prediction.scores.get(g)) for g in prediction.suggested_add]
    prediction.remove_scores = [(g, prediction.scores.get(g)) for g in prediction.suggested_remove]
    return prediction


def _queue_context(queue: str):
    version = production_version()
    if version is None:
        return None, None
    try:
        return version, queue_predictions(queue, version)
    except UnknownQueue:
        raise Http404("No such review queue.") from None


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
