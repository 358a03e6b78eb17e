"""Django admin for the catalog: search, filters, poster thumbnails, audited labels.

Labels change only through ``catalog.labels.set_labels`` (one audited way): the movie form has a
genre picker that calls it, the label rows and the label history are read-only here.
Preprocessing fields (poster status, movie flags) are read-only: ``preprocess_posters`` owns them.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import flatten_fieldsets
from django.db.models import Count, Prefetch
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from .labels import StaleLabels, set_labels
from .models import ChangeSet, Genre, ImportRun, LabelChange, LabelOrigin, Movie, MovieGenre, Poster

LIST_THUMB_HEIGHT = 60
DETAIL_THUMB_HEIGHT = 300
# Re-running preprocessing from the admin happens inside the request: keep it small.
ADMIN_PREPROCESS_LIMIT = 200
# A broken file can skip every row; the page stays readable with the first few hundred.
SKIPPED_ROWS_SHOWN = 500


def poster_url(poster: Poster | None) -> str:
    """Poster.display_url; "" when there is no poster."""
    return poster.display_url if poster is not None else ""


def poster_img(poster: Poster | None, height: int):
    url = poster_url(poster)
    if not url:
        return "—"
    return format_html('<img src="{}" alt="poster" loading="lazy" style="height:{}px;width:auto;">', url, height)


def movie_poster(movie: Movie) -> Poster | None:
    try:
        return movie.poster  # select_related("poster") caches a missing poster as None: no query
    except Poster.DoesNotExist:
        return None


# --- filters -----------------------------------------------------------------------------


class DecadeFilter(admin.SimpleListFilter):
    title = "release decade"
    parameter_name = "decade"

    def lookups(self, request, model_admin):
        years = Movie.objects.exclude(year=None).values_list("year", flat=True).order_by()
        decades = sorted({year // 10 * 10 for year in years.distinct()}, reverse=True)
        return [(str(d), f"{d}s") for d in decades] + [("none", "Unknown")]

    def queryset(self, request, queryset):
        value = self.value()
        if value == "none":
            return queryset.filter(year=None)
        if value and value.isdigit():
            start = int(value)
            return queryset.filter(year__gte=start, year__lt=start + 10)
        return queryset


class PosterStatusFilter(admin.SimpleListFilter):
    title = "poster status"
    parameter_name = "poster_status"

    def lookups(self, request, model_admin):
        return [*Poster.Status.choices, ("none", "No poster record")]

    def queryset(self, request, queryset):
        value = self.value()
        if value == "none":
            return queryset.filter(poster__isnull=True)
        if value in Poster.Status.values:
            return queryset.filter(poster__status=value)
        return queryset


class GrayscaleFilter(admin.SimpleListFilter):
    title = "grayscale poster"
    parameter_name = "grayscale"

    def lookups(self, request, model_admin):
        return [("yes", "Yes"), ("no", "No")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(poster__is_grayscale=True)
        if self.value() == "no":
            return queryset.filter(poster__is_grayscale=False)
        return queryset


class DuplicateFilter(admin.SimpleListFilter):
    title = "duplicate"
    parameter_name = "duplicate"

    def lookups(self, request, model_admin):
        return [("yes", "Is a duplicate"), ("no", "Not a duplicate")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(duplicate_of__isnull=False)
        if self.value() == "no":
            return queryset.filter(duplicate_of__isnull=True)
        return queryset


class PosterDuplicateFilter(admin.SimpleListFilter):
    title = "near-duplicate poster"
    parameter_name = "poster_duplicate"

    def lookups(self, request, model_admin):
        return [("yes", "Poster like an earlier movie's"), ("no", "No")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(poster_duplicate_of__isnull=False)
        if self.value() == "no":
            return queryset.filter(poster_duplicate_of__isnull=True)
        return queryset


# --- genres ------------------------------------------------------------------------------


@admin.register(Genre)
class GenreAdmin(admin.ModelAdmin):
    list_display = ("name", "slug", "tmdb_id", "movie_count")
    search_fields = ("name", "slug")
    prepopulated_fields = {"slug": ("name",)}

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(movie_count=Count("labels"))

    @admin.display(description="movies", ordering="movie_count")
    def movie_count(self, genre):
        return genre.movie_count


# --- movies ------------------------------------------------------------------------------


class MovieAdminForm(forms.ModelForm):
    """Adds a genre picker that saves through set_labels (audited), with an optional reason."""

    genre_labels = forms.ModelMultipleChoiceField(
        queryset=Genre.objects.all(),
        required=False,
        label="Genres",
        widget=admin.widgets.FilteredSelectMultiple("genres", is_stacked=False),
        help_text="Saved as a person's label change, with an entry in the label history.",
    )
    label_reason = forms.CharField(
        required=False, max_length=500, label="Reason for label change", help_text="Optional; kept in the history."
    )
    # The label version the picker was filled from: a save that started earlier is refused.
    labels_from_version = forms.IntegerField(required=False, min_value=0, widget=forms.HiddenInput)

    class Meta:
        model = Movie
        fields = "__all__"  # noqa: DJ007 - the ModelAdmin's fieldsets choose what is shown

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.fields["genre_labels"].initial = list(
                Genre.objects.filter(labels__movie=self.instance).values_list("pk", flat=True)
            )
            self.fields["labels_from_version"].initial = self.instance.label_version


class MovieGenreInline(admin.TabularInline):
    model = MovieGenre
    extra = 0
    fields = ("genre", "source", "set_by", "created_at")
    readonly_fields = fields
    can_delete = False
    verbose_name = "current label"
    verbose_name_plural = "current labels (change them with the genre picker above)"

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("genre", "set_by")


class LabelChangeInline(admin.TabularInline):
    model = LabelChange
    extra = 0
    fields = ("created_at", "action", "genre", "origin", "user", "reason")
    readonly_fields = fields
    can_delete = False
    ordering = ("-created_at", "-id")
    verbose_name = "label change"
    verbose_name_plural = "label history (append-only)"

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("genre", "user")


@admin.register(Movie)
class MovieAdmin(admin.ModelAdmin):
    form = MovieAdminForm
    list_display = (
        "thumbnail",
        "title",
        "year",
        "genre_names",
        "source_name",
        "label_source",
        "poster_status",
        "poster_grayscale",
        "missing_overview",
        "missing_genres",
        "excluded_from_training",
    )
    list_display_links = ("thumbnail", "title")
    list_filter = (
        "source",
        "label_source",
        DecadeFilter,
        PosterStatusFilter,
        GrayscaleFilter,
        "missing_overview",
        "missing_genres",
        "excluded_from_training",
        DuplicateFilter,
        PosterDuplicateFilter,
        ("genres", admin.RelatedOnlyFieldListFilter),
    )
    search_fields = ("title", "original_title", "imdb_id", "=tmdb_id", "source_id")
    list_select_related = ("poster",)
    list_per_page = 50
    show_full_result_count = False  # COUNT(*) over a large filtered catalogue is slow; not needed
    readonly_fields = (
        "poster_preview",
        "poster_details",
        "label_source",
        "label_version",
        "missing_overview",
        "missing_genres",
        "duplicate_of",
        "poster_duplicate_of",
        "excluded_from_training",
        "exclusion_reason",
        "created_at",
        "updated_at",
    )
    fieldsets = (
        (None, {"fields": ("poster_preview", "title", "original_title", "overview")}),
        (
            "Genres",
            {"fields": ("genre_labels", "label_reason", "labels_from_version", "label_source", "label_version")},
        ),
        (
            "Details",
            {
                "fields": (
                    ("year", "release_date"),
                    ("tmdb_id", "imdb_id"),
                    ("source", "source_id"),
                    ("original_language", "popularity"),
                )
            },
        ),
        (
            "Preprocessing (set by preprocess_posters)",
            {
                "fields": (
                    "poster_details",
                    ("missing_overview", "missing_genres"),
                    ("excluded_from_training", "exclusion_reason"),
                    ("duplicate_of", "poster_duplicate_of"),
                )
            },
        ),
        ("Timestamps", {"fields": ("created_at", "updated_at"), "classes": ("collapse",)}),
    )
    inlines = [MovieGenreInline, LabelChangeInline]

    def get_queryset(self, request):
        labels = MovieGenre.objects.select_related("genre").order_by("genre__name")
        return (
            super().get_queryset(request).select_related("poster").prefetch_related(Prefetch("labels", queryset=labels))
        )

    @admin.display(description="poster")
    def thumbnail(self, movie):
        return poster_img(movie_poster(movie), LIST_THUMB_HEIGHT)

    @admin.display(description="poster")
    def poster_preview(self, movie):
        return poster_img(movie_poster(movie), DETAIL_THUMB_HEIGHT)

    @admin.display(description="genres")
    def genre_names(self, movie):
        return ", ".join(label.genre.name for label in movie.labels.all()) or "—"

    @admin.display(description="source", ordering="source")
    def source_name(self, movie):
        return movie.source_label  # the import registry's label (Movie.source has no choices)

    @admin.display(description="poster status", ordering="poster__status")
    def poster_status(self, movie):
        poster = movie_poster(movie)
        return poster.get_status_display() if poster else "no poster"

    @admin.display(description="gray", boolean=True, ordering="poster__is_grayscale")
    def poster_grayscale(self, movie):
        poster = movie_poster(movie)
        return poster.is_grayscale if poster else None

    @admin.display(description="poster")
    def poster_details(self, movie):
        poster = movie_poster(movie)
        if poster is None:
            return "no poster record"
        return format_html(
            '<a href="{}">{}</a>: {}x{} {}, grayscale: {}{}',
            reverse("admin:catalog_poster_change", args=[poster.pk]),
            poster.get_status_display(),
            poster.width or "?",
            poster.height or "?",
            poster.image_mode or "",
            "yes" if poster.is_grayscale else "no",
            f" — {poster.error}" if poster.error else "",
        )

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        wanted = set(form.cleaned_data.get("genre_labels") or [])
        current = set(Genre.objects.filter(labels__movie=form.instance))
        if wanted != current:  # set_labels marks the set as person-curated: only call on a real change
            try:
                diff = set_labels(
                    form.instance,
                    wanted,
                    origin=LabelOrigin.PERSON,
                    user=request.user,
                    reason=form.cleaned_data.get("label_reason", ""),
                    expected_version=form.cleaned_data.get("labels_from_version"),
                )
            except StaleLabels as stale:
                self.message_user(
                    request, f"Labels not saved: {stale} Open the movie again to redo the change.", messages.ERROR
                )
                return
            self.message_user(
                request,
                f"Labels: added {', '.join(diff.added) or 'none'}; removed {', '.join(diff.removed) or 'none'}.",
                messages.SUCCESS,
            )


# --- posters -----------------------------------------------------------------------------


@admin.register(Poster)
class PosterAdmin(admin.ModelAdmin):
    list_display = (
        "thumbnail",
        "movie",
        "status",
        "is_grayscale",
        "width",
        "height",
        "image_mode",
        "derivative_size",
        "processed_at",
    )
    list_display_links = ("thumbnail", "movie")
    list_filter = ("status", "is_grayscale", "image_mode", "movie__source")
    search_fields = ("movie__title", "=movie__id", "checksum", "error")
    list_select_related = ("movie",)
    list_per_page = 50
    show_full_result_count = False
    actions = ["reprocess"]
    fields = (
        "preview",
        "movie_link",
        "status",
        "error",
        "is_grayscale",
        ("width", "height", "image_mode"),
        "original",
        "source_url",
        "checksum",
        "derivative",
        ("derivative_size", "derivative_checksum"),
        "processing_key",
        ("processed_at", "created_at", "updated_at"),
    )
    readonly_fields = flatten_fieldsets([(None, {"fields": fields})])

    def has_add_permission(self, request):
        return False  # posters come from importers (catalog.posters.store_original)

    @admin.display(description="poster")
    def thumbnail(self, poster):
        return poster_img(poster, LIST_THUMB_HEIGHT)

    @admin.display(description="preview")
    def preview(self, poster):
        return poster_img(poster, DETAIL_THUMB_HEIGHT)

    @admin.display(description="movie")
    def movie_link(self, poster):
        url = reverse("admin:catalog_movie_change", args=[poster.movie_id])
        return format_html('<a href="{}">{}</a>', url, poster.movie)

    @admin.action(description="Re-run preprocessing for the selected posters (force)")
    def reprocess(self, request, queryset):
        from .preprocessing import preprocess_posters

        movie_ids = list(queryset.values_list("movie_id", flat=True)[: ADMIN_PREPROCESS_LIMIT + 1])
        if len(movie_ids) > ADMIN_PREPROCESS_LIMIT:
            self.message_user(
                request,
                f"Select at most {ADMIN_PREPROCESS_LIMIT} posters here; queue a preprocessing job for more.",
                messages.ERROR,
            )
            return
        summary = preprocess_posters(movie_ids=movie_ids, force=True)
        posters = summary["posters"]
        self.message_user(
            request,
            f"Re-processed {posters['total']} posters: {posters['changed']} changed, "
            f"{posters['ok']} ok, {posters['corrupt']} corrupt, {posters['missing']} missing, "
            f"{posters['too_small']} too small.",
            messages.SUCCESS,
        )


# --- labels and history (read-only) ------------------------------------------------------


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(MovieGenre)
class MovieGenreAdmin(ReadOnlyAdmin):
    """Current labels, for searching; edit them on the movie page (audited)."""

    list_display = ("movie", "genre", "source", "set_by", "created_at")
    list_filter = ("source", "genre")
    search_fields = ("movie__title", "genre__name")
    list_select_related = ("movie", "genre", "set_by")
    show_full_result_count = False


@admin.register(LabelChange)
class LabelChangeAdmin(ReadOnlyAdmin):
    """Append-only history: nobody may change or delete an entry, superusers included."""

    list_display = ("created_at", "movie", "action", "genre", "origin", "user", "reason")
    list_filter = ("action", "origin", "genre")
    search_fields = ("movie__title", "reason", "user__username")
    list_select_related = ("movie", "genre", "user")
    date_hierarchy = "created_at"
    show_full_result_count = False


@admin.register(ChangeSet)
class ChangeSetAdmin(ReadOnlyAdmin):
    """Bulk changes and their undo (made on the catalog page or the API, never here)."""

    list_display = (
        "id",
        "kind",
        "summary",
        "user",
        "status",
        "matched",
        "changed",
        "unchanged",
        "skipped",
        "created_at",
    )
    list_filter = ("kind", "status")
    search_fields = ("description", "user__username")
    list_select_related = ("user", "undoes")
    date_hierarchy = "created_at"


@admin.register(ImportRun)
class ImportRunAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "kind_name",
        "status",
        "created",
        "updated",
        "unchanged",
        "skipped",
        "posters_stored",
        "started_at",
        "finished_at",
    )
    list_filter = ("kind", "status")
    search_fields = ("=id", "error")
    fields = (
        ("kind", "status"),
        "params",
        ("created", "updated", "unchanged", "skipped", "posters_stored"),
        ("started_at", "finished_at"),
        "error",
        "warning_list",
        "skipped_rows_table",
    )
    readonly_fields = flatten_fieldsets([(None, {"fields": fields})])

    @admin.display(description="kind", ordering="kind")
    def kind_name(self, run):
        return run.kind_label

    @admin.display(description="warnings")
    def warning_list(self, run):
        warnings = run.warnings or []
        if not warnings:
            return "—"
        return format_html("<ul>{}</ul>", format_html_join("", "<li>{}</li>", ((w,) for w in warnings)))

    @admin.display(description="skipped rows")
    def skipped_rows_table(self, run):
        rows = run.skipped_rows or []
        if not rows:
            return "—"
        shown = rows[:SKIPPED_ROWS_SHOWN]
        body = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td></tr>",
            ((row.get("row", "?"), row.get("reason", row)) if isinstance(row, dict) else ("?", row) for row in shown),
        )
        more = f"… and {len(rows) - len(shown)} more rows not shown" if len(rows) > len(shown) else ""
        return format_html(
            "<table><thead><tr><th>row</th><th>reason</th></tr></thead><tbody>{}</tbody></table>{}", body, more
        )
