"""Workers test fixtures: eager Celery, tiny generated CSV imports, movies and a real tiny model."""

from __future__ import annotations

import pytest

from tests.factories import build_tiny_model_version, make_movies, write_csv_folder


@pytest.fixture
def csv_folder(tmp_path):
    return lambda n, **kw: write_csv_folder(tmp_path / "import", n, **kw)


@pytest.fixture
def eager_celery():
    """Tasks run in-process when sent (no broker, no worker): for fast unit tests."""
    from genreweb.celery import app

    old = app.conf.task_always_eager, app.conf.task_eager_propagates
    app.conf.task_always_eager, app.conf.task_eager_propagates = True, False
    yield app
    app.conf.task_always_eager, app.conf.task_eager_propagates = old


@pytest.fixture
def tiny_model(db):
    """(model_version_id, movie_ids): 32 generated movies and a TF-IDF model trained on them."""
    movie_ids = make_movies(32)
    return build_tiny_model_version(), movie_ids
