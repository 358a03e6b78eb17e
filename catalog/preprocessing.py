"""Poster preprocessing and catalogue clean-up before training (the posters are
``catalog.poster_processing``, the curation flags ``catalog.curation``).

``preprocess_posters`` is the one service (management command, Celery job and tests call it):

1. Posters, in batches: read the original through the storage API (works on S3), decode it
   with ``catalog.images.decode_image`` and set the status: ``missing`` (no file), ``corrupt``
   (not an image, truncated, or over the pixel limit), ``too_small`` (shorter side below
   ``GENREWEB_POSTER_MIN_SIDE``) or ``ok``. For ``ok`` posters it writes the training
   derivative: shorter side scaled down to ``GENREWEB_POSTER_DERIVATIVE_SIZE`` keeping the
   aspect ratio (never upscaled), JPEG quality 90, stored under a content-addressed name.
2. Movies, in batches: ``missing_overview``, ``missing_genres``, ``duplicate_of`` (same
   normalised title + year; the lowest id is the original) and ``excluded_from_training``
   with its reason (duplicate, outside the year filter, grayscale under the ``exclude`` policy).
   These fields are owned here: every run recomputes them from its parameters.

Grayscale policy (``GENREWEB_GRAYSCALE_POLICY``):
- ``keep``: the poster stays as it is: a one-channel original (L, LA, 1, I;16) gets a
  one-channel (L) JPEG derivative, an RGB-gray one stays RGB. Loaders must convert to RGB.
- ``convert``: the derivative is always three-channel RGB (gray replicated).
- ``exclude``: like ``convert``, and the movie is excluded from training.

Idempotent: each poster records a ``processing_key`` (original checksum + the settings that
shape the result); a poster whose key still matches is skipped unless ``force``. Fields and
files are only written when their value changes, so a second run reports zero changes and
rewrites no file. Each batch of posters and of movies is one transaction, so an
exception from ``progress`` (job cancellation) leaves every row consistent.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.conf import settings
from django.db.models import Count
from django.utils import timezone

from base.params import Param, ParamSchema
from base.progress import Progress, scaled

from .curation import run_movie_pass
from .models import Movie, Poster
from .poster_processing import PosterSettings, run_poster_pass

GRAYSCALE_POLICIES = ("keep", "convert", "exclude")  # PREPROCESS_PARAMS offers each
# Share of the progress bar for the poster pass (decoding dominates the run time).
POSTER_PASS_SHARE = 0.95


def preprocess_posters(
    *,
    movie_ids: Iterable[int] | None = None,
    grayscale_policy: str | None = None,
    min_year: int | None = None,
    max_year: int | None = None,
    dedupe: bool = True,
    force: bool = False,
    progress: Progress | None = None,
) -> dict:
    """Check every poster, build derivatives and refresh the movie flags; return a summary dict."""
    policy = (grayscale_policy or settings.GENREWEB_GRAYSCALE_POLICY or "convert").strip().lower()
    if policy not in GRAYSCALE_POLICIES:
        raise ValueError(f"unknown grayscale policy {policy!r}; choose one of {', '.join(GRAYSCALE_POLICIES)}")
    if min_year is not None and max_year is not None and min_year > max_year:
        raise ValueError(f"min_year {min_year} is after max_year {max_year}")
    opts = PosterSettings(
        policy=policy,
        size=int(settings.GENREWEB_POSTER_DERIVATIVE_SIZE),
        min_side=int(settings.GENREWEB_POSTER_MIN_SIDE),
        max_pixels=int(settings.GENREWEB_POSTER_MAX_PIXELS),
        force=force,
    )
    if opts.size < 1 or opts.min_side < 1:
        raise ValueError("GENREWEB_POSTER_DERIVATIVE_SIZE and GENREWEB_POSTER_MIN_SIDE must be positive")
    report = progress or (lambda message, fraction: None)
    started = timezone.now()
    ids = None if movie_ids is None else sorted({int(i) for i in movie_ids})

    posters = Poster.objects.order_by("id")
    movies = Movie.objects.order_by("id")
    if ids is not None:
        posters = posters.filter(movie_id__in=ids)
        movies = movies.filter(id__in=ids)

    poster_counts = run_poster_pass(posters, opts, scaled(report, 0.0, POSTER_PASS_SHARE))
    report("Refreshing movie flags", POSTER_PASS_SHARE)
    movie_summary = run_movie_pass(
        movies,
        grayscale_policy=policy,
        min_year=min_year,
        max_year=max_year,
        dedupe=dedupe,
        report=scaled(report, POSTER_PASS_SHARE, 1.0),
    )

    status_counts = dict(posters.order_by().values_list("status").annotate(n=Count("id")))
    finished = timezone.now()
    summary = {
        "grayscale_policy": policy,
        "derivative_size": opts.size,
        "min_side": opts.min_side,
        "max_pixels": opts.max_pixels,
        "min_year": min_year,
        "max_year": max_year,
        "dedupe": dedupe,
        "force": force,
        "posters": {
            "total": poster_counts.total,
            "skipped_unchanged": poster_counts.skipped_unchanged,
            "changed": poster_counts.changed,
            "unchanged": poster_counts.unchanged,
            "derivatives_written": poster_counts.derivatives_written,
            "storage_errors": poster_counts.storage_errors,
            **{status.value: status_counts.get(status.value, 0) for status in Poster.Status},
            "grayscale": posters.filter(is_grayscale=True).count(),
        },
        "movies": movie_summary,
        # A few examples, so a summary shows *why* without a trip to the admin.
        "errors": poster_counts.errors[:20],
        "seconds": round((finished - started).total_seconds(), 2),
    }
    report("Done", 1.0)
    return summary


def _year_order(params: dict, errors: dict) -> None:
    min_year, max_year = params.get("min_year"), params.get("max_year")
    if min_year and max_year and min_year > max_year:
        errors["min_year"] = "Must not be after max_year."


# The options of ``preprocess_posters`` as a job takes them (validation and the job form).
PREPROCESS_PARAMS = ParamSchema(
    (
        Param(
            "grayscale_policy",
            "choice",
            label="grayscale posters",
            choices=(
                ("keep", "keep (one-channel derivative)"),
                ("convert", "convert to RGB"),
                ("exclude", "convert and exclude the movie from training"),
            ),
            default=lambda: settings.GENREWEB_GRAYSCALE_POLICY,
            help="What to do with black-and-white posters (default: the GENREWEB_GRAYSCALE_POLICY setting).",
        ),
        Param(
            "min_year",
            "int",
            label="first release year",
            minimum=1870,
            maximum=2200,
            help="Movies released before this year are excluded from training (empty: no limit).",
        ),
        Param(
            "max_year",
            "int",
            label="last release year",
            minimum=1870,
            maximum=2200,
            help="Movies released after this year are excluded from training (empty: no limit).",
        ),
        Param(
            "dedupe",
            "bool",
            label="exclude duplicates",
            default=True,
            help="Movies with the same normalised title and year: the lowest id stays, the others are excluded.",
        ),
        Param(
            "force",
            "bool",
            label="redo every poster",
            default=False,
            help="Rebuild derivatives even when the poster and the settings are unchanged.",
        ),
        Param(
            "movie_ids",
            "ids",
            label="only these movie ids",
            help="Comma-separated ids (empty: every movie).",
        ),
    ),
    check=_year_order,
)


def preprocess_param_errors(params: dict, errors: dict) -> None:
    """Check ``preprocess_posters`` arguments given as JSON (a job's parameters)."""
    PREPROCESS_PARAMS.clean(params, errors)
