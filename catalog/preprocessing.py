"""Poster preprocessing and catalogue clean-up before training.

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

import hashlib
import io
import logging
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone
from PIL import Image

from base.params import bool_field, id_list_field, int_field
from base.progress import Progress, scaled

from .images import GRAYSCALE_MODES, ImageRejected, decode_image, to_gray, to_rgb
from .models import Movie, Poster, derivative_upload_to

logger = logging.getLogger(__name__)

GRAYSCALE_POLICIES = ("keep", "convert", "exclude")
POSTER_BATCH_SIZE = 100
MOVIE_BATCH_SIZE = 500
DERIVATIVE_JPEG_QUALITY = 90
# Share of the progress bar for the poster pass (decoding dominates the run time).
POSTER_PASS_SHARE = 0.95
# Bump when the derivative recipe changes, so existing derivatives are rebuilt once.
RECIPE_VERSION = "1"
EXCLUSION_REASON_MAX = Movie._meta.get_field("exclusion_reason").max_length


def normalise_title(title: str) -> str:
    """Title reduced for duplicate detection: accents, case, punctuation and articles removed.

    "The Matrix", "Matrix, The" and "the matrix!" all become "matrix"; "Amélie" == "Amelie".
    """
    text = unicodedata.normalize("NFKD", title or "")
    text = "".join(ch for ch in text if not unicodedata.combining(ch)).casefold()
    text = text.replace("&", " and ")
    text = re.sub(r"[\W_]+", " ", text).strip()
    words = text.split()
    if len(words) > 1 and words[0] in {"the", "a", "an"}:
        words = words[1:]
    elif len(words) > 1 and words[-1] in {"the", "a", "an"}:  # "Matrix, The" catalogue style
        words = words[:-1]
    return " ".join(words)


def derivative_mode(*, original_mode: str, is_grayscale: bool, policy: str) -> str:
    """Pillow mode of the training derivative: "L" only for one-channel originals under ``keep``."""
    if policy == "keep" and is_grayscale and original_mode in GRAYSCALE_MODES:
        return "L"
    return "RGB"


def processing_key(*, checksum: str, is_grayscale: bool, policy: str, size: int, min_side: int, max_pixels: int) -> str:
    """What a poster's preprocessing result depends on. The policy only matters for grayscale posters."""
    policy_part = policy if is_grayscale else "-"
    return f"v{RECIPE_VERSION}:{checksum}:d{size}:m{min_side}:p{max_pixels}:g{policy_part}"


def build_derivative(image: Image.Image, *, size: int, mode: str) -> bytes:
    """JPEG bytes of ``image`` with its shorter side scaled down to ``size`` (never up)."""
    converted = to_gray(image) if mode == "L" else to_rgb(image)
    width, height = converted.size
    shorter = min(width, height)
    if shorter > size:
        scale = size / shorter
        target = (max(1, round(width * scale)), max(1, round(height * scale)))
        converted = converted.resize(target, Image.Resampling.LANCZOS, reducing_gap=3.0)
    buffer = io.BytesIO()
    converted.save(buffer, "JPEG", quality=DERIVATIVE_JPEG_QUALITY)
    return buffer.getvalue()


@dataclass
class _Settings:
    policy: str
    size: int
    min_side: int
    max_pixels: int
    force: bool


