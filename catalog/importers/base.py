"""What every importer shares: the record a source yields, and the writer that upserts it.

A source (CSV, Kaggle, MM-IMDb, TMDB) only parses and validates: it yields one
``MovieRecord`` per good row and one ``SkippedRow`` per bad one. ``execute_import`` owns the
rest, so all importers behave the same:

- idempotency key: TMDB id, else IMDb id, else (source, source_id); a key seen twice in one
  run is reported as a duplicate and the movie is written once;
- one savepoint per row (movie + labels + poster record), committed per batch of rows for
  speed; a failing row rolls back alone and is reported, never half written;
- labels only through ``catalog.labels.set_labels`` with origin "import", and never when a
  person curated them (``label_source == "person"``): the batch's rows only let the writer
  skip early; set_labels re-checks under the movie's row lock, so a person's save that lands
  while the batch runs is kept;
- ``progress(message, fraction)`` between batches; if it raises (a cancelled job), every
  committed batch is whole and the ImportRun is marked cancelled (``base.runs.Cancelled``)
  or failed; its error is always storable (no NUL bytes, capped).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from django.conf import settings
from django.db import DataError, IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.text import slugify

from base.progress import Progress
from base.runs import SECRET_PARAMS, Cancelled, mask_secrets, storable_text  # noqa: F401 - SECRET_PARAMS re-exported

from .. import genres as vocabulary
from ..labels import set_labels
from ..models import Genre, ImportRun, LabelChange, Movie, MovieGenre
from ..posters import PosterRejected, delete_new_files_on_error, mark_missing, store_original

logger = logging.getLogger(__name__)

# Stored summaries stay readable: the counters are exact, the lists are capped.
MAX_SKIPPED_ROWS_KEPT = 1000
MAX_WARNINGS_KEPT = 200

IMDB_ID_RE = re.compile(r"^tt\d{5,10}$")


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


# --- small validators shared by sources ------------------------------------------------


def clean_text(value: Any) -> str:
    return " ".join(str(value).split()) if value is not None else ""


def parse_year(value: Any) -> int | None:
    text = clean_text(value)
    if not text:
        return None
    try:
        year = int(float(text)) if re.fullmatch(r"\d{4}(\.0+)?", text) else int(text)
    except ValueError:
        raise RowError(f"year {text!r} is not a number") from None
    if not 1870 <= year <= 2100:
        raise RowError(f"year {year} is out of range 1870-2100")
    return year


def parse_imdb_id(value: Any) -> str | None:
    text = clean_text(value).lower()
    if not text or text in {"nan", "none", "null", "0"}:
        return None
    if text.isdigit():
        text = f"tt{int(text):07d}"
    if not IMDB_ID_RE.match(text):
        raise RowError(f"IMDb id {value!r} is not of the form tt1234567")
    return text


def parse_float(value: Any, name: str) -> float | None:
    text = clean_text(value)
    if not text:
        return None
    try:
        number = float(text)
    except ValueError:
        raise RowError(f"{name} {text!r} is not a number") from None
    if number != number or number in (float("inf"), float("-inf")):
        raise RowError(f"{name} {text!r} is not a finite number")
    return number


def parse_positive_int(value: Any, name: str) -> int:
    text = clean_text(value)
    if not text.isdigit() or int(text) <= 0:
        raise RowError(f"{name} {text!r} is not a positive whole number")
    return int(text)


def text_problem(value: str) -> str | None:
    """Why ``value`` cannot be stored as text (PostgreSQL refuses NUL, UTF-8 has no lone
    surrogates), or None. Names the character and its position, never echoes the value."""
    for position, ch in enumerate(value, start=1):
        if ch == "\x00":
            return (
                f"contains a NUL character (U+0000) at position {position}; "
                "the file may be damaged or in another encoding (UTF-16?)"
            )
        if "\ud800" <= ch <= "\udfff":
            return f"contains an invalid character (lone surrogate U+{ord(ch):04X}) at position {position}"
    return None


def storable(text: str) -> str:
    """``text`` with unstorable characters written as escapes (for reports, never for data)."""
    if text_problem(text) is None:
        return text
    return text.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")


def require_storable(value: Any, name: str) -> None:
    """RowError when ``value`` is text that cannot be stored (see ``text_problem``)."""
    if isinstance(value, str) and (problem := text_problem(value)):
        raise RowError(f"{name} {problem}")


RECORD_TEXT_FIELDS = ("source_id", "imdb_id", "title", "original_title", "overview", "original_language")


def record_problem(rec: MovieRecord) -> str | None:
    """The first field of ``rec`` that cannot be stored, as a readable reason; or None.

    Policy: such a row is skipped and reported, not stripped. A NUL or a lone surrogate in an
    export means the file is damaged or was decoded wrongly; a stripped id could silently
    merge two movies, and a stripped text would hide the damage the person should fix at the
    source. The rest of the file imports.
    """
    fields = [(name, getattr(rec, name)) for name in RECORD_TEXT_FIELDS]
    fields += [("genre", ref.name) for ref in rec.genres or []]
    if rec.poster is not None:
        fields += [
            ("poster file name", rec.poster.filename),
            ("poster URL", rec.poster.source_url),
            ("poster note", rec.poster.missing_reason),
        ]
    for name, value in fields:
        if isinstance(value, str) and (problem := text_problem(value)):
            return f"{name} {problem}"
    return None


def genre_refs(names: Iterable[str]) -> list[GenreRef]:
    seen: set[str] = set()
    refs = []
    for name in names:
        name = clean_text(name)
        if name and name.lower() not in seen:
            seen.add(name.lower())
            refs.append(GenreRef(name))
    return refs


redact = mask_secrets  # one masking function for ImportRun and Job params (base.runs)


# --- genres --------------------------------------------------------------------------------


class GenreResolver:
    """Maps names / TMDB ids to Genre rows through the controlled vocabulary (catalog.genres).

    Known: a TMDB genre (by id or name, aliases applied), an existing Genre row, or a name in
    ``extra`` (a TMDB source's live genre list). Anything else is reported on its row and left
    out, unless ``allow_new`` (then at most ``max_new`` new genres in this import).
    """

    def __init__(
        self,
        *,
        allow_new: bool = False,
        max_new: int = 0,
        extra: dict[int, str] | None = None,
        warn: Callable[[str], None] | None = None,
    ) -> None:
        self.by_tmdb: dict[int, Genre] = {}
        self.by_name: dict[str, Genre] = {}
        self.allow_new = allow_new
        self.max_new = max_new
        self.extra = dict(extra or {})
        self.created_new: list[str] = []
        self.warn = warn or (lambda message: None)
        for genre in Genre.objects.all():
            self._remember(genre)

    def _remember(self, genre: Genre) -> None:
        self.by_name[genre.name.lower()] = genre
        if genre.tmdb_id is not None:
            self.by_tmdb[genre.tmdb_id] = genre

    def resolve(self, refs: Iterable[GenreRef], row: int | None = None) -> list[Genre] | None:
        """The known genres of one row. None when the row named genres but none is known,
        so an import never clears a movie's labels because of names it does not know."""
        refs = list(refs)
        genres: dict[int, Genre] = {}
        for ref in refs:
            genre = self.get(ref, row)
            if genre is not None:
                genres[genre.pk] = genre
        if refs and not genres:
            return None
        return list(genres.values())

    def get(self, ref: GenreRef, row: int | None = None) -> Genre | None:
        where = f"row {row}: " if row is not None else ""
        # A TMDB id wins over the name (TMDB in another language says "Komödie" for 35).
        if ref.tmdb_id is not None:
            if ref.tmdb_id in self.by_tmdb:
                return self.by_tmdb[ref.tmdb_id]
            name = vocabulary.NAME_BY_TMDB_ID.get(ref.tmdb_id) or self.extra.get(ref.tmdb_id)
            if name is not None:
                return self._known(name, ref.tmdb_id)
        canonical = vocabulary.canonical_name(ref.name)
        if canonical is not None:
            return self._known(canonical, vocabulary.TMDB_ID_BY_NAME.get(canonical))
        existing = self.by_name.get(ref.name.lower())
        if existing is not None:
            return existing
        if not self.allow_new:
            self.warn(f"{where}{vocabulary.unknown_reason(ref.name)}")
            return None
        problem = vocabulary.new_name_problem(ref.name)
        if problem:
            self.warn(f"{where}genre {ref.name[:64]!r} not created: {problem}")
            return None
        if len(self.created_new) >= self.max_new:
            self.warn(
                f"{where}unknown genre {ref.name!r} not created: this import already created {self.max_new} new "
                "genres (GENREWEB_MAX_NEW_GENRES); left out"
            )
            return None
        genre = self._create(ref.name, None)
        self._remember(genre)
        self.created_new.append(genre.name)
        self.warn(f"{where}created new genre {genre.name!r} (allow_new_genres)")
        return genre

    def _known(self, name: str, tmdb_id: int | None) -> Genre:
        genre = self.by_name.get(name.lower())
        if genre is not None and tmdb_id is not None and genre.tmdb_id is None:
            genre.tmdb_id = tmdb_id
            genre.save(update_fields=["tmdb_id"])
        if genre is None:
            genre = self._create(name, tmdb_id)
        self._remember(genre)
        return genre

    def _create(self, name: str, tmdb_id: int | None) -> Genre:
        base_slug = slugify(name)[:58] or "genre"
        slug, n = base_slug, 1
        while Genre.objects.filter(slug=slug).exists():
            n += 1
            slug = f"{base_slug}-{n}"
        try:
            with transaction.atomic():
                return Genre.objects.create(name=name, slug=slug, tmdb_id=tmdb_id)
        except IntegrityError:
            # Another import created it meanwhile.
            same = Q(name__iexact=name) | (Q(tmdb_id=tmdb_id) if tmdb_id is not None else Q(pk__in=[]))
            genre = Genre.objects.filter(same).first()
            if genre is None:
                raise
            return genre


# --- the writer ----------------------------------------------------------------------------

MOVIE_FIELDS = (
    "title",
    "original_title",
    "overview",
    "release_date",
    "year",
    "original_language",
    "popularity",
)
FIELD_LIMITS = {"title": 512, "original_title": 512, "original_language": 16}


class MovieWriter:
    def __init__(self, run: ImportRun, genres: GenreResolver) -> None:
        self.run = run
        self.genres = genres
        self.seen: dict[tuple, int] = {}  # idempotency key -> row that first had it
        self.warnings: list[str] = []  # e.g. a rejected poster: the movie is imported without it

    # Summary bookkeeping -------------------------------------------------------------

    def skip(self, row: int, reason: str, where: dict | None = None) -> None:
        self.run.skipped += 1
        if len(self.run.skipped_rows) < MAX_SKIPPED_ROWS_KEPT:
            where = {k: storable(v) if isinstance(v, str) else v for k, v in (where or {}).items()}
            self.run.skipped_rows.append({"row": row, "reason": storable(reason), **where})

    # Batch ---------------------------------------------------------------------------

    def write_batch(self, items: list[MovieRecord | SkippedRow]) -> None:
        records: list[MovieRecord] = []
        for item in items:
            if isinstance(item, SkippedRow):
                self.skip(item.row, item.reason, item.where)
                continue
            problem = record_problem(item)
            if problem:
                self.skip(item.row, problem, item.where)
                continue
            duplicate = next(((k, self.seen[k]) for k in item.keys() if k in self.seen), None)
            if duplicate:
                (label, value), first_row = duplicate
                self.skip(item.row, f"duplicate of row {first_row} (same {label} {value})", item.where)
                continue
            if not item.keys():
                self.skip(item.row, "no TMDB id, IMDb id or source id to identify the movie", item.where)
                continue
            for key in item.keys():
                self.seen[key] = item.row
            records.append(item)
        if not records:
            return
        # Genre rows first, outside the row savepoints, so a rolled-back row cannot leave
        # the resolver's cache pointing at a genre that was never committed.
        wanted_genres = {}
        for rec in records:
            try:
                wanted_genres[rec.row] = None if rec.genres is None else self.genres.resolve(rec.genres, rec.row)
            except (IntegrityError, DataError) as exc:
                wanted_genres[rec.row] = exc
        existing = _Lookup.prefetch(records)
        with delete_new_files_on_error(), transaction.atomic():
            for rec in records:
                genres = wanted_genres[rec.row]
                if isinstance(genres, Exception):
                    self.skip(rec.row, f"genres could not be stored: {genres}", rec.where)
                    continue
                self._write_row(rec, genres, existing)

    def _write_row(self, rec: MovieRecord, genres: list[Genre] | None, existing: _Lookup) -> None:
        for attempt in (1, 2):
            try:
                with delete_new_files_on_error(), transaction.atomic():
                    outcome, stored = self._upsert(rec, genres, existing)
            except RowError as exc:
                self.skip(rec.row, str(exc), rec.where)
                return
            except (IntegrityError, DataError) as exc:
                if attempt == 1 and isinstance(exc, IntegrityError):
                    # Most likely a concurrent import inserted the same movie: look again.
                    existing = _Lookup.fresh()
                    continue
                self.skip(rec.row, f"database refused the row: {exc}".strip()[:300], rec.where)
                return
            setattr(self.run, outcome, getattr(self.run, outcome) + 1)
            self.run.posters_stored += int(stored)
            return

    def _upsert(self, rec: MovieRecord, genres: list[Genre] | None, existing: _Lookup) -> tuple[str, bool]:
        movie = existing.find(rec)
        values = _field_values(rec)
        created = movie is None
        changed = False
        if created:
            movie = Movie.objects.create(
                source=rec.source,
                source_id=rec.source_id[:128],
                tmdb_id=rec.tmdb_id,
                imdb_id=rec.imdb_id or None,
                **values,
            )
            current_genre_ids: set[int] = set()
        else:
            # A source that lacks a value (MM-IMDb has no popularity) never blanks one out.
            dirty = [
                name for name, value in values.items() if value not in (None, "") and getattr(movie, name) != value
            ]
            for name in dirty:
                setattr(movie, name, values[name])
            # Learn ids the movie did not have yet (e.g. a CSV row later seen on TMDB).
            for name in ("tmdb_id", "imdb_id"):
                value = getattr(rec, name)
                if value and not getattr(movie, name):
                    setattr(movie, name, value)
                    dirty.append(name)
            if dirty:
                movie.save(update_fields=dirty + ["updated_at"])
                changed = True
            current_genre_ids = existing.genre_ids.get(movie.pk, set())
        # ``movie`` and ``current_genre_ids`` were read at batch start: they only save work here.
        # set_labels decides under the row lock (a person may have saved since).
        if genres is not None and movie.label_source != Movie.LabelSource.PERSON:
            if created or {g.pk for g in genres} != current_genre_ids:
                diff = set_labels(movie, genres, origin=LabelChange.Origin.IMPORT, reason=f"import #{self.run.pk}")
                changed = changed or diff.changed
        stored = False
        poster = rec.poster
        if poster is not None and not poster.already_stored:
            if poster.data is not None:
                try:
                    stored = store_original(movie, poster.data, poster.filename, poster.source_url)
                except PosterRejected as exc:
                    where = "".join(f", {k} {v}" for k, v in rec.where.items())
                    self.warnings.append(f"row {rec.row}{where}: {exc}; the movie was imported without it")
                changed = changed or stored
            else:
                mark_missing(movie, poster.missing_reason or "no poster in the source", poster.source_url)
        if created:
            return "created", stored
        return ("updated" if changed else "unchanged"), stored


def _field_values(rec: MovieRecord) -> dict[str, Any]:
    values: dict[str, Any] = {name: getattr(rec, name) for name in MOVIE_FIELDS}
    if values["year"] is None and rec.release_date is not None:
        values["year"] = rec.release_date.year
    for name, limit in FIELD_LIMITS.items():
        values[name] = (values[name] or "")[:limit]
    return values


class _Lookup:
    """Existing movies for a batch, fetched in one query, plus their current label ids."""

    def __init__(self, movies: Iterable[Movie] | None) -> None:
        self.prefetched = movies is not None
        self.by_tmdb: dict[int, Movie] = {}
        self.by_imdb: dict[str, Movie] = {}
        self.by_source: dict[tuple[str, str], Movie] = {}
        self.genre_ids: dict[int, set[int]] = {}
        movies = list(movies or [])
        for movie in movies:
            self._add(movie)
        for movie_id, genre_id in MovieGenre.objects.filter(movie_id__in=[m.pk for m in movies]).values_list(
            "movie_id", "genre_id"
        ):
            self.genre_ids.setdefault(movie_id, set()).add(genre_id)

    def _add(self, movie: Movie) -> None:
        if movie.tmdb_id is not None:
            self.by_tmdb[movie.tmdb_id] = movie
        if movie.imdb_id:
            self.by_imdb[movie.imdb_id] = movie
        if movie.source_id:
            self.by_source[(movie.source, movie.source_id)] = movie

    @classmethod
    def prefetch(cls, records: list[MovieRecord]) -> _Lookup:
        query = Q(pk__in=[])
        tmdb_ids = [r.tmdb_id for r in records if r.tmdb_id is not None]
        imdb_ids = [r.imdb_id for r in records if r.imdb_id]
        if tmdb_ids:
            query |= Q(tmdb_id__in=tmdb_ids)
        if imdb_ids:
            query |= Q(imdb_id__in=imdb_ids)
        by_source: dict[str, list[str]] = {}
        for r in records:
            if r.source_id:
                by_source.setdefault(r.source, []).append(r.source_id[:128])
        for source, ids in by_source.items():
            query |= Q(source=source, source_id__in=ids)
        return cls(Movie.objects.filter(query))

    @classmethod
    def fresh(cls) -> _Lookup:
        lookup = cls([])
        lookup.prefetched = False
        return lookup

    def find(self, rec: MovieRecord) -> Movie | None:
        if not self.prefetched:
            self._load_from_db(rec)
        candidates = []
        if rec.tmdb_id is not None and rec.tmdb_id in self.by_tmdb:
            candidates.append(("TMDB id", rec.tmdb_id, self.by_tmdb[rec.tmdb_id]))
        if rec.imdb_id and rec.imdb_id in self.by_imdb:
            candidates.append(("IMDb id", rec.imdb_id, self.by_imdb[rec.imdb_id]))
        if rec.source_id and (rec.source, rec.source_id[:128]) in self.by_source:
            candidates.append((f"{rec.source} id", rec.source_id, self.by_source[(rec.source, rec.source_id[:128])]))
        if not candidates:
            return None
        label, value, movie = candidates[0]
        for other_label, other_value, other in candidates[1:]:
            if other.pk != movie.pk:
                raise RowError(
                    f"{label} {value} is movie #{movie.pk} but {other_label} {other_value} is movie #{other.pk}; "
                    "not merging them"
                )
        if rec.tmdb_id is not None and movie.tmdb_id is not None and movie.tmdb_id != rec.tmdb_id:
            raise RowError(
                f"{label} {value} is movie #{movie.pk}, which has TMDB id {movie.tmdb_id}, not {rec.tmdb_id}"
            )
        if rec.imdb_id and movie.imdb_id and movie.imdb_id != rec.imdb_id:
            raise RowError(
                f"{label} {value} is movie #{movie.pk}, which has IMDb id {movie.imdb_id}, not {rec.imdb_id}"
            )
        return movie

    def _load_from_db(self, rec: MovieRecord) -> None:
        query = Q(pk__in=[])
        if rec.tmdb_id is not None:
            query |= Q(tmdb_id=rec.tmdb_id)
        if rec.imdb_id:
            query |= Q(imdb_id=rec.imdb_id)
        if rec.source_id:
            query |= Q(source=rec.source, source_id=rec.source_id[:128])
        for movie in Movie.objects.filter(query):
            self._add(movie)
            self.genre_ids[movie.pk] = set(MovieGenre.objects.filter(movie=movie).values_list("genre_id", flat=True))


# --- the run -----------------------------------------------------------------------------


def _batches(items: Iterable, size: int) -> Iterator[list]:
    batch: list = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


SUMMARY_FIELDS = ["created", "updated", "unchanged", "skipped", "posters_stored", "skipped_rows", "warnings"]


def execute_import(
    kind: str,
    params: dict,
    make_source: Callable[[dict], Source],
    *,
    progress: Progress | None = None,
    on_run: Callable[[ImportRun], None] | None = None,
) -> ImportRun:
    """Run one import and return its ImportRun (status succeeded, or failed with the error).

    Raises ``ImporterError`` (with ``.run``) when the import cannot run at all, and re-raises
    whatever ``progress`` raises after marking the run cancelled (``Cancelled``) or failed.
    ``on_run(run)`` is called once the run row exists (a job records it, so a sweep that
    finds the job's worker dead can end the run too).
    """
    run = ImportRun.objects.create(kind=kind, params=redact(params), status=ImportRun.Status.RUNNING)
    if on_run:
        on_run(run)
    processed = 0
    source: Source | None = None
    writer: MovieWriter | None = None
    source_rows = None
    try:
        source = make_source(params)
        genres = GenreResolver(
            allow_new=bool(params.get("allow_new_genres")),
            max_new=settings.GENREWEB_MAX_NEW_GENRES,
            extra=source.extra_genres,
            warn=source.warnings.append,
        )
        writer = MovieWriter(run, genres)
        limit = params.get("limit")
        source_rows = source.rows()
        rows: Iterable = _limited(source_rows, int(limit)) if limit else source_rows
        if progress:
            progress(f"{kind} import #{run.pk}: reading", 0.0)
        for batch in _batches(rows, source.batch_size):
            writer.write_batch(batch)
            processed += len(batch)
            run.warnings = _capped(source.warnings + (writer.warnings if writer else []))
            run.save(update_fields=SUMMARY_FIELDS)
            if progress:
                total = source.total if source.total is not None else None
                if limit:
                    total = min(total, int(limit)) if total is not None else int(limit)
                fraction = min(processed / total, 0.99) if total else 0.0
                progress(f"{kind} import #{run.pk}: {processed} rows, {_counts(run)}", fraction)
        # Let the source finish up (close connections, add its last warnings) before the summary.
        source_rows.close()
    except BaseException as exc:
        run.status = ImportRun.Status.CANCELLED if isinstance(exc, Cancelled) else ImportRun.Status.FAILED
        run.error = storable_text(str(exc) if isinstance(exc, ImporterError) else f"{type(exc).__name__}: {exc}")
        run.finished_at = timezone.now()
        if source_rows is not None:
            try:
                source_rows.close()
            except Exception:  # noqa: BLE001 - the original error is the one to report
                pass
        if source is not None:
            run.warnings = _capped(source.warnings + (writer.warnings if writer else []))
        run.save()
        if isinstance(exc, ImporterError):
            exc.run = run
        raise
    run.status = ImportRun.Status.SUCCEEDED
    run.finished_at = timezone.now()
    run.warnings = _capped(source.warnings + (writer.warnings if writer else []))
    run.save()
    if progress:
        progress(f"{kind} import #{run.pk} done: {processed} rows, {_counts(run)}", 1.0)
    return run


def _limited(rows: Iterable, limit: int) -> Iterator:
    # Counts movies, not reported skips, so "limit 10" means ten movies looked at.
    seen = 0
    for item in rows:
        if seen >= limit:
            return
        yield item
        if isinstance(item, MovieRecord):
            seen += 1


def _capped(warnings: list[str]) -> list[str]:
    if len(warnings) <= MAX_WARNINGS_KEPT:
        return list(warnings)
    return warnings[:MAX_WARNINGS_KEPT] + [f"... and {len(warnings) - MAX_WARNINGS_KEPT} more warnings"]


def _counts(run: ImportRun) -> str:
    return (
        f"{run.created} created, {run.updated} updated, {run.unchanged} unchanged, "
        f"{run.skipped} skipped, {run.posters_stored} posters stored"
    )


def summary(run: ImportRun) -> str:
    return f"{run.get_kind_display()} import #{run.pk} {run.status}: {_counts(run)}"
