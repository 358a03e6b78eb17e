"""Catalog pages: browse (grid/list), movie page, relabel, data insight.

Dependency direction is genreweb -> workers -> ml -> catalog, so nothing here imports ml.
The browse and movie pages are *composed*: CatalogView and MovieView below hold all the
catalog logic and expose two hooks (``extend_movies`` / ``extend_context``); ml.views
subclasses them to add the label-audit filter (?audit=: "label issues", "model unsure", ...)
and the production model's score bars, and genreweb/urls.py routes "/" and "/movies/<id>/" to those
subclasses. RelabelView likewise has a ``labels_changed`` hook (ml refreshes the review
queues). The bulk change, undo and export views take their movies from a ``browse_view``
(``CatalogView.filtered_movies``: the same "matching this filter" as the page) and have the
same hooks; ml subclasses them too. The bulk change and undo views also have a ``start``
hook (run the new change set; here: in the request), which workers.views overrides to run
it as a job. The catalog-only insight page and the change-set history
are routed from catalog/urls.py.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath

from django.contrib import messages
from django.core.exceptions import SuspiciousFileOperation
from django.core.files.storage import default_storage
from django.core.paginator import Paginator
from django.db.models import Prefetch, QuerySet
from django.http import FileResponse, Http404, HttpResponseRedirect, JsonResponse, QueryDict, StreamingHttpResponse
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils import timezone
from django.utils.decorators import method_decorator
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.generic import TemplateView, View

from base.permissions import ReaderMixin, is_labeler, is_staff, labeler_required, reader_required
from base.runs import RUN_OPEN

from .bulk import BulkError, NotUndoable, new_bulk, new_undo, run_change_set
from .export import LabelExport
from .forms import BulkLabelForm, CatalogFilterForm, RelabelForm
from .images import POSTER_CONTENT_TYPES
from .importers import registry
from .insight import catalog_insight
from .labels import StaleLabels, set_labels
from .models import ChangeSet, Genre, LabelChange, Movie, MovieGenre, Poster

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


def labelled_movies(movies=None):
    """Movies (all, or the ``movies`` queryset) with everything a listing shows, in a
    constant number of queries."""
    return (
        (Movie.objects.all() if movies is None else movies)
        .select_related("poster")
        .prefetch_related(
            Prefetch("labels", queryset=MovieGenre.objects.select_related("genre").order_by("genre__name"))
        )
    )


class CatalogView(ReaderMixin, TemplateView):
    template_name = "catalog/browse.html"

    def extend_movies(self, movies, filter_form):
        """Hook for subclasses: narrow/annotate the filtered movies. Default: unchanged."""
        return movies

    def extend_context(self, page_movies) -> dict:
        """Hook for subclasses: context for the shown page of movies."""
        return {}

    def filtered_movies(self, params) -> tuple[CatalogFilterForm, QuerySet[Movie]]:
        """The page's filter form and the movies it matches, for ``params`` (the page's query,
        or the filter a bulk change or an export was given): one definition of "matching
        this filter", with the subclasses' ``extend_movies``."""
        form = CatalogFilterForm(params or None)
        form.is_valid()
        return form, self.extend_movies(form.filter(labelled_movies()), form)

    @staticmethod
    def genre_choices(form: CatalogFilterForm) -> list[Genre]:
        """The genres, read once for the filter's select and the bulk bar's."""
        genres = list(Genre.objects.all())
        form.fields["genre"].choices = [("", form.fields["genre"].empty_label)] + [(g.slug, g.name) for g in genres]
        return genres

    def get_context_data(self, **kwargs):
        ctx = super().get_context_data(**kwargs)
        form, movies = self.filtered_movies(self.request.GET)
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
            filter_query=filter_query(self.request.GET).urlencode(),
            can_bulk_edit=is_labeler(self.request.user),
            all_genres=self.genre_choices(form),
            **self.extend_context(page_movies),
        )
        return ctx


class MovieView(ReaderMixin, TemplateView):
    template_name = "catalog/movie.html"

    def extend_context(self, movie: Movie) -> dict:
        """Hook for subclasses (ml adds the production model's scores)."""
        return {}

    def get_context_data(self, pk: int | None = None, movie: Movie | None = None, **kwargs):
        """The page of movie ``pk``, or of ``movie`` when the caller has read it already
        through labelled_movies() (the review item page, from its queue position)."""
        ctx = super().get_context_data(**kwargs)
        if movie is None:
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


# --- bulk changes, their undo, the change-set history, export ---------------------------------

