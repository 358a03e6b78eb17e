"""Workers test fixtures: eager Celery, tiny generated CSV imports, movies and a real tiny model."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

GENRES = ["Action", "Comedy", "Drama", "Horror"]
# Words that make the genre learnable for a TF-IDF model on a handful of movies.
GENRE_WORDS = {
    "Action": "explosion chase gunfight hero mission",
    "Comedy": "funny hilarious joke laugh prank",
    "Drama": "family grief tears struggle love",
    "Horror": "ghost blood haunted scream monster",
}


def jpeg_bytes(seed: int, size: tuple[int, int] = (96, 144)) -> bytes:
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, size=(size[1] // 12, size[0] // 12, 3), dtype=np.uint8)
    picture = Image.fromarray(blocks, "RGB").resize(size, Image.Resampling.NEAREST)
    buffer = io.BytesIO()
    picture.save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


def movie_rows(n: int, *, start: int = 1) -> list[dict]:
    rows = []
    for i in range(start, start + n):
        genres = [GENRES[i % 4]] + ([GENRES[(i + 1) % 4]] if i % 3 == 0 else [])
        overview = " ".join(GENRE_WORDS[g] for g in genres) + f" story number {i}"
        rows.append(
            {
                "id": i,
                "title": f"Generated movie {i}",
                "year": 1990 + i % 30,
                "overview": overview,
                "genres": "|".join(genres),
                "source_id": f"tmdb:{900000 + i}",
                "poster": f"{i}.jpg",
                "imdb_id": f"tt{7000000 + i}",
            }
        )
    return rows


def write_csv_folder(folder: Path, n: int, *, posters: bool = True) -> Path:
    """A folder shaped like the devset: movies.csv + posters/<id>.jpg."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = movie_rows(n)
    with open(folder / "movies.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    if posters:
        (folder / "posters").mkdir(exist_ok=True)
        for row in rows:
            (folder / "posters" / row["poster"]).write_bytes(jpeg_bytes(row["id"]))
    return folder


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


def make_movies(n: int, *, start: int = 1) -> list[int]:
    """Movies with labels (through catalog.labels, the one way to set them)."""
    from catalog.labels import set_labels
    from catalog.models import Genre, LabelOrigin, Movie

    genres = {name: Genre.objects.get_or_create(name=name)[0] for name in GENRES}
    ids = []
    for row in movie_rows(n, start=start):
        movie = Movie.objects.create(
            title=row["title"],
            year=row["year"],
            overview=row["overview"],
            source="csv",
            source_id=row["source_id"],
        )
        set_labels(movie, [genres[g] for g in row["genres"].split("|")], origin=LabelOrigin.IMPORTED)
        ids.append(movie.pk)
    return ids


def build_tiny_model_version(n_movies: int = 32) -> int:
    """A real model version: a snapshot of generated movies and a TF-IDF model trained by ml services."""
    from ml.services.snapshots import build_snapshot
    from ml.services.training import train_model

    snapshot = build_snapshot(min_genre_count=2, seed=3)
    return train_model(snapshot.pk, "tfidf-linear").model_version.pk


@pytest.fixture
def tiny_model(db):
    """(model_version_id, movie_ids): 32 generated movies and a TF-IDF model trained on them."""
    movie_ids = make_movies(32)
    return build_tiny_model_version(), movie_ids
