"""MM-IMDb: a folder with one JSON and one JPEG per movie (0000008.json + 0000008.jpeg).

The JSON has "title", "year", "genres" (IMDb genre names), "plot" (a list of plot texts: the
longest is kept; "plot outline" is the fallback) and maybe "imdb_id"; when that is absent the
IMDb id is 'tt' + the file stem. Params: path (the folder, or its parent holding dataset/),
limit.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

from .parsing import clean_text, genre_refs, parse_imdb_id, parse_year
from .poster_sources import IMAGE_SUFFIXES
from .records import ImporterError, MovieRecord, PosterRef, RowError, SkippedRow, Source
from .registry import argument, register

# A movie's JSON is a few kB; a huge one is not an MM-IMDb record.
MAX_JSON_BYTES = 5 * 1024 * 1024


def longest_plot(value) -> str:
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, list):
        texts = [clean_text(v) for v in value if isinstance(v, str)]
        return max(texts, key=len, default="")
    return ""


@register(
    "mmimdb",
    "MM-IMDb",
    params={"path"},
    help="Import MM-IMDb: a folder with one <id>.json (title, year, genres, plot) and one <id>.jpeg per movie.",
    arguments=[argument("path", help="the folder of JSON + JPEG files (or its parent holding dataset/)")],
)
class MmImdbSource(Source):
    def __init__(self, params: dict):
        super().__init__()
        if not params.get("path"):
            raise ImporterError("mmimdb import needs 'path': the folder of <id>.json + <id>.jpeg files")
        folder = Path(str(params["path"])).expanduser()
        if not folder.is_dir():
            raise ImporterError(f"{folder} does not exist or is not a folder")
        names = self._listing(folder)
        if not any(n.endswith(".json") for n in names) and (folder / "dataset").is_dir():
            folder = folder / "dataset"
            names = self._listing(folder)
        self.folder = folder
        self.json_files = sorted(n for n in names if n.endswith(".json"))
        if not self.json_files:
            raise ImporterError(f"{folder} has no .json files (expected MM-IMDb's <id>.json + <id>.jpeg)")
        self.images = {}
        for name in sorted(names):
            stem, suffix = os.path.splitext(name)
            if suffix.lower() in IMAGE_SUFFIXES:
                self.images.setdefault(stem, name)
        self.total = len(self.json_files)

    @staticmethod
    def _listing(folder: Path) -> list[str]:
        with os.scandir(folder) as entries:
            return [e.name for e in entries if e.is_file()]

    def rows(self) -> Iterator[MovieRecord | SkippedRow]:
        for row, name in enumerate(self.json_files, start=1):
            try:
                yield self._record(row, name)
            except RowError as exc:
                yield SkippedRow(row, str(exc), {"file": name})

    def _record(self, row: int, name: str) -> MovieRecord:
        path = self.folder / name
        try:
            size = path.stat().st_size
        except OSError as exc:
            raise RowError(f"cannot read {name}: {exc.strerror or exc}") from None
        if size > MAX_JSON_BYTES:
            raise RowError(f"{name} is larger than {MAX_JSON_BYTES} bytes")
        try:
            data = json.loads(path.read_bytes())
        except OSError as exc:
            raise RowError(f"cannot read {name}: {exc.strerror or exc}") from None
        except RecursionError:
            # json.loads recurses per nesting level: 200,000 "[" would abort the whole run.
            raise RowError(f"{name} is nested too deeply to be a movie record") from None
        except ValueError as exc:
            raise RowError(f"{name} is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise RowError(f"{name} holds a {type(data).__name__}, not a movie object")
        title = clean_text(data.get("title"))
        if not title:
            raise RowError("title is missing")
        stem = name[: -len(".json")]
        imdb_id = parse_imdb_id(data.get("imdb_id") or (stem if stem.isdigit() else None))
        genres = data.get("genres")
        if genres is not None and not (isinstance(genres, list) and all(isinstance(g, str) for g in genres)):
            raise RowError("genres is not a list of names")
        overview = longest_plot(data.get("plot")) or longest_plot(data.get("plot outline"))
        return MovieRecord(
            row=row,
            source=self.kind,
            source_id=stem,
            imdb_id=imdb_id,
            title=title,
            original_title=clean_text(data.get("original title")),
            overview=overview,
            year=parse_year(data.get("year")),
            genres=genre_refs(genres or []),
            poster=self._poster(stem),
            where={"file": name},
        )

    def _poster(self, stem: str) -> PosterRef:
        image = self.images.get(stem)
        if image is None:
            return PosterRef(missing_reason=f"no {stem}.jpeg next to {stem}.json")
        try:
            return PosterRef(filename=image, data=(self.folder / image).read_bytes())
        except OSError as exc:
            return PosterRef(filename=image, missing_reason=f"cannot read {image}: {exc.strerror or exc}")
