"""Catalog test fixtures: small generated images and movies with posters (no real data)."""

from __future__ import annotations

import itertools

import pytest

from tests.factories import image_bytes, make_movie, make_poster


@pytest.fixture
def make_image():
    return image_bytes


@pytest.fixture
def movie_with_poster(db):
    """Factory: a Movie and its Poster whose original holds ``data`` (None: no poster file)."""
    numbers = itertools.count(1)

    def make(
        data: bytes | None = None,
        *,
        title: str | None = None,
        year: int | None = 2001,
        overview: str = "A plot.",
        **fields,
    ):
        n = next(numbers)
        movie = make_movie(title=title or f"Movie {n}", year=year, overview=overview, source_id=f"t{n}", **fields)
        return movie, make_poster(movie, original=data, name=f"poster-{n}.jpg")

    return make


@pytest.fixture
def fake_tmdb(settings):
    """A fake TMDB API on 127.0.0.1 (tests/catalog/fake_tmdb.py); settings.TMDB_API_BASE points at it."""
    from .fake_tmdb import FakeTmdbServer

    server = FakeTmdbServer().start()
    settings.TMDB_API_BASE = server.api_base
    settings.TMDB_API_KEY = ""
    settings.TMDB_BEARER_TOKEN = ""
    yield server
    server.stop()


@pytest.fixture
def recorded_sleeps(monkeypatch):
    """Importer HTTP retries record their waits here instead of sleeping."""
    from catalog.importers import http

    waits: list[float] = []
    monkeypatch.setattr(http, "sleep", waits.append)
    return waits
