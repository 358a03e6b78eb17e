"""ML test fixtures: a tiny generated catalog (movies, labels, poster derivatives); no real data."""

from __future__ import annotations

import hashlib
import io

import numpy as np
import pytest
from django.core.files.base import ContentFile
from PIL import Image

# Words and poster colours that go with each genre, so tiny models have something to learn.
GENRE_WORDS = {
    "Action": "explosion chase gunfight hero mission",
    "Comedy": "funny joke laugh wedding prank",
    "Drama": "tears family loss grief letter",
    "Horror": "ghost scream blood haunted night",
}
GENRE_COLOURS = {"Action": (200, 30, 30), "Comedy": (240, 220, 40), "Drama": (40, 60, 200), "Horror": (20, 20, 20)}


def poster_jpeg(genres: list[str], seed: int = 0, size: int = 48) -> bytes:
    rng = np.random.default_rng(seed)
    colour = (
        np.mean([GENRE_COLOURS.get(g, (128, 128, 128)) for g in genres], axis=0)
        if genres
        else np.array([128, 128, 128])
    )
    pixels = np.clip(colour + rng.normal(0, 20, (size, size, 3)), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


@pytest.fixture
def make_movie(db):
    """Factory: a movie with imported labels and (optionally) a processed poster derivative."""
    from catalog.labels import set_labels
    from catalog.models import Genre, LabelOrigin, Movie, Poster

    counter = iter(range(1, 100_000))

    def make(genres=("Drama",), *, overview: str | None = None, poster: bool = True, **fields) -> Movie:
        n = next(counter)
        if overview is None:
            words = " ".join(GENRE_WORDS.get(g, g.lower()) for g in genres)
            overview = f"Story {n}: {words}."
        movie = Movie.objects.create(
            title=f"Movie {n}",
            overview=overview,
            missing_overview=not overview.strip(),
            source="csv",
            source_id=f"m{n}",
            **fields,
        )
        genre_rows = [Genre.objects.get_or_create(name=g)[0] for g in genres]
        set_labels(movie, genre_rows, origin=LabelOrigin.IMPORTED)
        if poster:
            data = poster_jpeg(list(genres), seed=n)
            record = Poster(movie=movie, status=Poster.Status.OK, derivative_checksum=hashlib.sha256(data).hexdigest())
            record.derivative.save(f"d-{n}.jpg", ContentFile(data), save=False)
            record.save()
        return movie

    return make


@pytest.fixture
def tiny_catalog(make_movie):
    """40 movies over 4 genres (some with two genres), all with overview and poster."""
    combos = [("Action",), ("Comedy",), ("Drama",), ("Horror",), ("Action", "Comedy"), ("Drama", "Horror")]
    return [make_movie(combos[i % len(combos)]) for i in range(40)]
