"""Workers test fixtures: tiny generated CSV imports, movies and a real tiny model (eager Celery
is tests/fixtures.py's)."""

from __future__ import annotations

import pytest

from tests.factories import build_tiny_model_version, make_movies, write_csv_folder


@pytest.fixture
def csv_folder(tmp_path):
    return lambda n, **kw: write_csv_folder(tmp_path / "import", n, **kw)


@pytest.fixture
def tiny_model(db):
    """(model_version_id, movie_ids): 32 generated movies and a TF-IDF model trained on them."""
    movie_ids = make_movies(32)
    return build_tiny_model_version(), movie_ids
