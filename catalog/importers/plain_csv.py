"""Plain CSV + poster folder, in the shape of the devset's movies.csv.

Columns: id, title, year, overview, genres (``A|B|C``), source_id (``tmdb:285``), poster
(file name in the poster folder), imdb_id; extra columns are ignored. ``path`` is either a
folder holding movies.csv (and posters/) or the CSV file itself, with ``posters`` naming the
folder.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from .parsing import clean_text, genre_refs, parse_imdb_id, parse_positive_int, parse_year
from .poster_sources import PosterFolder
from .records import ImporterError, MovieRecord, RowError, SkippedRow, Source
from .registry import argument, register
from .tabular import CsvRows, read_text

TMDB_REF_RE = re.compile(r"^tmdb[:_](\d+)$", re.IGNORECASE)
IMDB_REF_RE = re.compile(r"^imdb[:_](tt\d+)$", re.IGNORECASE)


@register(
    "csv",
    "CSV + poster folder",
    params={"path", "posters", "encoding"},
    help="Import a plain CSV (id, title, year, overview, genres as A|B|C, source_id, poster, imdb_id) "
    "with a poster folder. PATH is a folder holding movies.csv and posters/, or the CSV itself.",
    arguments=[
        argument("path", help="folder with movies.csv (+ posters/), or a CSV file"),
        argument("--posters", help="poster folder (default: posters/ next to movies.csv)"),
        argument("--encoding", help="CSV encoding (default: UTF-8, with a reported fallback)"),
    ],
)
class PlainCsvSource(Source):
    def __init__(self, params: dict):
        super().__init__()
        path = Path(str(params.get("path") or "")).expanduser()
        if not str(params.get("path") or ""):
            raise ImporterError("csv import needs 'path': a folder with movies.csv, or a CSV file")
        posters = params.get("posters")
        if path.is_dir():
            csv_path = path / "movies.csv"
            if not csv_path.is_file():
                candidates = sorted(path.glob("*.csv"))
                if len(candidates) != 1:
                    raise ImporterError(f"{path} has no movies.csv (and not exactly one other .csv file)")
                csv_path = candidates[0]
            if not posters and (path / "posters").is_dir():
                posters = path / "posters"
        elif path.is_file():
            csv_path = path
        else:
            raise ImporterError(f"{path} does not exist")
        self.csv_path = csv_path
        self.posters = PosterFolder(Path(str(posters))) if posters else None
        if self.posters is None:
            self.warn("no poster folder given (and no posters/ next to the CSV); posters are not imported")
        text = read_text(csv_path, self.warnings, params.get("encoding"))
        self.table = CsvRows(text, csv_path.name, {"title", "genres"}, self.warnings)
        if not {"id", "source_id"} & set(self.table.header):
            raise ImporterError(f"{csv_path.name} needs an 'id' or 'source_id' column to identify movies")
        self.total = self.table.total

    def rows(self) -> Iterator[MovieRecord | SkippedRow]:
        yield from self.table.records(self._record)

    def _record(self, row: int, line: int, values: dict) -> MovieRecord:
        title = clean_text(values.get("title"))
        if not title:
            raise RowError("title is empty")
        row_id = clean_text(values.get("id"))
        upstream = clean_text(values.get("source_id"))
        imdb_id = parse_imdb_id(values.get("imdb_id"))
        tmdb_id = None
        if clean_text(values.get("tmdb_id")):
            tmdb_id = parse_positive_int(values.get("tmdb_id"), "tmdb_id")
        else:
            for ref in (upstream, row_id):
                if match := TMDB_REF_RE.match(ref):
                    tmdb_id = parse_positive_int(match.group(1), "TMDB id")
                    break
        if imdb_id is None:
            for ref in (upstream, row_id):
                if match := IMDB_REF_RE.match(ref):
                    imdb_id = parse_imdb_id(match.group(1))
                    break
        genres = genre_refs(clean_text(values.get("genres")).split("|"))
        poster = self.posters.by_file_name(values.get("poster", "")) if self.posters else None
        return MovieRecord(
            row=row,
            source=self.kind,
            source_id=row_id or upstream,
            title=title,
            tmdb_id=tmdb_id,
            imdb_id=imdb_id,
            overview=clean_text(values.get("overview")),
            year=parse_year(values.get("year")),
            genres=genres,
            poster=poster,
            where={"line": line},
        )
