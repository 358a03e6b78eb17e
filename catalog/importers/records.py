"""What a source yields: one ``MovieRecord`` per good row, one ``SkippedRow`` per bad one.

A source (CSV, Kaggle, MM-IMDb, TMDB, or any registered in ``catalog.importers.registry``)
only parses and validates; ``catalog.importers.writer`` upserts what it yields and
``catalog.importers.run`` drives the whole import.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Any

from base.progress import Progress  # noqa: F401 - re-exported for sources

if TYPE_CHECKING:
    from ..models import ImportRun

logger = logging.getLogger(__name__)


class ImporterError(Exception):
    """An import could not run at all (bad parameters, unreadable file, refused credentials).

    ``run`` is the ImportRun marked failed, when one was created.
    """

    def __init__(self, message: str, run: ImportRun | None = None):
        super().__init__(message)
        self.run = run


class RowError(ValueError):
    """One row is unusable; the reason goes into the import summary."""


@dataclass(frozen=True)
class GenreRef:
    name: str
    tmdb_id: int | None = None


@dataclass
class PosterRef:
    """What a source knows about a movie's poster.

    ``data`` set: store these bytes. ``missing_reason`` set: the source has no usable poster.
    ``already_stored``: the source saw the same poster stored before (skip the download).
    """

    filename: str = ""
    data: bytes | None = None
    source_url: str = ""
    missing_reason: str = ""
    already_stored: bool = False


@dataclass
class MovieRecord:
    row: int
    source: str
    title: str
    source_id: str = ""
    tmdb_id: int | None = None
    imdb_id: str | None = None
    original_title: str = ""
    overview: str = ""
    release_date: date | None = None
    year: int | None = None
    original_language: str = ""
    popularity: float | None = None
    genres: list[GenreRef] | None = None  # None: the source says nothing about genres
    poster: PosterRef | None = None  # None: the source says nothing about the poster
    where: dict[str, Any] = field(default_factory=dict)  # e.g. {"line": 12} for reports

    def keys(self) -> list[tuple]:
        keys: list[tuple] = []
        if self.tmdb_id is not None:
            keys.append(("TMDB id", self.tmdb_id))
        if self.imdb_id:
            keys.append(("IMDb id", self.imdb_id))
        if self.source_id:
            keys.append((f"{self.source} id", self.source_id))
        return keys


@dataclass
class SkippedRow:
    row: int
    reason: str
    where: dict[str, Any] = field(default_factory=dict)


class Source:
    """Base for importer sources: parse and validate, yield records; never touch the DB rows."""

    kind: str = ""
    batch_size: int = 100

    def __init__(self) -> None:
        self.warnings: list[str] = []
        self.total: int | None = None  # rows expected, when known (for progress)
        # Genres this source is an authority for (TMDB's live genre list: id -> name).
        self.extra_genres: dict[int, str] = {}

    def warn(self, message: str) -> None:
        logger.warning("%s import: %s", self.kind, message)
        self.warnings.append(message)

    def rows(self) -> Iterator[MovieRecord | SkippedRow]:
        raise NotImplementedError
