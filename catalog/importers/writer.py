"""The writer: upserts what a source yields (movies, their labels, their posters).

- idempotency key: TMDB id, else IMDb id, else (source, source_id); a key seen twice in one
  run is reported as a duplicate and the movie is written once;
- one savepoint per row (movie + labels + poster record), committed per batch of rows for
  speed; a failing row rolls back alone and is reported, never half written;
- labels only through ``catalog.labels.set_labels`` with origin "imported", and never when a
  person curated them (``label_source == "person"``): the batch's rows only let the writer
  skip early; set_labels re-checks under the movie's row lock, so a person's save that lands
  while the batch runs is kept.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from django.db import DataError, IntegrityError, transaction
from django.db.models import Q
from django.utils.text import slugify

from .. import genres as vocabulary
from ..labels import set_labels
from ..models import Genre, ImportRun, LabelOrigin, Movie, MovieGenre
from ..posters import PosterRejected, delete_new_files_on_error, mark_missing, store_original
from .parsing import record_problem, storable
from .records import GenreRef, MovieRecord, RowError, SkippedRow

# Stored summaries stay readable: the counters are exact, the lists are capped.
MAX_SKIPPED_ROWS_KEPT = 1000


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
        existing = ExistingMovies.prefetch(records)
        with delete_new_files_on_error(), transaction.atomic():
            for rec in records:
                genres = wanted_genres[rec.row]
                if isinstance(genres, Exception):
                    self.skip(rec.row, f"genres could not be stored: {genres}", rec.where)
                    continue
                self._write_row(rec, genres, existing)

    def _write_row(self, rec: MovieRecord, genres: list[Genre] | None, existing: ExistingMovies) -> None:
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
                    existing = ExistingMovies.fresh()
                    continue
                self.skip(rec.row, f"database refused the row: {exc}".strip()[:300], rec.where)
                return
            setattr(self.run, outcome, getattr(self.run, outcome) + 1)
            self.run.posters_stored += int(stored)
            return

    def _upsert(self, rec: MovieRecord, genres: list[Genre] | None, existing: ExistingMovies) -> tuple[str, bool]:
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
        if genres is not None and movie.label_source != LabelOrigin.PERSON:
            if created or {g.pk for g in genres} != current_genre_ids:
                diff = set_labels(movie, genres, origin=LabelOrigin.IMPORTED, reason=f"import #{self.run.pk}")
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


class ExistingMovies:
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
    def prefetch(cls, records: list[MovieRecord]) -> ExistingMovies:
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
    def fresh(cls) -> ExistingMovies:
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
