"""Catalog REST API: genres, movies (list/filter/detail) and their labels (set/patch, audited).

Labels change only through catalog.labels (set_labels/change_labels; bulk change sets and
their undo through catalog.bulk), so every API change leaves the same audit trail as the web
page. ``/api/movies/export/csv|json/`` stream the labels with provenance (catalog.export). ``MovieViewSet.labels_changed`` and
``filter_movies`` are hooks: ml.api extends this viewset (and ChangeSetViewSet, whose ``filter_movies``,
``filter_params`` and ``labels_changed`` are the same hooks) with the label-audit filter and the
review-queue refresh, and genreweb/api_urls.py registers those subclasses (catalog never
imports ml).
"""

from __future__ import annotations

from django.db.models import Prefetch, Q
from django.http import QueryDict
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
)
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.pagination import PageNumberPagination
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.settings import api_settings

from base.permissions import IsLabelerOrAnonymousRead
from base.runs import RUN_OPEN
from base.schema import error_responses
from base.text_input import prohibit_nul

from .bulk import MAX_IDS, BulkError, NotUndoable, new_bulk, new_undo
from .export import CSV_COLUMNS, LabelExport
from .forms import CatalogFilterForm
from .labels import StaleLabels, change_labels, set_labels
from .models import LABEL_SET_ORIGINS, ChangeSet, Genre, LabelChange, Movie, MovieGenre, Poster
from .search import SORTS
from .views import NOT_FILTER_PARAMS, KeysFirstPaginator, export_response, run_in_request

# Most movies one list page returns (``page_size``); larger values are capped to it.
MAX_PAGE_SIZE = 200

MOVIE_FILTER_PARAMETERS = [
    OpenApiParameter(
        "q",
        str,
        description="search: whole words of the title or of the overview (case-insensitive), ranked "
        "exact title, title prefix, title words, overview, then (PostgreSQL) near-miss spellings",
    ),
    OpenApiParameter(
        "sort",
        str,
        enum=SORTS,
        description="order of the results; default relevance with q, popularity without "
        "(relabelled = most recently relabelled by a person first)",
    ),
    OpenApiParameter("genre", str, description="genre slug, e.g. science-fiction"),
    OpenApiParameter("year_min", int, description="released in or after this year"),
    OpenApiParameter("year_max", int, description="released in or before this year"),
    OpenApiParameter("label_source", str, enum=[value for value, _ in LABEL_SET_ORIGINS]),
    OpenApiParameter(
        "poster",
        str,
        enum=list(Poster.Status.values) + ["grayscale", "none"],
        description="poster status; 'none' = no poster record",
    ),
]


class GenreSerializer(serializers.ModelSerializer):
    class Meta:
        model = Genre
        fields = ["id", "tmdb_id", "name", "slug"]


class LabelSerializer(serializers.ModelSerializer):
    genre = serializers.CharField(source="genre.name")
    slug = serializers.CharField(source="genre.slug")
    set_by = serializers.CharField(
        source="set_by.username", default=None, allow_null=True, help_text="who set the label; null for imports"
    )

    class Meta:
        model = MovieGenre
        fields = ["genre", "slug", "source", "set_by", "created_at"]


class LabelChangeSerializer(serializers.ModelSerializer):
    genre = serializers.CharField(source="genre.name")
    user = serializers.CharField(
        source="user.username",
        default=None,
        allow_null=True,
        help_text="who made the change; null for imports and jobs",
    )

    class Meta:
        model = LabelChange
        fields = ["id", "genre", "action", "origin", "user", "reason", "created_at"]


class PosterSerializer(serializers.ModelSerializer):
    url = serializers.SerializerMethodField()

    class Meta:
        model = Poster
        fields = ["status", "is_grayscale", "width", "height", "url"]

    @extend_schema_field(OpenApiTypes.URI)
    def get_url(self, poster: Poster) -> str | None:
        url = poster.display_url
        if not url:
            return None
        request = self.context.get("request")
        return request.build_absolute_uri(url) if request else url


class MovieSerializer(serializers.ModelSerializer):
    labels = LabelSerializer(many=True, read_only=True)
    poster = serializers.SerializerMethodField()

    class Meta:
        model = Movie
        fields = [
            "id",
            "title",
            "year",
            "overview",
            "label_source",
            "label_version",
            "labels",
            "poster",
            "tmdb_id",
            "imdb_id",
        ]

    @extend_schema_field(PosterSerializer(allow_null=True))
    def get_poster(self, movie: Movie):
        try:
            poster = movie.poster
        except Poster.DoesNotExist:
            return None
        return PosterSerializer(poster, context=self.context).data