@dataclass
class _PosterCounts:
    total: int = 0
    skipped_unchanged: int = 0
    changed: int = 0
    unchanged: int = 0
    derivatives_written: int = 0
    storage_errors: int = 0
    errors: list[dict] = field(default_factory=list)


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
    opts = _Settings(
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

    poster_counts = _run_poster_pass(posters, opts, scaled(report, 0.0, POSTER_PASS_SHARE))
    report("Refreshing movie flags", POSTER_PASS_SHARE)
    movie_summary = _run_movie_pass(
        movies, opts, min_year=min_year, max_year=max_year, dedupe=dedupe, report=scaled(report, POSTER_PASS_SHARE, 1.0)
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


# --- posters -----------------------------------------------------------------------------


def _run_poster_pass(posters, opts: _Settings, report: Progress) -> _PosterCounts:
    counts = _PosterCounts()
    poster_ids = list(posters.values_list("id", flat=True))
    counts.total = len(poster_ids)
    report(f"Checking {counts.total} posters", 0.0)
    for start in range(0, len(poster_ids), POSTER_BATCH_SIZE):
        batch = Poster.objects.filter(id__in=poster_ids[start : start + POSTER_BATCH_SIZE]).order_by("id")
        # Decode and write files first, then all row updates in one short transaction: one
        # commit per batch instead of per poster, and the database is locked only briefly.
        pending = [update for poster in batch if (update := _process_one_poster(poster, opts, counts))]
        _apply_poster_updates(pending, counts)
        done = min(start + POSTER_BATCH_SIZE, len(poster_ids))
        report(
            f"Posters {done}/{counts.total} ({counts.changed} changed, {counts.skipped_unchanged} already done)",
            done / max(counts.total, 1),
        )
    return counts


def _expected_key(poster: Poster, opts: _Settings) -> str:
    return processing_key(
        checksum=poster.checksum,
        is_grayscale=poster.is_grayscale,
        policy=opts.policy,
        size=opts.size,
        min_side=opts.min_side,
        max_pixels=opts.max_pixels,
    )


@dataclass
class _PosterUpdate:
    poster_id: int
    original_name: str
    changed: dict
    old_derivative: str
    new_derivative: str


def _process_one_poster(poster: Poster, opts: _Settings, counts: _PosterCounts) -> _PosterUpdate | None:
    """Work out the poster's new state (writing a new derivative file if needed); None: nothing to save."""
    decoded_states = {Poster.Status.OK, Poster.Status.CORRUPT, Poster.Status.TOO_SMALL}
    if (
        not opts.force
        and poster.status in decoded_states
        and poster.checksum
        and poster.processing_key == _expected_key(poster, opts)
    ):
        counts.skipped_unchanged += 1
        return None

    storage = default_storage
    new: dict = {}
    derivative_bytes = None
    if not poster.original.name:
        # Keep the importer's reason (e.g. "no poster_path in TMDB response") when it gave one.
        reason = poster.error if poster.status == Poster.Status.MISSING and poster.error else "no poster file recorded"
        new = _failed_state(Poster.Status.MISSING, reason)
    else:
        try:
            with storage.open(poster.original.name, "rb") as handle:
                data = handle.read()
        except FileNotFoundError:
            new = _failed_state(Poster.Status.MISSING, f"file not found in storage: {poster.original.name}")
        except Exception as exc:  # S3 outage, permissions: leave the poster as it was, report it
            logger.warning("poster %s: cannot read %s: %s", poster.pk, poster.original.name, exc)
            counts.storage_errors += 1
            counts.errors.append({"poster": poster.pk, "movie": poster.movie_id, "error": f"storage: {exc}"})
            return None
        else:
            new, derivative_bytes = _decode_state(poster, data, opts)
    if new["status"] != Poster.Status.OK:
        counts.errors.append({"poster": poster.pk, "movie": poster.movie_id, "error": new["error"]})
    if new["status"] in decoded_states:
        new["processing_key"] = processing_key(
            checksum=new["checksum"],
            is_grayscale=new["is_grayscale"],
            policy=opts.policy,
            size=opts.size,
            min_side=opts.min_side,
            max_pixels=opts.max_pixels,
        )
    else:
        new["processing_key"] = ""

    old_derivative = poster.derivative.name or ""
    if derivative_bytes is not None:
        new["derivative_checksum"] = hashlib.sha256(derivative_bytes).hexdigest()
        new["derivative_size"] = len(derivative_bytes)
        wanted_name = derivative_upload_to(poster, f"{poster.movie_id}-{new['derivative_checksum'][:16]}.jpg")
        if old_derivative == wanted_name and poster.derivative_checksum == new["derivative_checksum"]:
            new["derivative"] = old_derivative  # identical content already stored: don't rewrite
        else:
            new["derivative"] = storage.save(wanted_name, ContentFile(derivative_bytes))
            counts.derivatives_written += 1
    else:
        new.update(derivative="", derivative_checksum="", derivative_size=None)

    changed = {name: value for name, value in new.items() if _current(poster, name) != value}
    if not changed:
        counts.unchanged += 1
        return None
    return _PosterUpdate(
        poster_id=poster.pk,
        original_name=poster.original.name or "",
        changed=changed,
        old_derivative=old_derivative,
        new_derivative=new["derivative"],
    )


def _apply_poster_updates(pending: list[_PosterUpdate], counts: _PosterCounts) -> None:
    if not pending:
        return
    now = timezone.now()
    lost_race: list[str] = []
    stale: list[str] = []
    try:
        with transaction.atomic():
            for update in pending:
                # Guarded on the original and derivative we saw: a concurrent re-import or a
                # second preprocessing run that got there first wins, and nothing is overwritten.
                updated = Poster.objects.filter(
                    pk=update.poster_id, original=update.original_name, derivative=update.old_derivative
                ).update(**update.changed, processed_at=now, updated_at=now)
                if updated:
                    counts.changed += 1
                    if update.old_derivative and update.old_derivative != update.new_derivative:
                        stale.append(update.old_derivative)
                elif update.new_derivative and update.new_derivative != update.old_derivative:
                    lost_race.append(update.new_derivative)
            transaction.on_commit(lambda: [_delete_quietly(name) for name in stale])
    except BaseException:
        # Nothing points at the files written for this batch: remove them, keep the old ones.
        for update in pending:
            if update.new_derivative and update.new_derivative != update.old_derivative:
                _delete_quietly(update.new_derivative)
        raise
    for name in lost_race:
        _delete_quietly(name)  # our write lost the race; don't leave an orphan file


def _current(poster: Poster, name: str):
    value = getattr(poster, name)
    if name == "derivative":
        return value.name or ""
    return value


def _failed_state(status: str, error: str, **known) -> dict:
    state = {
        "status": status,
        "error": error[:255],
        "width": None,
        "height": None,
        "image_mode": "",
        "is_grayscale": False,
    }
    state.update(known)
    return state


def _decode_state(poster: Poster, data: bytes, opts: _Settings) -> tuple[dict, bytes | None]:
    checksum = hashlib.sha256(data).hexdigest()
    try:
        decoded = decode_image(data, max_pixels=opts.max_pixels)
    except ImageRejected as exc:
        return _failed_state(Poster.Status.CORRUPT, exc.reason, checksum=checksum), None
    state = {
        "checksum": checksum,
        "width": decoded.width,
        "height": decoded.height,
        "image_mode": decoded.mode[:16],
        "is_grayscale": decoded.is_grayscale,
    }
    if decoded.min_side < opts.min_side:
        return {
            **state,
            "status": Poster.Status.TOO_SMALL,
            "error": f"too small: {decoded.width}x{decoded.height}, shorter side below {opts.min_side}px",
        }, None
    mode = derivative_mode(original_mode=decoded.mode, is_grayscale=decoded.is_grayscale, policy=opts.policy)
    derivative = build_derivative(decoded.image, size=opts.size, mode=mode)
    return {**state, "status": Poster.Status.OK, "error": ""}, derivative


def _delete_quietly(name: str) -> None:
    try:
        default_storage.delete(name)
    except Exception as exc:  # a leftover derived file is harmless; losing the run over it is not
        logger.warning("could not delete old derivative %s: %s", name, exc)


# --- movies ------------------------------------------------------------------------------


def duplicate_map() -> dict[int, int]:
    """movie id -> id of the earliest movie with the same normalised title and year."""
    first_by_key: dict[tuple[str, int], int] = {}
    duplicates: dict[int, int] = {}
    for movie_id, title, year in Movie.objects.order_by("id").values_list("id", "title", "year").iterator(2000):
        if year is None:
            continue  # without a year two same-titled films are as likely remakes as duplicates
        key = (normalise_title(title), year)
        if not key[0]:
            continue
        original = first_by_key.setdefault(key, movie_id)
        if original != movie_id:
            duplicates[movie_id] = original
    return duplicates


MOVIE_FLAG_FIELDS = (
    "missing_overview",
    "missing_genres",
    "duplicate_of_id",
    "excluded_from_training",
    "exclusion_reason",
)


def _run_movie_pass(movies, opts: _Settings, *, min_year, max_year, dedupe: bool, report: Progress) -> dict:
    duplicates = duplicate_map() if dedupe else {}
    movie_ids = list(movies.values_list("id", flat=True))
    changed = unchanged = 0
    for start in range(0, len(movie_ids), MOVIE_BATCH_SIZE):
        chunk = movie_ids[start : start + MOVIE_BATCH_SIZE]
        rows = (
            Movie.objects.filter(id__in=chunk)
            .annotate(label_count=Count("labels"))
            .values(
                "id", "overview", "year", "label_count", "poster__is_grayscale", "poster__status", *MOVIE_FLAG_FIELDS
            )
        )
        to_update = []
        now = timezone.now()
        for row in rows:
            reasons = []
            duplicate_of = duplicates.get(row["id"])
            if duplicate_of:
                reasons.append(f"duplicate of movie {duplicate_of}")
            year = row["year"]
            if min_year is not None or max_year is not None:
                if year is None:
                    reasons.append("year unknown (year filter set)")
                elif (min_year is not None and year < min_year) or (max_year is not None and year > max_year):
                    reasons.append(f"year {year} outside {min_year or ''}-{max_year or ''}")
            if opts.policy == "exclude" and row["poster__is_grayscale"] and row["poster__status"] == Poster.Status.OK:
                reasons.append("grayscale poster")
            wanted = {
                "missing_overview": not (row["overview"] or "").strip(),
                "missing_genres": row["label_count"] == 0,
                "duplicate_of_id": duplicate_of,
                "excluded_from_training": bool(reasons),
                "exclusion_reason": "; ".join(reasons)[:EXCLUSION_REASON_MAX],
            }
            if all(row[name] == wanted[name] for name in MOVIE_FLAG_FIELDS):
                unchanged += 1
                continue
            to_update.append(Movie(id=row["id"], updated_at=now, **wanted))
        if to_update:
            with transaction.atomic():
                Movie.objects.bulk_update(to_update, [*MOVIE_FLAG_FIELDS, "updated_at"])
            changed += len(to_update)
        done = min(start + MOVIE_BATCH_SIZE, len(movie_ids))
        report(
            f"Movies {done}/{len(movie_ids)} ({changed} changed)",
            done / max(len(movie_ids), 1),
        )
    flags = movies.aggregate(
        missing_overview=Count("id", filter=Q(missing_overview=True)),
        missing_genres=Count("id", filter=Q(missing_genres=True)),
        duplicates=Count("id", filter=Q(duplicate_of__isnull=False)),
        excluded_from_training=Count("id", filter=Q(excluded_from_training=True)),
        without_poster=Count("id", filter=Q(poster__isnull=True)),
    )
    return {"total": len(movie_ids), "changed": changed, "unchanged": unchanged, **flags}


def preprocess_param_errors(params: dict, errors: dict) -> None:
    """Check ``preprocess_posters`` arguments given as JSON (a job's parameters)."""
    id_list_field(params, "movie_ids", errors)
    min_year = int_field(params, "min_year", errors, minimum=1870, maximum=2200)
    max_year = int_field(params, "max_year", errors, minimum=1870, maximum=2200)
    if min_year and max_year and min_year > max_year and "min_year" not in errors:
        errors["min_year"] = "Must not be after max_year."
    for flag in ("dedupe", "force"):
        bool_field(params, flag, errors)
    policy = params.get("grayscale_policy")
    if policy is not None and policy not in GRAYSCALE_POLICIES:
        errors["grayscale_policy"] = "Must be keep, convert or exclude."
