"""Catalog test fixtures: small generated images and movies with posters (no real data)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from django.core.files.base import ContentFile
from PIL import Image


def image_bytes(
    width: int = 120,
    height: int = 180,
    *,
    mode: str = "RGB",
    fmt: str = "JPEG",
    gray: bool = False,
    seed: int = 0,
    **save,
) -> bytes:
    """A small picture with real texture (random blocks), colourful unless ``gray``."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, size=(max(1, height // 10), max(1, width // 10), 3), dtype=np.uint8)
    if gray:
        blocks[..., 1] = blocks[..., 2] = blocks[..., 0]
    picture = Image.fromarray(blocks, "RGB").resize((width, height), Image.Resampling.NEAREST)
    if mode != "RGB":
        picture = picture.convert(mode)
    buffer = io.BytesIO()
    picture.save(buffer, fmt, **save)
    return buffer.getvalue()


@pytest.fixture
def make_image():
    return image_bytes


@pytest.fixture
def movie_with_poster(db):
    """Factory: a Movie and its Poster whose original holds ``data`` (None: no poster file)."""
    from catalog.models import Movie, Poster

    counter = iter(range(1, 10_000))

    def make(
        data: bytes | None = None,
        *,
        title: str | None = None,
        year: int | None = 2001,
        overview: str = "A plot.",
        **fields,
    ):
        n = next(counter)
        movie = Movie.objects.create(
            title=title or f"Movie {n}",
            year=year,
            overview=overview,
            source="csv",
            source_id=f"t{n}",
            **fields,
        )
        poster = Poster(movie=movie)
        if data is not None:
            poster.original.save(f"poster-{n}.jpg", ContentFile(data), save=False)
        poster.save()
        return movie, poster

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