class MovieDetailSerializer(MovieSerializer):
    history = serializers.SerializerMethodField()

    class Meta(MovieSerializer.Meta):
        fields = MovieSerializer.Meta.fields + [
            "original_title",
            "release_date",
            "original_language",
            "popularity",
            "source",
            "source_id",
            "missing_overview",
            "missing_genres",
            "excluded_from_training",
            "created_at",
            "updated_at",
            "history",
        ]

    @extend_schema_field(LabelChangeSerializer(many=True))
    def get_history(self, movie: Movie):
        changes = LabelChange.objects.filter(movie=movie).select_related("genre", "user")[:100]
        return LabelChangeSerializer(changes, many=True).data


class GenreNameField(serializers.SlugRelatedField):
    """A genre given by its name (e.g. "Science Fiction") or slug ("science-fiction")."""

    default_error_messages = {"does_not_exist": "Unknown genre {value!r}; see /api/genres/ for the names."}

    def __init__(self, **kwargs):
        super().__init__(slug_field="name", queryset=Genre.objects.all(), **kwargs)

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        prohibit_nul(data)  # never let a NUL reach the query (PostgreSQL: a 500)
        genre = Genre.objects.filter(Q(name__iexact=data.strip()) | Q(slug=data.strip())).first()
        if genre is None:
            self.fail("does_not_exist", value=data)
        return genre


LABEL_VERSION_HELP = (
    "The movie's label_version the change starts from (from the movie list/detail or the last "
    "labels response). If the labels changed since, nothing is written and the answer is 409 "
    "with the current labels and version."
)


class SetLabelsSerializer(serializers.Serializer):
    """PUT: the complete new label set, and the label version it replaces."""

    genres = serializers.ListField(child=GenreNameField(), allow_empty=True, max_length=50)
    label_version = serializers.IntegerField(min_value=0, help_text=LABEL_VERSION_HELP)
    reason = serializers.CharField(required=False, allow_blank=True, max_length=500, default="")


class PatchLabelsSerializer(serializers.Serializer):
    """PATCH: genres to add and/or remove; the others stay."""

    add = serializers.ListField(child=GenreNameField(), required=False, default=list, max_length=50)
    remove = serializers.ListField(child=GenreNameField(), required=False, default=list, max_length=50)
    label_version = serializers.IntegerField(
        min_value=0,
        required=False,
        default=None,
        help_text="Optional: " + LABEL_VERSION_HELP + " Without it the change applies to the current labels.",
    )
    reason = serializers.CharField(required=False, allow_blank=True, max_length=500, default="")

    def validate(self, data):
        if not data["add"] and not data["remove"]:
            raise serializers.ValidationError({"add": "Give genres to add and/or remove."})
        both = {g.name for g in data["add"]} & {g.name for g in data["remove"]}
        if both:
            raise serializers.ValidationError({"remove": f"Cannot both add and remove {', '.join(sorted(both))}."})
        return data


class LabelsResultSerializer(serializers.Serializer):
    added = serializers.ListField(child=serializers.CharField())
    removed = serializers.ListField(child=serializers.CharField())
    labels = LabelSerializer(many=True)
    label_version = serializers.IntegerField(help_text="The movie's label version after this request.")


class LabelsConflictSerializer(serializers.Serializer):
    """409: the labels changed since the given label_version; nothing was written."""

    detail = serializers.CharField()
    genres = serializers.ListField(child=serializers.CharField(), help_text="The current genre names.")
    labels = LabelSerializer(many=True)
    label_version = serializers.IntegerField(help_text="The current label version: redo the change from it.")


LABELS_RESPONSES = {
    200: LabelsResultSerializer,
    409: OpenApiResponse(
        LabelsConflictSerializer,
        description="The labels changed since label_version; "
        "nothing was written. The body holds the current labels and version.",
    ),
}


def filter_movies(movies, params):
    """The browse page's filters (one CatalogFilterForm for both), from query parameters;
    bad values raise a ValidationError naming each parameter."""
    form = CatalogFilterForm(params)
    if not form.is_valid():
        raise serializers.ValidationError(
            {field: [e["message"] for e in errs] for field, errs in form.errors.get_json_data().items()}
        )
    return form.filter(movies)


class MoviePagination(PageNumberPagination):
    django_paginator_class = KeysFirstPaginator
    page_size_query_param = "page_size"
    max_page_size = MAX_PAGE_SIZE
    page_size_query_description = (
        f"Movies per page (default {api_settings.PAGE_SIZE}, at most {MAX_PAGE_SIZE}; larger values "
        f"return {MAX_PAGE_SIZE})."
    )

    def get_schema_operation_parameters(self, view):
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.page_size_query_param:
                parameter["schema"].update(minimum=1, maximum=self.max_page_size)
        return parameters


