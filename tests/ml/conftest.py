"""ML test fixtures: a tiny generated catalog (movies, labels, poster derivatives); no real data."""

from __future__ import annotations

import itertools

import pytest

from tests.factories import GENRE_WORDS, genre_poster, make_poster
from tests.factories import make_movie as build_movie


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Tiny models on a 2-core box run much faster single-threaded (and two xdist processes
    do not fight over the cores). Only when the module loaded torch: nothing is imported here."""
    import sys

    torch = sys.modules.get("torch")
    if torch is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def make_movie(db):
    """Factory: a movie with imported labels and (optionally) a processed poster derivative."""
    from catalog.models import Poster

    numbers = itertools.count(1)

    def make(genres=("Drama",), *, overview: str | None = None, poster: bool = True, **fields):
        n = next(numbers)
        if overview is None:
            words = " ".join(GENRE_WORDS.get(g, g.lower()) for g in genres)
            overview = f"Story {n}: {words}."
        movie = build_movie(
            title=f"Movie {n}",
            genres=genres,
            overview=overview,
            missing_overview=not overview.strip(),
            source_id=f"m{n}",
            **fields,
        )
        if poster:
            make_poster(movie, derivative=genre_poster(genres, seed=n), name=f"d-{n}.jpg", status=Poster.Status.OK)
        return movie

    return make


@pytest.fixture
def tiny_catalog(make_movie):
    """40 movies over 4 genres (some with two genres), all with overview and poster."""
    combos = [("Action",), ("Comedy",), ("Drama",), ("Horror",), ("Action", "Comedy"), ("Drama", "Horror")]
    return [make_movie(combos[i % len(combos)]) for i in range(40)]
