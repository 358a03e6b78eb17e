"""Catalog: genres, movies, posters, genre labels with provenance, and label history."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.text import slugify

from base.runs import RunStatus


class Genre(models.Model):
    tmdb_id = models.PositiveIntegerField(unique=True, null=True, blank=True)
    name = models.CharField(max_length=64, unique=True)
    slug = models.SlugField(max_length=64, unique=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def save(self, *args, **kwargs):
        if not self.slug:
            self.slug = slugify(self.name)
        super().save(*args, **kwargs)


def validate_source(value: str) -> None:
    """Movie.source and ImportRun.kind hold a registered import kind (catalog.importers.registry),
    or "manual" for a movie entered by hand. No ``choices=``: the registry is the one list, and a
    new source needs no migration."""
    from django.core.exceptions import ValidationError

    from .importers import registry

    if not registry.is_movie_source(value):
        known = ", ".join([registry.MANUAL_SOURCE, *(entry.kind for entry in registry.importers())])
        raise ValidationError(f"{value!r} is not an import source; choose one of {known}")


def source_label(value: str) -> str:
    from .importers import registry

    return registry.source_label(value)


class LabelOrigin(models.TextChoices):
    """Where labels came from, one vocabulary for the label history (LabelChange.origin), each
    current label (MovieGenre.source) and a movie's label set as a whole (Movie.label_source)."""

    IMPORTED = "imported", "Imported from a source"
    PERSON = "person", "Set by a person"
    SUGGESTION = "suggestion", "Accepted model suggestion"


# A current label and a label set are imported or a person's: accepting a model suggestion is a
# person's choice (LabelChange.origin keeps that it was a suggestion).
LABEL_SET_ORIGINS = [(value, label) for value, label in LabelOrigin.choices if value != LabelOrigin.SUGGESTION]


# A movie entered by hand (the admin, seed data); every other Movie.source is an import kind.
MANUAL_SOURCE = "manual"