class FirstRendererNegotiation(BaseContentNegotiation):
    """Downloads answer in their one format whatever the client's Accept header says (a
    browser link sends text/html, a script text/csv); errors render as JSON."""

    def select_parser(self, request, parsers):
        return parsers[0] if parsers else None

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class ExportLabelSerializer(serializers.Serializer):
    genre = serializers.CharField()
    source = serializers.ChoiceField(choices=LABEL_SET_ORIGINS)
    set_by = serializers.CharField(allow_null=True)
    since = serializers.DateTimeField()


class ExportChangeSerializer(serializers.Serializer):
    at = serializers.DateTimeField()
    by = serializers.CharField(allow_null=True)
    origin = serializers.CharField()
    action = serializers.ChoiceField(choices=LabelChange.Action.choices)
    change_set = serializers.IntegerField(allow_null=True, help_text="the bulk change set, if any")


class ExportRecordSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    tmdb_id = serializers.IntegerField(allow_null=True)
    imdb_id = serializers.CharField(allow_null=True)
    title = serializers.CharField()
    year = serializers.IntegerField(allow_null=True)
    genres = serializers.ListField(child=serializers.CharField())
    labels = ExportLabelSerializer(many=True)
    label_source = serializers.ChoiceField(choices=LABEL_SET_ORIGINS)
    label_version = serializers.IntegerField()
    last_change = ExportChangeSerializer(allow_null=True, help_text="the movie's last label change; null if none")
    reviewed = serializers.BooleanField(
        allow_null=True, help_text="whether the current labels were reviewed; null when not known"
    )


class GenreViewSet(viewsets.ReadOnlyModelViewSet):
    queryset = Genre.objects.all()
    serializer_class = GenreSerializer
    permission_classes = [IsLabelerOrAnonymousRead]
    pagination_class = None


class MovieViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    permission_classes = [IsLabelerOrAnonymousRead]
    serializer_class = MovieSerializer
    pagination_class = MoviePagination

    def get_queryset(self):
        movies = Movie.objects.select_related("poster").prefetch_related(
            Prefetch("labels", queryset=MovieGenre.objects.select_related("genre", "set_by").order_by("genre__name"))
        )
        if self.action == "list":
            movies = self.filter_movies(filter_movies(movies, self.request.query_params), self.request.query_params)
        return movies

    @extend_schema(parameters=MOVIE_FILTER_PARAMETERS)
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)

    def filter_movies(self, movies, params):
        """Hook for subclasses (ml adds the label-audit filter). Default: unchanged."""
        return movies

    # The export's "reviewed" column comes from this class (catalog.export.LabelExport.reviewed).
    exporter = LabelExport

    def export(self, request, fmt: str):
        params = request.query_params
        movies = self.filter_movies(filter_movies(Movie.objects.all(), params), params)
        return export_response(self.exporter(movies), fmt)

    @extend_schema(
        parameters=MOVIE_FILTER_PARAMETERS,
        responses={(200, "text/csv"): OpenApiTypes.STR},
        description="Readers (labelers; anonymous too when anonymous reading is on). The current labels of "
        "every movie matching the filters (all movies without "
        "any), with provenance, as CSV (streamed, one row per movie, in id order): " + ", ".join(CSV_COLUMNS) + ". "
        "genres are |-separated; reviewed is yes/no, empty when not known.",
    )
    @action(
        detail=False,
        methods=["get"],
        url_path="export/csv",
        content_negotiation_class=FirstRendererNegotiation,
        renderer_classes=[JSONRenderer],  # errors; the export itself streams past the renderers
        pagination_class=None,
    )
    def export_csv(self, request):
        return self.export(request, "csv")

    @extend_schema(
        parameters=MOVIE_FILTER_PARAMETERS,
        responses={200: ExportRecordSerializer(many=True)},
        description="The same as export/csv as one JSON array (streamed), each label with its source, "
        "who set it and since when.",
    )
    @action(
        detail=False,
        methods=["get"],
        url_path="export/json",
        content_negotiation_class=FirstRendererNegotiation,
        renderer_classes=[JSONRenderer],
        pagination_class=None,
    )
    def export_json(self, request):
        return self.export(request, "json")

    def labels_changed(self, movie: Movie) -> None:
        """Hook: called after labels changed through the API. Default: nothing."""

    def get_serializer_class(self):
        return MovieDetailSerializer if self.action == "retrieve" else MovieSerializer

    @extend_schema(
        methods=["PUT"],
        request=SetLabelsSerializer,
        responses=LABELS_RESPONSES,
        description="Replace the label set. Give the label_version it replaces: a stale version is "
        "refused with 409 and the current labels. Audited like the web page.",
    )
    @extend_schema(
        methods=["PATCH"],
        request=PatchLabelsSerializer,
        responses=LABELS_RESPONSES,
        description="Add and/or remove genres; the change applies to the labels as they are when it "
        "is written (label_version optional; if given and stale: 409). Audited.",
    )
    @action(detail=True, methods=["put", "patch"], serializer_class=SetLabelsSerializer)
    def labels(self, request, pk=None):
        movie = self.get_object()
        data = (SetLabelsSerializer if request.method == "PUT" else PatchLabelsSerializer)(data=request.data)
        data.is_valid(raise_exception=True)
        given = data.validated_data
        try:
            if request.method == "PUT":
                diff = set_labels(
                    movie,
                    given["genres"],
                    user=request.user,
                    reason=given["reason"],
                    expected_version=given["label_version"],
                )
            else:
                diff = change_labels(
                    movie,
                    add=given["add"],
                    remove=given["remove"],
                    user=request.user,
                    reason=given["reason"],
                    expected_version=given["label_version"],
                )
        except StaleLabels as stale:
            # The labels and version as read under the lock, so a client can redo its change from them.
            return Response(
                {
                    "detail": str(stale),
                    "genres": stale.genre_names,
                    "labels": LabelSerializer(stale.labels, many=True).data,
                    "label_version": stale.version,
                },
                status=status.HTTP_409_CONFLICT,
            )
        if diff.changed:
            self.labels_changed(movie)
        return Response(
            {
                "added": diff.added,
                "removed": diff.removed,
                "labels": LabelSerializer(diff.labels, many=True).data,
                "label_version": diff.version,
            }
        )


