"""Catalog pages: browse (grid/list), movie page, relabel, data insight.

Dependency direction is genreweb -> workers -> ml -> catalog, so nothing here imports ml.
The browse and movie pages are *composed*: CatalogView and MovieView below hold all the
catalog logic and expose two hooks (``extend_movies`` / ``extend_context``); ml.views
subclasses them to add the model filters ("model disagrees", "model unsure") and the
production model's score bars, and genreweb/urls.py routes "/" and "/movies/<id>/" to those
subclasses. RelabelView likewise has a ``labels_changed`` hook (ml refreshes the review
queues). The catalog-only insight page is routed from catalog/urls.py.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath

from django.contrib import messages
from django.core.exceptions import SuspiciousFileOperation
from django.core.files.storage import default_storage
from django.core.paginator import Paginator
from django.db.models import Prefetch
from django.http import FileResponse, Http404, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils.decorators import method_decorator
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.generic import TemplateView, View

from base.permissions import ReaderMixin, is_staff, labeler_required, reader_required

from .forms import CatalogFilterForm, RelabelForm
from .images import POSTER_CONTENT_TYPES
from .importers import registry
from .insight import catalog_insight
from .labels import StaleLabels, set_labels
from .models import Genre, LabelChange, Movie, MovieGenre, Poster

PAGE_SIZE_GRID = 48
PAGE_SIZE_LIST = 100


def poster_url(movie: Movie) -> str | None:
    """URL of the best poster image to show (Poster.display_url), or None."""
    try:
        poster = movie.poster
    except Poster.DoesNotExist:
        return None
    return (poster.display_url if poster else "") or None


# Only poster files are ever served over HTTP; model artifacts and anything else in storage
# are not (404), whoever asks. Names are what catalog.models.poster_upload_to /
# derivative_upload_to (and seed_synthetic) produce: no "..", no other folders.
POSTER_FILE_RE = re.compile(r"posters/(?:(?:original|derived)/\d{3}|synthetic)/[A-Za-z0-9][A-Za-z0-9._-]{0,250}")
# Stored posters are JPEG/PNG/WebP (catalog.posters); ".jpeg" covers files stored before that check.
SERVED_POSTER_TYPES = {**POSTER_CONTENT_TYPES, ".jpeg": "image/jpeg"}


def poster_file(request, name: str):
    """A stored poster file, for users who may read the catalog (the catalog pages' rule)."""
    suffix = PurePosixPath(name).suffix.lower()
    if not POSTER_FILE_RE.fullmatch(name) or suffix not in SERVED_POSTER_TYPES:
        raise Http404("No such poster.")
    return _serve_poster(request, name, SERVED_POSTER_TYPES[suffix])


@reader_required
def _serve_poster(request, name: str, content_type: str):
    try:
        handle = default_storage.open(name, "rb")
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, SuspiciousFileOperation):
        raise Http404("No such poster.") from None
    response = FileResponse(handle, content_type=content_type)
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    # Private: shared caches must not hand a poster to someone who may not read the catalog.
    response["Cache-Control"] = "private, max-age=3600"
    return response


class KeysFirstPaginator(Paginator):
    """Pages in two steps: OFFSET over the ordered ids only (an index-only scan of the
    browse-order index on PostgreSQL), then the page's full rows by id. A deep page of
    100k movies then costs tens of milliseconds instead of reading every row before it."""

    def page(self, number):
        number = self.validate_number(number)
        bottom = (number - 1) * self.per_page
        ids = list(self.object_list.values_list("pk", flat=True)[bottom : bottom + self.per_page])
        rows = {movie.pk: movie for movie in self.object_list.filter(pk__in=ids)}
        return self._get_page([rows[pk] for pk in ids if pk in rows], number, self)


def labelled_movies():
    """Movies with everything a listing shows, in a constant number of queries."""
    return Movie.objects.select_related("poster").prefetch_related(
        Prefetch("labels", queryset=MovieGenre.objects.select_related("genre").order_by("genre__name"))
    )


