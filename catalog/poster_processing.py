"""Poster preprocessing: decode each stored original, set its status and flags, build its derivative.

Read through the storage API (works on S3), decoded with ``catalog.images.decode_image``, the
status is ``missing`` (no file), ``corrupt`` (not an image, truncated, or over the pixel
limit), ``too_small`` (shorter side below ``GENREWEB_POSTER_MIN_SIDE``) or ``ok``. For ``ok``
posters the training derivative is written: shorter side scaled down to
``GENREWEB_POSTER_DERIVATIVE_SIZE`` keeping the aspect ratio (never upscaled), JPEG quality
90, stored under a content-addressed name. ``catalog.preprocessing`` runs this pass first.

Idempotent: each poster records a ``processing_key`` (original checksum + the settings that
shape the result); a poster whose key still matches is skipped unless ``force``. Fields and
files are only written when their value changes. Each batch is one transaction.
"""

from __future__ import annotations

import hashlib
import io
import logging
from dataclasses import dataclass, field

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction
from django.utils import timezone
from PIL import Image

from base.progress import Progress

from .images import GRAYSCALE_MODES, ImageRejected, decode_image, to_gray, to_rgb
from .models import Poster, derivative_upload_to

logger = logging.getLogger(__name__)


POSTER_BATCH_SIZE = 100
DERIVATIVE_JPEG_QUALITY = 90
# Bump when the derivative recipe changes, so existing derivatives are rebuilt once.
RECIPE_VERSION = "1"


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
class PosterSettings:
    policy: str
    size: int
    min_side: int
    max_pixels: int
    force: bool


@dataclass
class PosterCounts:
    total: int = 0
    skipped_unchanged: int = 0
    changed: int = 0
    unchanged: int = 0
    derivatives_written: int = 0
    storage_errors: int = 0
    errors: list[dict] = field(default_factory=list)


def run_poster_pass(posters, opts: PosterSettings, report: Progress) -> PosterCounts:
    """Check every poster of ``posters`` in batches, reporting progress from 0 to 1."""
    counts = PosterCounts()
    poster_ids = list(posters.values_list("id", flat=True))
    counts.total = len(poster_ids)
    report(f"Checking {counts.total} posters", 0.0)
    for start in range(0, len(poster_ids), POSTER_BATCH_SIZE):
        batch = Poster.objects.filter(id__in=poster_ids[start : start + POSTER_BATCH_SIZE]).order_by("id")
        # Decode and write files first, then all row updates in one short transaction: one
        # commit per batch instead of per poster, and the database is locked only briefly.
        pending = [update for poster in batch if (update := _process_one_poster(poster, opts, counts))]
        apply_poster_updates(pending, counts)
        done = min(start + POSTER_BATCH_SIZE, len(poster_ids))
        report(
            f"Posters {done}/{counts.total} ({counts.changed} changed, {counts.skipped_unchanged} already done)",
            done / max(counts.total, 1),
        )
    return counts


def _expected_key(poster: Poster, opts: PosterSettings) -> str:
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


def _process_one_poster(poster: Poster, opts: PosterSettings, counts: PosterCounts) -> _PosterUpdate | None:
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


def apply_poster_updates(pending: list[_PosterUpdate], counts: PosterCounts) -> None:
    """Write a batch of computed poster updates in one transaction, each guarded on the files
    it was computed from: a poster another run changed since is left to that run (counted as
    a lost race, our new derivative deleted)."""
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


def _decode_state(poster: Poster, data: bytes, opts: PosterSettings) -> tuple[dict, bytes | None]:
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
