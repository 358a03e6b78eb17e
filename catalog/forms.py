"""Forms for browsing and relabelling the catalog."""

from __future__ import annotations

from django import forms
from django.db.models import QuerySet

from .bulk import MAX_IDS as MAX_BULK_IDS
from .models import LABEL_SET_ORIGINS, Genre, Movie, Poster
from .search import SORT_CHOICES, order_movies, query_words, search_movies

POSTER_STATUS_CHOICES = (
    [("", "any poster")]
    + list(Poster.Status.choices)
    + [
        ("grayscale", "Grayscale"),
        ("none", "No poster record"),
    ]
)


class CatalogFilterForm(forms.Form):
    """Search and filters of the catalog page (GET parameters; all optional)."""

    q = forms.CharField(required=False, max_length=200, label="Search title or overview")
    genre = forms.ModelChoiceField(
        queryset=Genre.objects.all(), required=False, to_field_name="slug", empty_label="any genre"
    )
    year_min = forms.IntegerField(required=False, min_value=1850, max_value=2100, label="from year")
    year_max = forms.IntegerField(required=False, min_value=1850, max_value=2100, label="to year")
    label_source = forms.ChoiceField(required=False, choices=[("", "any labels")] + LABEL_SET_ORIGINS)
    poster = forms.ChoiceField(required=False, choices=POSTER_STATUS_CHOICES, label="poster status")
    view = forms.ChoiceField(required=False, choices=[("grid", "Grid"), ("list", "List")])
    sort = forms.ChoiceField(
        required=False,
        choices=SORT_CHOICES,
        label="sort",
        help_text="relevance with a search, popularity without one",
    )

    def clean(self):
        cleaned = super().clean()
        lo, hi = cleaned.get("year_min"), cleaned.get("year_max")
        if lo and hi and lo > hi:
            self.add_error("year_max", "must not be before 'from year'")
        return cleaned

    def filter(self, movies: QuerySet[Movie]) -> QuerySet[Movie]:
        """Apply the valid filters and the sort (catalog.search); invalid fields are ignored
        (their errors are shown)."""
        data = self._data()
        movies = search_movies(movies, data.get("q") or "")
        if genre := data.get("genre"):
            movies = movies.filter(labels__genre=genre)
        if data.get("year_min"):
            movies = movies.filter(year__gte=data["year_min"])
        if data.get("year_max"):
            movies = movies.filter(year__lte=data["year_max"])
        if data.get("label_source"):
            movies = movies.filter(label_source=data["label_source"])
        poster = data.get("poster")
        if poster == "grayscale":
            movies = movies.filter(poster__is_grayscale=True)
        elif poster == "none":
            movies = movies.filter(poster__isnull=True)
        elif poster:
            movies = movies.filter(poster__status=poster)
        return order_movies(movies, data.get("sort"), searched=self.searched())

    def _data(self) -> dict:
        return self.cleaned_data if self.is_bound and hasattr(self, "cleaned_data") else {}

    def searched(self) -> bool:
        """Whether a query with words was given (then relevance is the default sort)."""
        return bool(query_words(self._data().get("q") or ""))


class RelabelForm(forms.Form):
    """The full new label set of one movie, the label version the page showed (a save that
    started from an older one is refused), and an optional reason for the audit trail."""

    genres = forms.ModelMultipleChoiceField(
        queryset=Genre.objects.all(), required=False, widget=forms.CheckboxSelectMultiple
    )
    label_version = forms.IntegerField(
        min_value=0,
        widget=forms.HiddenInput,
        error_messages={"required": "the page did not say which labels it started from; reload it and redo the change"},
    )
    reason = forms.CharField(required=False, max_length=500)


class BulkLabelForm(forms.Form):
    """A bulk change from the catalog page: one genre to add or remove, on the checked movies
    (``ids``) or on all movies matching the page's filter (``filter``: its query string)."""

    action = forms.ChoiceField(choices=[("add", "Add genre"), ("remove", "Remove genre")])
    genre = forms.ModelChoiceField(queryset=Genre.objects.all(), to_field_name="slug", empty_label="genre…")
    scope = forms.ChoiceField(choices=[("ids", "the checked movies"), ("filter", "all movies matching the filter")])
    ids = forms.Field(required=False, widget=forms.MultipleHiddenInput)
    filter = forms.CharField(required=False, max_length=2000)
    description = forms.CharField(required=False, max_length=500, label="note (optional)")
    confirmed = forms.BooleanField(required=False)

    def clean_ids(self):
        ids = []
        for raw in self.cleaned_data.get("ids") or []:
            try:
                ids.append(int(raw))
            except (TypeError, ValueError):
                raise forms.ValidationError(f"{raw!r} is not a movie id.") from None
        if len(ids) > MAX_BULK_IDS:
            raise forms.ValidationError(f"At most {MAX_BULK_IDS} checked movies; use “all matching this filter”.")
        return ids

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("scope") == "ids" and not cleaned.get("ids"):
            self.add_error("ids", "Check at least one movie (or choose all matching the filter).")
        return cleaned
