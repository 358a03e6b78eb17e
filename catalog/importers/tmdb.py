"""TMDB API v3 importer: discover by release-date windows, details, posters.

TMDB serves at most 500 pages per query, so a date window whose results need more pages is
split in two (recursively, down to a single day). Movies are upserted by TMDB id and a
poster already stored from the same URL is not downloaded again, so re-running an import
(e.g. after a failure) resumes cheaply.

Params: api_key or bearer_token (default: settings.TMDB_API_KEY / TMDB_BEARER_TOKEN),
date_from / date_to (YYYY-MM-DD), poster_size (default w342; "none" skips posters),
language (en-US), details (true: one /movie/{id} call per movie, which adds the IMDb id),
limit, and max_pages, backoff_base, max_retries, timeout (s). The API address is the
TMDB_API_BASE setting, never a param: the key is sent there.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

from django.conf import settings

from . import http
from .parsing import clean_text, parse_imdb_id, require_storable
from .poster_sources import stored_from_url
from .records import GenreRef, ImporterError, MovieRecord, PosterRef, RowError, SkippedRow, Source
from .registry import argument, register

TMDB_MAX_PAGES = 500
DEFAULT_POSTER_SIZE = "w342"


def parse_iso_date(value: Any, name: str) -> date | None:
    text = clean_text(value)
    if not text:
        return None
    try:
        return date.fromisoformat(text[:10])
    except ValueError:
        raise RowError(f"{name} {text!r} is not a YYYY-MM-DD date") from None


@register(
    "tmdb",
    "TMDB API",
    params={
        "api_key",
        "bearer_token",
        "date_from",
        "date_to",
        "poster_size",
        "language",
        "details",
        "max_pages",
        "max_retries",
        "backoff_base",
        "timeout",
    },
    help="Import movies from the TMDB API v3 (discover by release date, details, posters). Credentials "
    "default to TMDB_API_KEY / TMDB_BEARER_TOKEN from the environment.",
    arguments=[
        argument("--from", dest="date_from", form_type="date", help="first release date, YYYY-MM-DD"),
        argument("--to", dest="date_to", form_type="date", help="last release date, YYYY-MM-DD (default: today)"),
        argument("--api-key", help="TMDB v3 API key (default: $TMDB_API_KEY)"),
        argument("--bearer-token", help="TMDB v4 read access token (default: $TMDB_BEARER_TOKEN)"),
        argument(
            "--poster-size", default="w342", help="TMDB poster size, e.g. w185, w342, original; 'none' skips posters"
        ),
        argument("--language", default="en-US", help="language of titles and overviews"),
        argument(
            "--no-details",
            dest="details",
            action="store_false",
            help="skip the per-movie details call (faster; no IMDb ids)",
        ),
    ],
)
class TmdbSource(Source):
    batch_size = 20  # every movie costs requests: report progress (and allow cancel) often

    def __init__(self, params: dict):
        super().__init__()
        api_key = params.get("api_key") or settings.TMDB_API_KEY
        bearer = params.get("bearer_token") or settings.TMDB_BEARER_TOKEN
        if not api_key and not bearer:
            raise ImporterError(
                "TMDB import needs api_key or bearer_token (or TMDB_API_KEY / TMDB_BEARER_TOKEN in the environment)"
            )
        try:
            self.date_from = parse_iso_date(params.get("date_from"), "date_from") or date(1874, 1, 1)
            self.date_to = parse_iso_date(params.get("date_to"), "date_to") or date.today()
        except RowError as exc:
            raise ImporterError(str(exc)) from None
        if self.date_from > self.date_to:
            raise ImporterError(f"date_from {self.date_from} is after date_to {self.date_to}")
        self.language = params.get("language") or "en-US"
        self.details = bool(params.get("details", True))
        self.max_pages = int(params.get("max_pages") or TMDB_MAX_PAGES)
        self.client = http.HttpClient(
            base_url=settings.TMDB_API_BASE,
            params={"api_key": api_key} if api_key else {},
            headers={"Authorization": f"Bearer {bearer}"} if bearer and not api_key else {},
            max_retries=int(params.get("max_retries", 5)),
            backoff_base=float(params.get("backoff_base", 1.0)),
            timeout=float(params.get("timeout", 20.0)),
            name="TMDB",
        )
        try:
            self.genre_names = self._genre_list()
            self.extra_genres = dict(self.genre_names)
            self.image_base, sizes = self._configuration()
        except http.AuthError as exc:
            raise ImporterError(f"{exc}. Check the API key / bearer token.") from None
        except http.HttpError as exc:
            raise ImporterError(f"TMDB is not usable: {exc}") from None
        size = params.get("poster_size") or DEFAULT_POSTER_SIZE
        if size == "none":
            self.poster_size = None
        elif size not in sizes:
            raise ImporterError(f"poster_size {size!r} is not offered by TMDB; choose one of {', '.join(sizes)}")
        else:
            self.poster_size = size

    # --- API calls ------------------------------------------------------------------

    def _genre_list(self) -> dict[int, str]:
        body = self.client.get_json("/genre/movie/list", {"language": self.language})
        genres = body.get("genres") if isinstance(body, dict) else None
        if not isinstance(genres, list):
            raise ImporterError("TMDB genre list has no 'genres' list")
        return {g["id"]: g["name"] for g in genres if isinstance(g, dict) and "id" in g and g.get("name")}

    def _configuration(self) -> tuple[str, list[str]]:
        body = self.client.get_json("/configuration")
        images = body.get("images") if isinstance(body, dict) else None
        if not isinstance(images, dict) or not (images.get("secure_base_url") or images.get("base_url")):
            raise ImporterError("TMDB configuration has no images.secure_base_url")
        return images.get("secure_base_url") or images["base_url"], list(images.get("poster_sizes") or [])

    def _discover(self, start: date, end: date, page: int) -> dict:
        body = self.client.get_json(
            "/discover/movie",
            {
                "primary_release_date.gte": start.isoformat(),
                "primary_release_date.lte": end.isoformat(),
                "sort_by": "primary_release_date.asc",
                "include_adult": "false",
                "include_video": "false",
                "language": self.language,
                "page": page,
            },
        )
        if not isinstance(body, dict) or not isinstance(body.get("results"), list):
            raise http.HttpError(f"TMDB discover page {page} for {start}..{end} has no results list")
        return body

    # --- walking the windows --------------------------------------------------------

    def _pages(self, start: date, end: date) -> Iterator[tuple[str, list | None, str]]:
        """Yield (window description, results or None, error) for every page of the window."""
        where = f"{start}..{end}"
        try:
            first = self._discover(start, end, 1)
        except http.AuthError:
            raise
        except http.HttpError as exc:
            yield where, None, f"discover {where} page 1 failed: {exc}"
            return
        total_pages = int(first.get("total_pages") or 0)
        if self.total is None:
            self.total = int(first.get("total_results") or 0)
        if total_pages > self.max_pages and start < end:
            middle = start + (end - start) // 2
            yield from self._pages(start, middle)
            yield from self._pages(middle + timedelta(days=1), end)
            return
        if total_pages > self.max_pages:
            self.warn(f"{start} alone has {total_pages} pages; TMDB serves only {self.max_pages}, the rest is left out")
        yield where, first["results"], ""
        for page in range(2, min(total_pages, self.max_pages) + 1):
            try:
                yield where, self._discover(start, end, page)["results"], ""
            except http.AuthError:
                raise
            except http.HttpError as exc:
                yield where, None, f"discover {where} page {page} failed: {exc}"

    def rows(self) -> Iterator[MovieRecord | SkippedRow]:
        row = 0
        try:
            for where, results, error in self._pages(self.date_from, self.date_to):
                if results is None:
                    row += 1
                    yield SkippedRow(row, error, {"window": where})
                    continue
                for summary in results:
                    row += 1
                    yield self._movie(row, summary)
        except http.AuthError as exc:
            raise ImporterError(f"{exc}. Check the API key / bearer token.") from None
        finally:
            if self.client.retries:
                self.warn("TMDB retries: " + ", ".join(f"{n}x {why}" for why, n in sorted(self.client.retries.items())))
            self.client.close()

    def _movie(self, row: int, summary: Any) -> MovieRecord | SkippedRow:
        tmdb_id = summary.get("id") if isinstance(summary, dict) else None
        where = {"tmdb_id": tmdb_id}
        if not isinstance(tmdb_id, int) or tmdb_id <= 0:
            return SkippedRow(row, f"discover result without a valid id: {str(summary)[:120]}", where)
        data = summary
        if self.details:
            try:
                data = self.client.get_json(f"/movie/{tmdb_id}", {"language": self.language})
            except http.AuthError:
                raise
            except http.HttpError as exc:
                return SkippedRow(row, f"details of TMDB movie {tmdb_id} failed: {exc}", where)
            if not isinstance(data, dict) or data.get("id") != tmdb_id:
                return SkippedRow(row, f"details of TMDB movie {tmdb_id} are not a movie object", where)
        try:
            return self._record(row, tmdb_id, data, where)
        except RowError as exc:
            return SkippedRow(row, str(exc), where)

    def _record(self, row: int, tmdb_id: int, data: dict, where: dict) -> MovieRecord:
        title = clean_text(data.get("title"))
        if not title:
            raise RowError(f"TMDB movie {tmdb_id} has no title")
        if isinstance(data.get("genres"), list):
            genres = [
                GenreRef(clean_text(g.get("name")), g.get("id") if isinstance(g.get("id"), int) else None)
                for g in data["genres"]
                if isinstance(g, dict) and clean_text(g.get("name"))
            ]
        else:
            genres = [
                GenreRef(self.genre_names[gid], gid) for gid in data.get("genre_ids") or [] if gid in self.genre_names
            ]
        popularity = data.get("popularity")
        return MovieRecord(
            row=row,
            source=self.kind,
            source_id=str(tmdb_id),
            tmdb_id=tmdb_id,
            imdb_id=parse_imdb_id(data.get("imdb_id")),
            title=title,
            original_title=clean_text(data.get("original_title")),
            overview=clean_text(data.get("overview")),
            release_date=parse_iso_date(data.get("release_date"), "release_date"),
            original_language=clean_text(data.get("original_language")),
            popularity=float(popularity) if isinstance(popularity, (int, float)) else None,
            genres=genres,
            poster=self._poster(tmdb_id, data.get("poster_path")),
            where=where,
        )

    def _poster(self, tmdb_id: int, poster_path: Any) -> PosterRef | None:
        if self.poster_size is None:
            return None
        if not isinstance(poster_path, str) or not poster_path.strip():
            return PosterRef(missing_reason="TMDB has no poster for this movie")
        require_storable(poster_path, "poster_path")
        url = f"{self.image_base.rstrip('/')}/{self.poster_size}/{poster_path.strip().lstrip('/')}"
        # TMDB poster paths are content-addressed: the same URL means the same image.
        if stored_from_url(url, tmdb_id=tmdb_id):
            return PosterRef(source_url=url, already_stored=True)
        try:
            data = self.client.get_bytes(url)
        except http.AuthError:
            raise
        except http.HttpError as exc:
            return PosterRef(source_url=url, missing_reason=f"poster download failed: {exc}"[:255])
        return PosterRef(filename=poster_path.strip().lstrip("/"), data=data, source_url=url)
