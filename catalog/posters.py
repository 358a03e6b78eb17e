"""Storing original poster files for movies (importers call this; preprocessing decodes later).

Only JPEG, PNG and WebP content is stored, under the extension of the format detected in the
bytes (never the source's name): a file named poster.jpg that holds HTML or SVG is refused, so
nothing stored as a poster can be served as a page (see catalog.views.poster_file).

Posters are content-addressed by sha256: storing the same bytes again writes nothing, so a
re-run of an import is cheap and leaves preprocessing results alone. Files go through
``default_storage`` so S3-compatible storage works as well as the local filesystem.
"""

from __future__ import annotations

import hashlib
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import PurePath

from django.core.files.base import ContentFile
from django.db import transaction
from django.utils.text import get_valid_filename

from .images import ImageRejected, poster_format
from .models import Movie, Poster

# Real posters are well under 1 MB; anything far bigger is not a poster we want to keep.
MAX_POSTER_BYTES = 25 * 1024 * 1024


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _poster_for(movie: Movie) -> Poster:
    # Unsaved when the movie has none yet: the first save is then a single INSERT. (A
    # concurrent import inserting the same row raises IntegrityError, which importers retry.)
    return Poster.objects.filter(movie=movie).first() or Poster(movie=movie)


class PosterRejected(ValueError):
    """The bytes were not stored as a poster; the message says why (fit to show a user)."""


def _storage_name(movie: Movie, filename: str, checksum: str, suffix: str) -> str:
    # Keep the source's name for humans, add the checksum prefix so a changed poster never
    # collides with (or silently overwrites) the previous file. The extension is the detected
    # format's, whatever the source called the file.
    stem = get_valid_filename(PurePath(filename or "poster").stem) or "poster"
    return f"{movie.pk}-{stem[:60]}-{checksum[:12]}{suffix}"


def store_original(movie: Movie, data: bytes, filename: str, source_url: str = "") -> bool:
    """Save ``data`` as the movie's original poster; return True when bytes were written.

    Returns False without writing when the same checksum is already stored. Data that is
    not a usable file (not bytes, empty, or implausibly large) is refused: the poster is
    flagged instead, and any poster stored earlier is kept. Content that is not a JPEG, PNG
    or WebP image is flagged the same way and raises ``PosterRejected``, so the importer can
    report it on the movie's row. When the bytes change, the old file is removed after
    commit and the poster goes back to "pending" for preprocessing.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        mark_missing(movie, f"poster data is {type(data).__name__}, not file bytes", source_url)
        return False
    data = bytes(data)
    if not data:
        mark_missing(movie, f"poster file {filename!r} is empty", source_url)
        return False
    if len(data) > MAX_POSTER_BYTES:
        mark_missing(
            movie, f"poster file {filename!r} is {len(data)} bytes, over the {MAX_POSTER_BYTES} byte limit", source_url
        )
        return False
    try:
        suffix, _content_type = poster_format(data)
    except ImageRejected as exc:
        reason = f"poster {PurePath(filename or 'file').name[:80]!r} rejected: {exc.reason}"[:255]
        mark_missing(movie, reason, source_url)
        raise PosterRejected(reason) from None
    checksum = sha256_hex(data)
    poster = _poster_for(movie)
    if poster.checksum == checksum and poster.original:
        if source_url and poster.source_url != source_url:
            poster.source_url = source_url[:500]
            poster.save(update_fields=["source_url", "updated_at"])
        return False
    old_name = poster.original.name if poster.original else ""
    poster.original.save(_storage_name(movie, filename, checksum, suffix), ContentFile(data), save=False)
    new_name = poster.original.name
    storage = poster.original.storage
    _remember_new_file(storage, new_name)
    poster.checksum = checksum
    poster.source_url = (source_url or poster.source_url)[:500]
    # New bytes: whatever preprocessing concluded about the old file no longer holds.
    poster.status = Poster.Status.PENDING
    poster.error = ""
    poster.processed_at = None
    poster.save()
    if old_name and old_name != new_name:
        # Only once the new row is committed; a rollback keeps the old file referenced.
        transaction.on_commit(lambda: storage.delete(old_name))
    return True


def mark_missing(movie: Movie, reason: str, source_url: str = "") -> Poster:
    """Record that the source had no usable poster. A poster stored earlier is kept."""
    poster = _poster_for(movie)
    if poster.original:
        return poster
    changed = poster.pk is None or poster.status != Poster.Status.MISSING or poster.error != reason[:255]
    if source_url and poster.source_url != source_url[:500]:
        poster.source_url = source_url[:500]
        changed = True
    if changed:
        poster.status = Poster.Status.MISSING
        poster.error = reason[:255]
        poster.save()
    return poster


# Files written inside the active ``delete_new_files_on_error`` blocks (innermost last).
_new_file_guards: ContextVar[tuple[list, ...]] = ContextVar("genreweb_new_poster_files", default=())


def _remember_new_file(storage, name: str) -> None:
    for guard in _new_file_guards.get():
        guard.append((storage, name))


@contextmanager
def delete_new_files_on_error():
    """Delete poster files written inside this block if the block raises.

    Wrap a transaction with it: Django has no on-rollback hook, and without this a rolled
    back row would leave a file that no Poster row points at.
    """
    written: list = []
    token = _new_file_guards.set(_new_file_guards.get() + (written,))
    try:
        yield written
    except BaseException:
        for storage, name in written:
            try:
                storage.delete(name)
            except Exception:  # noqa: BLE001 - cleanup must not hide the original error
                pass
        raise
    finally:
        _new_file_guards.reset(token)
