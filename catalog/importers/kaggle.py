"""Kaggle "The Movies Dataset": movies_metadata.csv as published.

Its quirks, handled row by row: genres are Python-literal lists of {'id', 'name'} dicts
(parsed with ``ast.literal_eval``, never ``eval``), a few rows are shifted so that ``id``
holds a date such as '1997-08-20', dates come as YYYY-MM-DD or DD-MM-YYYY (re-saved copies),
popularity is sometimes text, and some movies appear twice.

Params: path (the CSV), optional posters (folder with files named <tmdb id>.* or
<imdb id>.*) or poster_url_base (e.g. https://image.tmdb.org/t/p/w342, joined with the
poster_path column), encoding, limit.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path

from . import http
from .parsing import clean_text, parse_float, parse_imdb_id, parse_positive_int, require_storable
from .poster_sources import PosterFolder, stored_from_url
from .records import GenreRef, ImporterError, MovieRecord, PosterRef, RowError, SkippedRow, Source
from .registry import argument, register
from .tabular import CsvRows, read_text

DATE_FORMATS = ("%Y-%m-%d", "%d-%m-%Y", "%Y/%m/%d", "%d/%m/%Y", "%d.%m.%Y")
# A genres cell is a short list; anything longer is not worth parsing.
MAX_GENRES_CELL = 5000


def parse_date(value: str) -> date | None:
    text = clean_text(value)
    if not text:
        return None
    for fmt in DATE_FORMATS:
        try:
            return datetime.strptime(text, fmt).date()
        except ValueError:
            continue
    raise RowError(f"release_date {text!r} is not a date (YYYY-MM-DD or DD-MM-YYYY)")


def parse_genres(cell: str) -> list[GenreRef]:
    text = (cell or "").strip()
    if not text:
        return []
    if len(text) > MAX_GENRES_CELL:
        raise RowError(f"genres cell is {len(text)} characters long; not a genre list")
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        raise RowError(f"genres {text[:60]!r} is not a list of {{id, name}}") from None
    if not isinstance(value, list) or not all(isinstance(g, dict) and clean_text(g.get("name")) for g in value):
        raise RowError(f"genres {text[:60]!r} is not a list of {{id, name}}")
    refs: dict[str, GenreRef] = {}
    for g in value:
        name = clean_text(g["name"])
        genre_id = g.get("id")
        refs.setdefault(name.lower(), GenreRef(name, genre_id if isinstance(genre_id, int) and genre_id > 0 else None))
    return list(refs.values())


@register(
    "kaggle",
    "Kaggle The Movies Dataset",
    params={"path", "posters", "poster_url_base", "encoding", "backoff_base"},
    help='Import Kaggle "The Movies Dataset" movies_metadata.csv, with optional posters (folder or URL base).',
    arguments=[
        argument("path", help="movies_metadata.csv (or the folder holding it)"),
        argument("--posters", group="posters", help="folder of posters named <tmdb id>.jpg or <imdb id>.jpg"),
        argument(
            "--poster-url-base",
            group="posters",
            help="URL joined with the poster_path column, e.g. https://image.tmdb.org/t/p/w342",
        ),
        argument("--encoding", help="CSV encoding (default: UTF-8, with a reported fallback)"),
    ],
)
class KaggleSource(Source):
    def __init__(self, params: dict):
        super().__init__()
        path = Path(str(params.get("path") or "")).expanduser()
        if not params.get("path"):
            raise ImporterError("kaggle import needs 'path': the movies_metadata.csv file")
        if path.is_dir():
            path = path / "movies_metadata.csv"
        if not path.is_file():
            raise ImporterError(f"{path} does not exist")
        self.posters = PosterFolder(Path(str(params["posters"]))) if params.get("posters") else None
        self.poster_url_base = (params.get("poster_url_base") or "").rstrip("/")
        if self.posters and self.poster_url_base:
            raise ImporterError("give either posters (a folder) or poster_url_base, not both")
        self.client = (
            http.HttpClient(name="poster server", backoff_base=float(params.get("backoff_base", 1.0)))
            if self.poster_url_base
            else None
        )
        text = read_text(path, self.warnings, params.get("encoding"))
        self.table = CsvRows(text, path.name, {"id", "title", "genres"}, self.warnings)
        self.total = self.table.total

    def rows(self) -> Iterator[MovieRecord | SkippedRow]:
        try:
            yield from self.table.records(self._record)
        finally:
            if self.client is not None:
                self.client.close()

    def _record(self, row: int, line: int, values: dict) -> MovieRecord:
        tmdb_id = parse_positive_int(values.get("id"), "id")
        title = clean_text(values.get("title")) or clean_text(values.get("original_title"))
        if not title:
            raise RowError("title is empty")
        imdb_id = parse_imdb_id(values.get("imdb_id"))
        return MovieRecord(
            row=row,
            source=self.kind,
            source_id=str(tmdb_id),
            tmdb_id=tmdb_id,
            imdb_id=imdb_id,
            title=title,
            original_title=clean_text(values.get("original_title")),
            overview=clean_text(values.get("overview")),
            release_date=parse_date(values.get("release_date", "")),
            original_language=clean_text(values.get("original_language")),
            popularity=parse_float(values.get("popularity"), "popularity"),
            genres=parse_genres(values.get("genres", "")),
            poster=self._poster(tmdb_id, imdb_id, clean_text(values.get("poster_path"))),
            where={"line": line},
        )

    def _poster(self, tmdb_id: int, imdb_id: str | None, poster_path: str) -> PosterRef | None:
        if self.posters is not None:
            return self.posters.by_stems(tmdb_id, imdb_id)
        if not self.poster_url_base:
            return None
        if not poster_path:
            return PosterRef(missing_reason="row has no poster_path")
        require_storable(poster_path, "poster_path")
        url = f"{self.poster_url_base}/{poster_path.lstrip('/')}"
        if stored_from_url(url, tmdb_id=tmdb_id):
            return PosterRef(source_url=url, already_stored=True)
        try:
            return PosterRef(filename=poster_path.lstrip("/"), data=self.client.get_bytes(url), source_url=url)
        except http.HttpError as exc:
            return PosterRef(source_url=url, missing_reason=f"poster download failed: {exc}"[:255])