# --- change sets: bulk label changes and their undo ---------------------------------------------


class ChangeSetSerializer(serializers.ModelSerializer):
    user = serializers.CharField(source="user.username", default=None, allow_null=True)
    summary = serializers.CharField(read_only=True)
    undone_by = serializers.SerializerMethodField(help_text="the change set that undid this one, if any")

    class Meta:
        model = ChangeSet
        fields = [
            "id",
            "kind",
            "summary",
            "description",
            "selection",
            "add",
            "remove",
            "undoes",
            "undone_by",
            "status",
            "matched",
            "changed",
            "unchanged",
            "skipped",
            "labels_added",
            "labels_removed",
            "skipped_detail",
            "error",
            "user",
            "created_at",
            "finished_at",
        ]

    @extend_schema_field(serializers.IntegerField(allow_null=True))
    def get_undone_by(self, change_set: ChangeSet):
        undos = [u for u in change_set.undone_by.all() if u.status != ChangeSet.Status.FAILED]
        return min(u.pk for u in undos) if undos else None


class ChangeSetChangeSerializer(serializers.ModelSerializer):
    title = serializers.CharField(source="movie.title")
    genre = serializers.CharField(source="genre.name")

    class Meta:
        model = LabelChange
        fields = ["id", "movie", "title", "genre", "action", "created_at"]


class BulkChangeSerializer(serializers.Serializer):
    """POST: genres to add and/or remove, on the movies given by id or by a filter."""

    add = serializers.ListField(child=GenreNameField(), required=False, default=list, max_length=50)
    remove = serializers.ListField(child=GenreNameField(), required=False, default=list, max_length=50)
    movies = serializers.ListField(
        child=serializers.IntegerField(min_value=1),
        required=False,
        allow_empty=False,
        max_length=MAX_IDS,
        help_text=f"movie ids (at most {MAX_IDS}); or give filter",
    )
    filter = serializers.DictField(
        child=serializers.CharField(allow_blank=True, max_length=200),
        required=False,
        help_text="all movies matching these movie-list filters (the query parameters of GET "
        '/api/movies/, e.g. {"genre": "drama", "year_min": "1990"}); {} = the whole catalog',
    )
    description = serializers.CharField(required=False, allow_blank=True, max_length=500, default="")

    def validate(self, data):
        if ("movies" in data) == ("filter" in data):
            raise serializers.ValidationError({"movies": "Give either movies (ids) or filter."})
        if not data["add"] and not data["remove"]:
            raise serializers.ValidationError({"add": "Give genres to add and/or remove."})
        both = {g.name for g in data["add"]} & {g.name for g in data["remove"]}
        if both:
            raise serializers.ValidationError({"remove": f"Cannot both add and remove {', '.join(sorted(both))}."})
        return data


