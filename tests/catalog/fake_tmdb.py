"""A fake TMDB API v3 on 127.0.0.1 for importer tests (http.server in a thread).

It serves realistic bodies for /3/configuration, /3/genre/movie/list, /3/discover/movie,
/3/movie/{id} and poster images under /t/p/{size}/{path}, checks the api_key query param or
the v4 bearer token, caps discover at ``max_pages`` pages (TMDB: 500) and can be told to
misbehave: ``server.fail(path_prefix, *faults)`` queues faults that the next matching
requests get, in order. A fault is "429" (no Retry-After), ("429", "2") (with Retry-After),
"500", "503", "malformed" (truncated JSON with status 200), "401", "404" or ("slow", seconds) (answers
normally, but only after that delay: a client timeout).
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

TMDB_GENRES = [
    {"id": 28, "name": "Action"},
    {"id": 12, "name": "Adventure"},
    {"id": 16, "name": "Animation"},
    {"id": 35, "name": "Comedy"},
    {"id": 80, "name": "Crime"},
    {"id": 18, "name": "Drama"},
    {"id": 14, "name": "Fantasy"},
    {"id": 27, "name": "Horror"},
    {"id": 878, "name": "Science Fiction"},
    {"id": 53, "name": "Thriller"},
]
GENRE_NAMES = {g["id"]: g["name"] for g in TMDB_GENRES}
POSTER_SIZES = ["w92", "w154", "w185", "w342", "w500", "w780", "original"]


@dataclass
class FakeMovie:
    id: int
    title: str
    release_date: str
    genre_ids: list[int]
    overview: str = "A plot."
    imdb_id: str | None = None
    poster_path: str | None = None
    poster: bytes = b""
    popularity: float = 10.0

    def summary(self) -> dict:
        return {
            "adult": False,
            "backdrop_path": None,
            "genre_ids": self.genre_ids,
            "id": self.id,
            "original_language": "en",
            "original_title": self.title,
            "overview": self.overview,
            "popularity": self.popularity,
            "poster_path": self.poster_path,
            "release_date": self.release_date,
            "title": self.title,
            "video": False,
            "vote_average": 6.5,
            "vote_count": 120,
        }

    def details(self) -> dict:
        body = self.summary()
        body.pop("genre_ids")
        body.update(
            genres=[{"id": gid, "name": GENRE_NAMES[gid]} for gid in self.genre_ids],
            imdb_id=self.imdb_id,
            runtime=101,
            status="Released",
            tagline="",
            budget=0,
            revenue=0,
        )
        return body


@dataclass
class FakeTmdbState:
    api_key: str = "test-key"
    bearer_token: str = "test-bearer"
    page_size: int = 20
    max_pages: int = 500
    movies: dict[int, FakeMovie] = field(default_factory=dict)
    faults: dict[str, list] = field(default_factory=lambda: defaultdict(list))
    requests: list[str] = field(default_factory=list)  # paths (with query) in arrival order
    lock: threading.Lock = field(default_factory=threading.Lock)


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        # A client that timed out on a "slow" fault has hung up; that is the point.
        import sys

        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)


class FakeTmdbServer:
    def __init__(self) -> None:
        self.state = FakeTmdbState()
        handler = type("BoundHandler", (_Handler,), {"state": self.state, "server_ref": self})
        self.httpd = _QuietServer(("127.0.0.1", 0), handler)
        self.port = self.httpd.server_address[1]
        self.root = f"http://127.0.0.1:{self.port}"
        self.api_base = f"{self.root}/3"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def start(self) -> FakeTmdbServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def add(self, movie: FakeMovie) -> FakeMovie:
        self.state.movies[movie.id] = movie
        return movie

    def fail(self, path_prefix: str, *faults) -> None:
        with self.state.lock:
            self.state.faults[path_prefix].extend(faults)

    def requests_to(self, path_prefix: str) -> list[str]:
        return [r for r in self.state.requests if r.startswith(path_prefix)]


class _Handler(BaseHTTPRequestHandler):
    state: FakeTmdbState
    server_ref: FakeTmdbServer

    def log_message(self, *args) -> None:  # keep test output quiet
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        with self.state.lock:
            self.state.requests.append(self.path)
            fault = self._take_fault(url.path)
        if isinstance(fault, tuple) and fault[0] == "slow":
            time.sleep(float(fault[1]))
        elif fault is not None:
            return self._fault(fault)
        if url.path.startswith("/t/p/"):
            return self._image(url.path)
        if not self._authorised(query):
            return self._json(
                401,
                {
                    "status_code": 7,
                    "status_message": "Invalid API key: You must be granted a valid key.",
                    "success": False,
                },
            )
        route = url.path.removeprefix("/3")
        if route == "/configuration":
            return self._json(
                200,
                {
                    "images": {
                        "base_url": f"http://127.0.0.1:{self.server_ref.port}/t/p/",
                        "secure_base_url": f"http://127.0.0.1:{self.server_ref.port}/t/p/",
                        "poster_sizes": POSTER_SIZES,
                        "backdrop_sizes": ["w300", "w780", "w1280", "original"],
                    },
                    "change_keys": ["adult", "genres", "images"],
                },
            )
        if route == "/genre/movie/list":
            return self._json(200, {"genres": TMDB_GENRES})
        if route == "/discover/movie":
            return self._discover(query)
        if route.startswith("/movie/"):
            movie = self.state.movies.get(int(route.split("/")[2])) if route.split("/")[2].isdigit() else None
            if movie is None:
                return self._json(
                    404,
                    {
                        "success": False,
                        "status_code": 34,
                        "status_message": "The resource you requested could not be found.",
                    },
                )
            return self._json(200, movie.details())
        return self._json(404, {"success": False, "status_code": 34, "status_message": "Unknown route."})

    def _take_fault(self, path: str):
        for prefix, queue in self.state.faults.items():
            if path.startswith(prefix) and queue:
                return queue.pop(0)
        return None

    def _fault(self, fault) -> None:
        kind, retry_after = (fault, None) if isinstance(fault, str) else fault
        if kind == "429":
            headers = {"Retry-After": retry_after} if retry_after is not None else {}
            return self._json(
                429,
                {"success": False, "status_code": 25, "status_message": "Your request count is over the limit."},
                headers,
            )
        if kind == "malformed":
            return self._raw(200, b'{"page": 1, "results": [{"id": 1, "title": "Tru', "application/json")
        if kind == "401":
            return self._json(
                401, {"status_code": 7, "status_message": "Invalid API key: You must be granted a valid key."}
            )
        if kind == "404":
            return self._json(
                404, {"status_code": 34, "status_message": "The resource you requested could not be found."}
            )
        return self._raw(int(kind), b"<html><body>Internal error</body></html>", "text/html")

    def _authorised(self, query: dict) -> bool:
        if query.get("api_key") == self.state.api_key:
            return True
        return self.headers.get("Authorization") == f"Bearer {self.state.bearer_token}"

    def _discover(self, query: dict) -> None:
        page = int(query.get("page", 1))
        if page > self.state.max_pages:
            return self._json(
                422, {"errors": [f"page must be less than or equal to {self.state.max_pages}"], "success": False}
            )
        low = query.get("primary_release_date.gte", "0000-00-00")
        high = query.get("primary_release_date.lte", "9999-99-99")
        hits = sorted(
            (m for m in self.state.movies.values() if low <= m.release_date <= high),
            key=lambda m: (m.release_date, m.id),
        )
        size = self.state.page_size
        chunk = hits[(page - 1) * size : page * size]
        return self._json(
            200,
            {
                "page": page,
                "results": [m.summary() for m in chunk],
                "total_pages": max(1, math.ceil(len(hits) / size)),
                "total_results": len(hits),
            },
        )

    def _image(self, path: str) -> None:
        # /t/p/<size>/<file>
        parts = path.split("/")
        size, name = parts[3], "/" + "/".join(parts[4:])
        if size not in POSTER_SIZES:
            return self._raw(404, b"size not found", "text/plain")
        for movie in self.state.movies.values():
            if movie.poster_path == name and movie.poster:
                return self._raw(200, movie.poster, "image/jpeg")
        return self._raw(404, b"not found", "text/plain")

    def _json(self, status: int, body, headers: dict | None = None) -> None:
        self._raw(status, json.dumps(body).encode(), "application/json;charset=utf-8", headers)

    def _raw(self, status: int, data: bytes, content_type: str, headers: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)
