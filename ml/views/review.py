"""Review queues (the label audit's): the ranked list, one item with previous/next and the
review actions, the progress page. The removed in-sample queues' URLs redirect to the audit
queues that replace them (ml.services.review.REPLACED_QUEUES)."""

from __future__ import annotations

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import Http404, HttpResponseRedirect
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from base.permissions import labeler_required, reader_required
from catalog.forms import RelabelForm
from catalog.labels import StaleLabels
from catalog.models import Movie
from catalog.views import labelled_movies, poster_url

from ..services.audit import latest_audit
from ..services.review import (
    AUDIT_QUEUES,
    REPLACED_QUEUES,
    ReviewRefused,
    apply_review,
    audit_queue_movies,
    queue_issues,
    unsure_cut,
)
from .catalog_pages import MovieWithScoresView


def _replaced(request, queue: str, *args) -> HttpResponseRedirect:
    """A removed queue's URL (an old bookmark): 302 to the audit queue that replaces it."""
    target = reverse("ml:review_item" if args else "ml:review", args=[REPLACED_QUEUES[queue], *args])
    query = request.GET.urlencode()
    return HttpResponseRedirect(f"{target}?{query}" if query else target)


# --- Label-audit queues -------------------------------------------------------------------

AUDIT_PAGE = 25


def _audit_items(queue: str, audit, movies):
    """Attach each movie's open suggestions (issues) in this queue, worst first."""
    from ..models import LabelIssue

    by_movie: dict[int, list] = {}
    for issue in queue_issues(queue, audit).filter(movie__in=[m.pk for m in movies]).select_related("genre"):
        by_movie.setdefault(issue.movie_id, []).append(issue)
    for movie in movies:
        issues = sorted(
            by_movie.get(movie.pk, []), key=lambda i: (not i.queued, not i.flagged, -i.margin, i.genre.name)
        )
        movie.suggestions = issues
        movie.add_suggestions = [i for i in issues if i.kind == LabelIssue.Kind.MISSING]
        movie.remove_suggestions = [i for i in issues if i.kind == LabelIssue.Kind.WRONG]
    return movies


@reader_required
def review_list(request, queue: str):
    if queue in REPLACED_QUEUES:
        return _replaced(request, queue)
    if queue not in AUDIT_QUEUES:
        raise Http404("No such review queue.")
    audit = latest_audit()
    page = None
    if audit is not None:
        movies = labelled_movies(audit_queue_movies(queue, audit))
        page = Paginator(movies, AUDIT_PAGE).get_page(request.GET.get("page"))
        items = _audit_items(queue, audit, list(page.object_list))
        for offset, movie in enumerate(items):
            movie.position = page.start_index() + offset
            movie.poster_src = poster_url(movie)
        page.object_list = items
    return render(
        request,
        "ml/review_list.html",
        {
            "queue": queue,
            "queue_title": AUDIT_QUEUES[queue],
            "queues": AUDIT_QUEUES,
            "audit": audit,
            "page": page,
            "query_without_page": "",
            "unsure": _unsure_context(audit) if queue == "uncertain" else None,
        },
    )


def _unsure_context(audit) -> dict | None:
    """The "model unsure" batch's limits, as the list page explains them."""
    if audit is None:
        return None
    limit, floor = unsure_cut(audit)
    return {"limit": limit, "floor": floor}