class Movie(models.Model):
    tmdb_id = models.PositiveIntegerField(unique=True, null=True, blank=True)
    imdb_id = models.CharField(max_length=16, unique=True, null=True, blank=True)
    title = models.CharField(max_length=512, db_index=True)
    original_title = models.CharField(max_length=512, blank=True)
    overview = models.TextField(blank=True)
    release_date = models.DateField(null=True, blank=True)
    year = models.PositiveSmallIntegerField(null=True, blank=True, db_index=True)
    original_language = models.CharField(max_length=16, blank=True)
    popularity = models.FloatField(null=True, blank=True)
    source = models.CharField(max_length=16, default=MANUAL_SOURCE, validators=[validate_source])
    source_id = models.CharField(max_length=128, blank=True)
    # Provenance of the current label set as a whole: once a person has edited the
    # labels, re-imports leave them alone and snapshots prefer them.
    label_source = models.CharField(
        max_length=16, choices=LABEL_SET_ORIGINS, default=LabelOrigin.IMPORTED, db_index=True
    )
    # Goes up by one with every change of the label set, in the same transaction (only
    # catalog.labels writes it): a write that started from an older version is refused.
    label_version = models.PositiveIntegerField(default=0)
    genres = models.ManyToManyField(Genre, through="MovieGenre", related_name="movies", blank=True)
    # Curation flags (catalog.curation keeps them current).
    missing_overview = models.BooleanField(default=False, db_index=True)
    missing_genres = models.BooleanField(default=False, db_index=True)
    duplicate_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="duplicates"
    )
    # Set by catalog.curation.set_poster_duplicates (ml's flag_near_duplicate_posters: poster
    # vectors at cosine >= a threshold); a flag for review, not an exclusion.
    poster_duplicate_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="poster_duplicates"
    )
    excluded_from_training = models.BooleanField(default=False, db_index=True)
    exclusion_reason = models.CharField(max_length=128, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-popularity", "title", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["source", "source_id"],
                condition=~Q(source_id=""),
                name="movie_unique_source_id",
            )
        ]
        indexes = [
            models.Index(fields=["source", "source_id"]),
            # The browse page and the movie API list in Meta.ordering: page 1 of 100k movies
            # reads 48 index entries instead of sorting the table.
            models.Index(fields=["-popularity", "title", "id"], name="movie_browse_order_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.title} ({self.year})" if self.year else self.title

    def save(self, *args, **kwargs):
        # The label state changes only under the row lock in catalog.labels. A plain save()
        # of an instance loaded earlier (the admin's change form, a script) must not write
        # its stale copy back: that would undo a person's claim or roll the version back.
        if kwargs.get("update_fields") is None and not self._state.adding and not kwargs.get("force_insert"):
            kwargs["update_fields"] = [
                f.name for f in self._meta.concrete_fields if not f.primary_key and f.name not in LABEL_STATE_FIELDS
            ]
        super().save(*args, **kwargs)

    @property
    def source_label(self) -> str:
        return source_label(self.source)


LABEL_STATE_FIELDS = ("label_source", "label_version")


def poster_upload_to(instance: Poster, filename: str) -> str:
    return f"posters/original/{instance.movie_id % 1000:03d}/{filename}"


def derivative_upload_to(instance: Poster, filename: str) -> str:
    return f"posters/derived/{instance.movie_id % 1000:03d}/{filename}"


class PosterQuerySet(models.QuerySet):
    def usable(self) -> PosterQuerySet:
        """Posters a model may use: decoded fine (status ok) and with a resized derivative.
        The one definition, for snapshots, training data and inference."""
        return self.filter(status=Poster.Status.OK).exclude(derivative="")


class Poster(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "Not checked yet"
        OK = "ok", "OK"
        MISSING = "missing", "Missing"
        CORRUPT = "corrupt", "Corrupt"
        TOO_SMALL = "too_small", "Too small"

    movie = models.OneToOneField(Movie, on_delete=models.CASCADE, related_name="poster")
    original = models.FileField(upload_to=poster_upload_to, max_length=255, blank=True)
    source_url = models.URLField(max_length=500, blank=True)
    checksum = models.CharField(max_length=64, blank=True, db_index=True)  # sha256 of original bytes
    width = models.PositiveIntegerField(null=True, blank=True)
    height = models.PositiveIntegerField(null=True, blank=True)
    image_mode = models.CharField(max_length=16, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING, db_index=True)
    is_grayscale = models.BooleanField(default=False, db_index=True)
    error = models.CharField(max_length=255, blank=True)
    derivative = models.FileField(upload_to=derivative_upload_to, max_length=255, blank=True)
    derivative_size = models.PositiveIntegerField(null=True, blank=True)
    derivative_checksum = models.CharField(max_length=64, blank=True)
    # What the current preprocessing result was computed from: original checksum plus the
    # settings that shape it (see catalog.poster_processing.processing_key). A poster whose key
    # still matches is skipped, so a second run rewrites nothing.
    processing_key = models.CharField(max_length=160, blank=True)
    processed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = PosterQuerySet.as_manager()

    def __str__(self) -> str:
        return f"Poster of {self.movie_id} ({self.status})"

    @property
    def display_url(self) -> str:
        """The one URL to show this poster: resized derivative first, else the original; ""
        when neither exists. Local files go through catalog.views.poster_file (checks that the
        user may read the catalog); other storages (S3) give a signed URL that expires after
        GENREWEB_MEDIA_URL_TTL_S seconds."""
        from django.core.files.storage import FileSystemStorage
        from django.urls import reverse

        for file in (self.derivative, self.original):
            if not (file and file.name):
                continue
            if isinstance(file.storage, FileSystemStorage):
                return reverse("poster-file", kwargs={"name": file.name})
            try:
                return file.storage.url(file.name)
            except Exception:  # noqa: BLE001 - a storage that cannot build URLs must not break a page
                return ""
        return ""


class MovieGenre(models.Model):
    """A current genre label of a movie, with where it came from."""

    movie = models.ForeignKey(Movie, on_delete=models.CASCADE, related_name="labels")
    genre = models.ForeignKey(Genre, on_delete=models.PROTECT, related_name="labels")
    source = models.CharField(max_length=16, choices=LABEL_SET_ORIGINS, default=LabelOrigin.IMPORTED)
    set_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["movie", "genre"], name="moviegenre_unique")]
        indexes = [models.Index(fields=["genre", "movie"])]

    def __str__(self) -> str:
        return f"{self.movie_id}:{self.genre_id} ({self.source})"


class AppendOnlyError(Exception):
    pass


class ChangeSet(models.Model):
    """One bulk label change (or the undo of one) over many movies, audited as a whole: who,
    when, why, what it was applied to, and what came of it. Its LabelChange rows (the per-movie
    audit entries, ``changes``) say exactly what it changed; an undo reverts those and nothing
    else (catalog.bulk)."""

    class Kind(models.TextChoices):
        BULK = "bulk", "Bulk change"
        UNDO = "undo", "Undo"

    Status = RunStatus

    kind = models.CharField(max_length=8, choices=Kind.choices)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="label_change_sets"
    )
    description = models.CharField(max_length=500, blank=True)
    # What it was applied to: {"filter": {query parameters}} or {"ids": [movie ids]}; an undo:
    # {"change_set": id}.
    selection = models.JSONField(default=dict, blank=True)
    add = models.JSONField(default=list, blank=True)  # genre names to add (an undo: empty)
    remove = models.JSONField(default=list, blank=True)  # genre names to remove
    # The change set this one reverted (kind undo); an undo may itself be undone (a redo).
    undoes = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="undone_by")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RUNNING)
    matched = models.PositiveIntegerField(default=0)  # movies looked at
    changed = models.PositiveIntegerField(default=0)  # movies whose labels it changed
    unchanged = models.PositiveIntegerField(default=0)  # movies whose labels already matched
    skipped = models.PositiveIntegerField(default=0)  # movies (partly) left alone: changed since (undo) or gone
    labels_added = models.PositiveIntegerField(default=0)
    labels_removed = models.PositiveIntegerField(default=0)
    # The first SKIPPED_DETAIL_LIMIT skipped movies: [{"movie": id, "title": ..., "genres": [...], "reason": ...}].
    skipped_detail = models.JSONField(default=list, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)  # each committed batch moves it
    finished_at = models.DateTimeField(null=True, blank=True)

    SKIPPED_DETAIL_LIMIT = 1000

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.get_kind_display().lower()} #{self.pk}"

    @property
    def summary(self) -> str:
        """What it did, in a few words: "add Comedy; remove Drama", "undo of bulk change #3"."""
        if self.kind == self.Kind.UNDO:
            return f"undo of {self.undoes}" if self.undoes_id else "undo"
        parts = [
            f"add {', '.join(self.add)}" if self.add else "",
            f"remove {', '.join(self.remove)}" if self.remove else "",
        ]
        return "; ".join(p for p in parts if p)

    @property
    def selection_text(self) -> str:
        """What it was applied to, in words."""
        if "ids" in self.selection:
            n = len(self.selection["ids"])
            return f"{n} checked movie{'' if n == 1 else 's'}"
        if "filter" in self.selection:
            given = {k: v for k, v in self.selection["filter"].items() if v not in ("", None)}
            if not given:
                return "the whole catalog"
            return "all matching " + ", ".join(f"{k}={v}" for k, v in sorted(given.items()))
        if "change_set" in self.selection:
            return f"the movies #{self.selection['change_set']} changed"
        return ""