class ChangeSetPagination(PageNumberPagination):
    page_size_query_param = "page_size"
    max_page_size = MAX_PAGE_SIZE


@extend_schema(
    description="Bulk label changes and their undo, newest first. Labelers create and undo them; readers list them."
)
class ChangeSetViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    permission_classes = [IsLabelerOrAnonymousRead]
    serializer_class = ChangeSetSerializer
    pagination_class = ChangeSetPagination
    # The filter keys a bulk change accepts (a misspelt key must not mean "every movie").
    filter_params = frozenset(CatalogFilterForm.base_fields) - set(NOT_FILTER_PARAMS)

    def get_queryset(self):
        return ChangeSet.objects.select_related("user").prefetch_related("undone_by")

    def filter_movies(self, movies, params):
        """Hook for subclasses (ml adds the label-audit filter). Default: unchanged."""
        return movies

    def labels_changed(self, movie_ids: list[int]) -> None:
        """Hook: called after each batch of movies whose labels changed. Default: nothing."""

    def start(self, change_set: ChangeSet, movies) -> dict:
        """Hook: run the new, queued change set (as catalog.views.BulkLabelView.start); returns
        fields added to the answer. Default: here, before answering (201). workers.api runs it
        as a job and answers 202 at once."""
        run_in_request(self, change_set, movies)
        return {}

    def started(self, change_set: ChangeSet, extra: dict) -> Response:
        """The answer to a create or undo: the change set (and ``extra``), 201 when it has
        finished, 202 while it is queued or running."""
        data = {**ChangeSetSerializer(self.get_queryset().get(pk=change_set.pk)).data, **extra}
        running = change_set.status in RUN_OPEN
        return Response(data, status=status.HTTP_202_ACCEPTED if running else status.HTTP_201_CREATED)

    @extend_schema(
        request=BulkChangeSerializer,
        responses={201: ChangeSetSerializer, **error_responses(400)},
        description="Labelers only. Add and/or remove genres on many movies in one audited change set (each movie "
        "locked and written like PATCH /api/movies/{id}/labels/; movies already as asked count as "
        "unchanged).",
    )
    def create(self, request):
        data = BulkChangeSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        given = data.validated_data
        if "filter" in given:
            unknown = sorted(set(given["filter"]) - self.filter_params)
            if unknown:
                raise serializers.ValidationError(
                    {"filter": f"Unknown filter {', '.join(unknown)}; use {', '.join(sorted(self.filter_params))}."}
                )
            for value in given["filter"].values():
                prohibit_nul(value)
            params = QueryDict(mutable=True)
            params.update(given["filter"])
            try:
                movies = self.filter_movies(filter_movies(Movie.objects.all(), params), params)
            except serializers.ValidationError as exc:
                raise serializers.ValidationError({"filter": exc.detail}) from None
            selection = {"filter": dict(given["filter"])}
        else:
            movies = Movie.objects.filter(pk__in=given["movies"])
            selection = {"ids": sorted(set(given["movies"]))}
        try:
            change_set = new_bulk(
                add=given["add"],
                remove=given["remove"],
                user=request.user,
                description=given["description"],
                selection=selection,
            )
        except BulkError as exc:
            raise serializers.ValidationError({"add": str(exc)}) from None
        return self.started(change_set, self.start(change_set, movies))

    @extend_schema(
        request=None,
        responses={201: ChangeSetSerializer, **error_responses(409)},
        description="Labelers only. Undo the change set: a new change set (kind undo) that reverts exactly the label "
        "changes it made. A genre changed again since is left as it is and listed in skipped_detail. "
        "409 if it was already undone or is still queued or running; an undo can be undone (a redo).",
    )
    @action(detail=True, methods=["post"])
    def undo(self, request, pk=None):
        target = self.get_object()
        try:
            undo = new_undo(target, user=request.user)
        except NotUndoable as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        return self.started(undo, self.start(undo, None))

    @extend_schema(
        responses={200: ChangeSetChangeSerializer(many=True)}, description="Readers. The label changes it made."
    )
    @action(detail=True, methods=["get"], serializer_class=ChangeSetChangeSerializer)
    def changes(self, request, pk=None):
        change_set = self.get_object()
        changes = change_set.changes.select_related("movie", "genre").order_by("movie_id", "genre__name")
        page = self.paginate_queryset(changes)
        return self.get_paginated_response(ChangeSetChangeSerializer(page, many=True).data)