class ReviewItemView(MovieWithScoresView):
    """The movie page of the n-th item of an audit queue, with the review actions.

    Navigation is by position: an item that leaves the queue (reviewed) is replaced at the
    same position by the next one, so the reviewer never loses their place."""

    def get_context_data(self, queue: str, position: int, **kwargs):
        total = self.total
        position = max(1, min(position, total))
        movie = labelled_movies(self.movies)[position - 1]  # the one read of the movie
        ctx = super().get_context_data(movie=movie, **kwargs)
        _audit_items(queue, self.audit, [ctx["movie"]])
        base = reverse("ml:review_item", args=[queue, 0])[:-2]
        here = f"{base}{position}/"
        ctx["audit_nav"] = {
            "queue": queue,
            "title": AUDIT_QUEUES[queue],
            "position": position,
            "total": total,
            "prev": f"{base}{position - 1}/" if position > 1 else None,
            "next": f"{base}{position + 1}/" if position < total else None,
            "list": reverse("ml:review", args=[queue]) + f"?page={(position - 1) // AUDIT_PAGE + 1}",
            "here": here,
            "act": reverse("ml:review_act", args=[queue, movie.pk]),
            "audit": self.audit,
        }
        ctx["relabel_action"] = ctx["audit_nav"]["act"]
        ctx["relabel_next"] = here
        ctx.update(getattr(self, "extra", {}))
        return ctx

    def get(self, request, *args, **kwargs):
        queue = kwargs["queue"]
        if queue in REPLACED_QUEUES:
            return _replaced(request, queue, kwargs["position"])
        if queue not in AUDIT_QUEUES:
            raise Http404("No such review queue.")
        self.audit = latest_audit()
        self.movies = audit_queue_movies(queue, self.audit) if self.audit else None
        self.total = self.movies.count() if self.audit else 0
        if self.total == 0:
            return redirect("ml:review", queue)
        return super().get(request, *args, **kwargs)


@require_POST
@labeler_required
def review_act(request, queue: str, pk: int):
    """One review action on an audit-queue item (ml.services.review.apply_review)."""
    if queue not in AUDIT_QUEUES:
        raise Http404("No such review queue.")
    movie = get_object_or_404(Movie, pk=pk)
    action = request.POST.get("action", "")
    back = _back_to(request, queue)
    version = request.POST.get("label_version", "")
    genres = None
    if action == "edit":
        form = RelabelForm(request.POST)
        if not form.is_valid():
            messages.error(request, "Not saved: " + "; ".join(" ".join(e) for e in form.errors.values()))
            return HttpResponseRedirect(back)
        genres, version = form.cleaned_data["genres"], form.cleaned_data["label_version"]
    try:
        outcome = apply_review(
            movie,
            request.user,
            action,
            label_version=int(version) if str(version).isdigit() else None,
            queue=queue,
            genre=request.POST.get("genre", ""),
            genres=genres,
        )
    except StaleLabels as stale:
        return _stale(request, queue, movie, stale)
    except ReviewRefused as refused:
        messages.error(request, f"“{movie.title}”: {refused}")
        return HttpResponseRedirect(back)
    messages.success(request, f"“{movie.title}”: {outcome.summary}.")
    if action == "skip":  # move on: the item stays in the queue
        return HttpResponseRedirect(_next_position(request, queue))
    return HttpResponseRedirect(back)


def _back_to(request, queue: str) -> str:
    target = request.POST.get("next", "")
    if target.startswith("/") and not target.startswith("//"):
        return target
    return reverse("ml:review", args=[queue])


def _next_position(request, queue: str) -> str:
    target = _back_to(request, queue)
    base = reverse("ml:review_item", args=[queue, 0])[:-2]
    if target.startswith(base) and target[len(base) :].rstrip("/").isdigit():
        return f"{base}{int(target[len(base) :].rstrip('/')) + 1}/"
    return target


def _stale(request, queue: str, movie, stale):
    """The labels moved on: nothing was written; show the item again (409) with the current labels."""
    view = ReviewItemView()
    view.setup(request, queue=queue, position=1)
    view.audit = latest_audit()
    view.movies = audit_queue_movies(queue, view.audit) if view.audit else Movie.objects.none()
    ids = list(view.movies.values_list("pk", flat=True))
    position = ids.index(movie.pk) + 1 if movie.pk in ids else 1
    view.total = len(ids)
    view.extra = {"review_conflict": str(stale)}
    if view.total == 0:
        messages.error(request, str(stale))
        return HttpResponseRedirect(reverse("movie", args=[movie.pk]))
    ctx = view.get_context_data(queue=queue, position=position)
    return render(request, view.template_name, ctx, status=409)


@reader_required
def review_progress_page(request):
    from ..services.review import review_progress

    return render(request, "ml/review_progress.html", {"progress": review_progress(), "queues": AUDIT_QUEUES})