# Query parameters that are not part of a filter (where the page is, how it is shown).
NOT_FILTER_PARAMS = ("page", "view", "sort")


def filter_query(params) -> QueryDict:
    """The filter part of a page's query (what "all matching this filter" means)."""
    query = params.copy()
    for name in NOT_FILTER_PARAMS:
        query.pop(name, None)
    return query


def run_in_request(view, change_set: ChangeSet, movies: QuerySet[Movie] | None) -> None:
    """What the bulk and undo views' ``start`` hook does by default (pages and API): run the
    new, queued change set here, in the request, with the view's ``labels_changed`` after
    each batch. The routed views (workers.views, workers.api) run it as a job instead."""
    run_change_set(change_set, movies, on_changed=view.labels_changed)


def _movies(n: int) -> str:
    return f"{n:,} movie{'' if n == 1 else 's'}"


class BulkLabelView(View):
    """Add or remove one genre on the checked movies or on all movies matching the page's
    filter, in one change set (catalog.bulk). Without ``confirmed`` it answers with a page
    asking to confirm, with the count (the catalog page asks in a dialog first); confirmed,
    it creates the change set, starts it (``start``) and shows its page, which follows its
    progress and has its Undo button."""

    http_method_names = ["post"]
    browse_view = CatalogView

    def labels_changed(self, movie_ids: list[int]) -> None:
        """Hook: called after each batch of movies whose labels changed. Default: nothing."""

    def start(self, change_set: ChangeSet, movies: QuerySet[Movie] | None) -> str:
        """Hook: run the new, queued change set (``movies``: what its selection matches now).
        Default: here (``run_in_request``); returns how it runs, for the message ("" or e.g.
        " as job #7")."""
        run_in_request(self, change_set, movies)
        return ""

    @method_decorator(labeler_required)
    def post(self, request):
        form = BulkLabelForm(request.POST)
        back = reverse("home")
        if not form.is_valid():
            messages.error(
                request,
                "Nothing changed: " + "; ".join(f"{field}: {' '.join(errs)}" for field, errs in form.errors.items()),
            )
            return HttpResponseRedirect(f"{back}?{request.POST.get('filter', '')}")
        data = form.cleaned_data
        back = f"{back}?{data['filter']}"
        if data["scope"] == "filter":
            params = filter_query(QueryDict(data["filter"]))
            page = self.browse_view()
            page.setup(request)
            filter_form, movies = page.filtered_movies(params)
            if filter_form.errors:
                messages.error(request, "Nothing changed: the filter is not valid.")
                return HttpResponseRedirect(back)
            selection = {"filter": {key: params.get(key) for key in params}}
        else:
            movies = Movie.objects.filter(pk__in=data["ids"])
            selection = {"ids": sorted(data["ids"])}
        genre, adding = data["genre"], data["action"] == "add"
        if not data["confirmed"]:
            return render(
                request,
                "catalog/bulk_confirm.html",
                {"form": form, "count": movies.count(), "genre": genre, "adding": adding, "back": back},
            )
        try:
            change_set = new_bulk(
                add=[genre] if adding else [],
                remove=[] if adding else [genre],
                user=request.user,
                description=data["description"],
                selection=selection,
            )
        except BulkError as exc:
            messages.error(request, f"Nothing changed: {exc}")
            return HttpResponseRedirect(back)
        how = self.start(change_set, movies)
        verb = "Added" if adding else "Removed"
        if change_set.status in RUN_OPEN:
            messages.success(
                request,
                f"{'Adding' if adding else 'Removing'} {genre.name} {'to' if adding else 'from'} "
                f"{change_set.selection_text}{how}; this page follows it.",
            )
        else:
            messages.success(
                request,
                f"{verb} {genre.name} {'to' if adding else 'from'} {_movies(change_set.changed)}; "
                f"{change_set.unchanged:,} already {'had it' if adding else 'did not have it'}.",
            )
        return HttpResponseRedirect(reverse("catalog:change-set", args=[change_set.pk]) + f"?back={_quote(back)}")


def _quote(url: str) -> str:
    from urllib.parse import quote

    return quote(url, safe="")