class CatalogView(ReaderMixin, TemplateView):
    template_name = "catalog/browse.html"

    def extend_movies(self, movies, filter_form):
        """Hook for subclasses: narrow/annotate the filtered movies. Default: unchanged."""
        return movies

    def extend_context(self, page_movies) -> dict:
        """Hook for subclasses: context for the shown page of movies."""
        return {}

    def get_context_data(self, **kwargs):
        ctx = super().get_context_data(**kwargs)
        form = CatalogFilterForm(self.request.GET or None)
        form.is_valid()
        movies = form.filter(labelled_movies())
        movies = self.extend_movies(movies, form)
        view_mode = (form.cleaned_data.get("view") if form.is_bound else None) or "grid"
        paginator = KeysFirstPaginator(movies, PAGE_SIZE_GRID if view_mode == "grid" else PAGE_SIZE_LIST)
        page = paginator.get_page(self.request.GET.get("page"))
        page_movies = list(page.object_list)
        for movie in page_movies:
            movie.poster_src = poster_url(movie)
        # An empty page of an empty catalog gets a first-step hint, not "no movies match".
        catalog_empty = not page_movies and not Movie.objects.exists()
        # ... and, with the development set beside the project, a one-click import of it.
        devset = registry.devset_dir() if catalog_empty and is_staff(self.request.user) else None
        params = self.request.GET.copy()
        params.pop("page", None)
        ctx.update(
            form=form,
            page=page,
            movies=page_movies,
            view_mode=view_mode,
            # the sort asked for ("" = the default: relevance with a query, else popularity)
            sort=form.cleaned_data.get("sort", "") if form.is_bound else "",
            searched=form.searched(),
            catalog_empty=catalog_empty,
            devset=devset,
            query_without_page=params.urlencode(),
            **self.extend_context(page_movies),
        )
        return ctx


class MovieView(ReaderMixin, TemplateView):
    template_name = "catalog/movie.html"

    def extend_context(self, movie: Movie) -> dict:
        """Hook for subclasses (ml adds the production model's scores)."""
        return {}

    def get_context_data(self, pk: int, **kwargs):
        ctx = super().get_context_data(**kwargs)
        movie = get_object_or_404(labelled_movies(), pk=pk)
        movie.poster_src = poster_url(movie)
        current = [mg.genre_id for mg in movie.labels.all()]
        history = LabelChange.objects.filter(movie=movie).select_related("genre", "user")[:200]
        ctx.update(
            movie=movie,
            labels=movie.labels.all(),
            history=history,
            relabel_form=RelabelForm(initial={"genres": current, "label_version": movie.label_version}),
            all_genres=Genre.objects.all(),
            current_genre_ids=set(current),
            next_url=self.request.GET.get("next", ""),
            **self.extend_context(movie),
        )
        return ctx


def _safe_next(request, fallback: str) -> str:
    target = request.POST.get("next") or request.GET.get("next")
    if target and url_has_allowed_host_and_scheme(target, {request.get_host()}, request.is_secure()):
        return target
    return fallback


class RelabelView(View):
    """Replace a movie's labels (atomically, audited via catalog.labels.set_labels).

    The form carries the label version the page showed; if the labels changed since, nothing
    is saved and the movie page comes back (409) with the current labels, what the person
    asked for, and the form ready to redo the change. ``labels_changed`` is the hook for layers
    above (ml refreshes the review queues); ``movie_view`` is the page shown on a conflict."""

    http_method_names = ["post"]
    movie_view = MovieView

    def labels_changed(self, movie: Movie) -> None:
        """Hook: called after a change was saved. Default: nothing."""

    @method_decorator(labeler_required)
    def post(self, request, pk: int):
        movie = get_object_or_404(Movie, pk=pk)
        form = RelabelForm(request.POST)
        movie_url = reverse("movie", args=[pk])
        if not form.is_valid():
            messages.error(
                request,
                "Labels not saved: " + "; ".join(f"{field}: {' '.join(errs)}" for field, errs in form.errors.items()),
            )
            return HttpResponseRedirect(movie_url)
        try:
            diff = set_labels(
                movie,
                form.cleaned_data["genres"],
                user=request.user,
                reason=form.cleaned_data["reason"],
                expected_version=form.cleaned_data["label_version"],
            )
        except StaleLabels as stale:
            return self.conflict(request, movie, stale, form)
        if diff.changed:
            self.labels_changed(movie)
            parts = [
                f"added {', '.join(diff.added)}" if diff.added else "",
                f"removed {', '.join(diff.removed)}" if diff.removed else "",
            ]
            messages.success(request, f"Labels of “{movie.title}” saved: " + "; ".join(p for p in parts if p) + ".")
        else:
            messages.info(request, "Labels unchanged.")
        return HttpResponseRedirect(_safe_next(request, movie_url))

    def conflict(self, request, movie: Movie, stale: StaleLabels, form: RelabelForm):
        page = self.movie_view()
        page.setup(request, pk=movie.pk)
        ctx = page.get_context_data(pk=movie.pk)
        ctx.update(
            label_conflict={
                "current": stale.genre_names,
                "wanted": sorted(g.name for g in form.cleaned_data["genres"]),
                "reason": form.cleaned_data["reason"],
            },
            relabel_next=_safe_next(request, reverse("movie", args=[movie.pk])),
        )
        return render(request, page.template_name, ctx, status=409)


@reader_required
def insight_page(request):
    """Data insight: genre distribution, co-occurrence (clustered), overview lengths, share by year."""
    return render(request, "catalog/insight.html", {"insight": catalog_insight()})