class LabelChange(models.Model):
    """Append-only history of label changes: who, when, added/removed, why (and, for a bulk
    change or an undo, which change set)."""

    class Action(models.TextChoices):
        ADDED = "added", "Added"
        REMOVED = "removed", "Removed"

    movie = models.ForeignKey(Movie, on_delete=models.CASCADE, related_name="label_history")
    genre = models.ForeignKey(Genre, on_delete=models.PROTECT, related_name="+")
    action = models.CharField(max_length=8, choices=Action.choices)
    origin = models.CharField(max_length=16, choices=LabelOrigin.choices)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="label_changes"
    )
    reason = models.CharField(max_length=500, blank=True)
    change_set = models.ForeignKey(
        ChangeSet, null=True, blank=True, on_delete=models.PROTECT, related_name="changes", db_index=False
    )  # indexed with movie below
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["movie", "-created_at"]),
            # an undo walks a change set's rows movie by movie
            models.Index(fields=["change_set", "movie"], name="labelchange_set_movie_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.action} {self.genre_id} on {self.movie_id}"

    def save(self, *args, **kwargs):
        if self.pk is not None:
            raise AppendOnlyError("Label history is append-only; entries cannot be changed.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AppendOnlyError("Label history is append-only; entries cannot be deleted.")


class ImportRun(models.Model):
    """One run of an importer, with its summary (created, updated, skipped with reasons)."""

    # The one run vocabulary (base.runs); an import starts running, so it is never "queued".
    Status = RunStatus

    kind = models.CharField(max_length=16, validators=[validate_source])
    params = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RUNNING)
    created = models.PositiveIntegerField(default=0)
    updated = models.PositiveIntegerField(default=0)
    unchanged = models.PositiveIntegerField(default=0)
    skipped = models.PositiveIntegerField(default=0)
    posters_stored = models.PositiveIntegerField(default=0)
    skipped_rows = models.JSONField(default=list, blank=True)  # [{"row": n, "reason": "..."}]
    # Things worth knowing that skipped no row, e.g. "not UTF-8, decoded as cp1252".
    warnings = models.JSONField(default=list, blank=True)
    error = models.TextField(blank=True)
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-started_at"]

    def __str__(self) -> str:
        return f"{self.kind} import #{self.pk} ({self.status})"

    @property
    def kind_label(self) -> str:
        return source_label(self.kind)