class UndoChangeSetView(View):
    """Undo a change set (one click): a new change set that reverts exactly what it changed,
    leaving any genre changed since as it is and listing it, started like a bulk change
    (``start``). A change set already undone (or still queued or running) is refused with
    the reason."""

    http_method_names = ["post"]

    def labels_changed(self, movie_ids: list[int]) -> None:
        """Hook: as BulkLabelView.labels_changed."""

    def start(self, change_set: ChangeSet, movies=None) -> str:
        """Hook: as BulkLabelView.start."""
        run_in_request(self, change_set, None)
        return ""

    @method_decorator(labeler_required)
    def post(self, request, pk: int):
        target = get_object_or_404(ChangeSet, pk=pk)
        try:
            undo = new_undo(target, user=request.user)
        except NotUndoable as exc:
            messages.error(request, f"Not undone: {exc}")
            return HttpResponseRedirect(reverse("catalog:change-set", args=[pk]))
        how = self.start(undo)
        if undo.status in RUN_OPEN:
            messages.success(request, f"Undoing {target}{how}; this page follows it.")
        else:
            note = f"; {_movies(undo.skipped)} changed since, left as they are" if undo.skipped else ""
            messages.success(request, f"Undid {target}: {_movies(undo.changed)} reverted{note}.")
        return HttpResponseRedirect(reverse("catalog:change-set", args=[undo.pk]))


CHANGE_SETS_PER_PAGE = 50
CHANGES_PER_PAGE = 100


@reader_required
def change_set_list(request):
    """The history of bulk changes and undos, newest first."""
    change_sets = ChangeSet.objects.select_related("user", "undoes").prefetch_related("undone_by")
    page = Paginator(change_sets, CHANGE_SETS_PER_PAGE).get_page(request.GET.get("page"))
    return render(request, "catalog/change_sets.html", {"page": page, "change_sets": page.object_list})


@reader_required
def change_set_detail(request, pk: int):
    """One change set: what it was applied to, its counts, the movies it left alone and why,
    and every label change it made (paged), with the Undo button."""
    change_set = get_object_or_404(ChangeSet.objects.select_related("user", "undoes"), pk=pk)
    changes = change_set.changes.select_related("movie", "genre").order_by("movie_id", "genre__name")
    page = Paginator(changes, CHANGES_PER_PAGE).get_page(request.GET.get("page"))
    undone_by = change_set.undone_by.exclude(status=ChangeSet.Status.FAILED).order_by("pk").first()
    back = request.GET.get("back", "")
    if not url_has_allowed_host_and_scheme(back, {request.get_host()}, request.is_secure()):
        back = ""
    return render(
        request,
        "catalog/change_set.html",
        {
            "change_set": change_set,
            "page": page,
            "changes": page.object_list,
            "undone_by": undone_by,
            "can_undo": is_labeler(request.user) and undone_by is None and change_set.status not in RUN_OPEN,
            "running": change_set.status in RUN_OPEN,
            "back": back,
            "query_without_page": f"back={_quote(back)}" if back else "",
        },
    )


STATUS_FIELDS = ("matched", "changed", "unchanged", "skipped", "labels_added", "labels_removed")


@reader_required
def change_set_status(request, pk: int):
    """Polled by the change-set page while it is queued or running: its status and counts."""
    change_set = get_object_or_404(ChangeSet, pk=pk)
    return JsonResponse(
        {
            "id": change_set.pk,
            "status": change_set.status,
            "status_display": change_set.get_status_display(),
            "finished": change_set.status not in RUN_OPEN,
            "error": change_set.error,
            **{name: getattr(change_set, name) for name in STATUS_FIELDS},
        }
    )


EXPORT_TYPES = {"csv": "text/csv; charset=utf-8", "json": "application/json"}


class ExportView(View):
    """The current labels with their provenance (catalog.export), streamed as CSV or JSON,
    for the whole catalog or the movies matching the page's filter (the query string)."""

    http_method_names = ["get", "head"]
    browse_view = CatalogView
    exporter = LabelExport

    @method_decorator(reader_required)
    def get(self, request, fmt: str):
        if fmt not in EXPORT_TYPES:
            raise Http404("Export as csv or json.")
        page = self.browse_view()
        page.setup(request)
        _form, movies = page.filtered_movies(filter_query(request.GET))
        return export_response(self.exporter(movies), fmt)


def export_response(export: LabelExport, fmt: str) -> StreamingHttpResponse:
    """A streamed download of ``export`` as ``fmt`` (csv or json); the pages and the API share it."""
    chunks = export.csv_chunks() if fmt == "csv" else export.json_chunks()
    response = StreamingHttpResponse(chunks, content_type=EXPORT_TYPES[fmt])
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    response["Content-Disposition"] = f'attachment; filename="genreweb-labels-{stamp}.{fmt}"'
    response["X-Content-Type-Options"] = "nosniff"
    return response
