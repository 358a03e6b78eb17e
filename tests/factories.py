"""The one set of test factories: generated images, movies (labels, posters), users and API
tokens, generated CSV imports and a tiny trained model version. Nothing here reads real data.

Plain functions, so tests, conftest fixtures and the processes tests start can all import them
(``from tests.factories import ...``). Database factories need a test database (``db``).
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

PASSWORD = "a-long-test-password-42"

GENRES = ["Action", "Comedy", "Drama", "Horror"]
# Words and poster colours that go with each genre, so tiny models have something to learn.
GENRE_WORDS = {
    "Action": "explosion chase gunfight hero mission",
    "Comedy": "funny hilarious joke laugh prank",
    "Drama": "family grief tears struggle love",
    "Horror": "ghost blood haunted scream monster",
}
GENRE_COLOURS = {"Action": (200, 30, 30), "Comedy": (240, 220, 40), "Drama": (40, 60, 200), "Horror": (20, 20, 20)}


# --- images ------------------------------------------------------------------------------------


def image_bytes(
    width: int = 120,
    height: int = 180,
    *,
    colour: tuple[int, ...] | int | None = None,
    noise: float = 0.0,
    seed: int = 0,
    mode: str = "RGB",
    fmt: str = "JPEG",
    gray: bool = False,
    **save,
) -> bytes:
    """An encoded picture (JPEG unless ``fmt``; ``save`` goes to PIL, e.g. ``quality=90``).

    Without ``colour``: random 10-pixel blocks, real texture, colourful unless ``gray``.
    With ``colour``: that flat colour, plus gaussian ``noise`` (standard deviation) if given.
    """
    rng = np.random.default_rng(seed)
    if colour is not None and not noise:
        picture = Image.new(mode, (width, height), colour)  # any size, no pixel array in memory
    else:
        if colour is not None:
            pixels = np.clip(np.array(colour)[None, None, :] + rng.normal(0, noise, (height, width, 3)), 0, 255)
            picture = Image.fromarray(pixels.astype(np.uint8), "RGB")
        else:
            blocks = rng.integers(0, 256, size=(max(1, height // 10), max(1, width // 10), 3), dtype=np.uint8)
            if gray:
                blocks[..., 1] = blocks[..., 2] = blocks[..., 0]
            picture = Image.fromarray(blocks, "RGB").resize((width, height), Image.Resampling.NEAREST)
        if mode != "RGB":
            picture = picture.convert(mode)
    buffer = io.BytesIO()
    picture.save(buffer, fmt, **save)
    return buffer.getvalue()


def genre_poster(genres: Sequence[str], *, seed: int = 0, size: int = 48) -> bytes:
    """A square JPEG in the genres' mean colour (grey for none or unknown genres), with noise."""
    colour = np.mean([GENRE_COLOURS.get(g, (128, 128, 128)) for g in genres], axis=0) if genres else (128, 128, 128)
    return image_bytes(size, size, colour=tuple(colour), noise=20, seed=seed, quality=90)


# --- movies, labels, posters -------------------------------------------------------------------


def make_movie(
    *,
    title: str,
    source_id: str,
    genres: Iterable[str] = (),
    overview: str = "",
    source: str | None = None,
    **fields,
):
    """A Movie (from the CSV source unless ``source``) and its imported labels, set through
    catalog.labels (the one way to set labels); genres are created by name as needed."""
    from catalog.labels import set_labels
    from catalog.models import Genre, LabelOrigin, Movie

    movie = Movie.objects.create(title=title, overview=overview, source=source or "csv", source_id=source_id, **fields)
    genres = list(genres)
    if genres:
        rows = [Genre.objects.get_or_create(name=name)[0] for name in genres]
        set_labels(movie, rows, origin=LabelOrigin.IMPORTED)
    return movie


def genre_names(movie) -> set[str]:
    """The movie's genres as the database has them now (re-read: a job may have changed them)."""
    from catalog.models import MovieGenre

    return set(MovieGenre.objects.filter(movie_id=movie.pk).values_list("genre__name", flat=True))


def make_poster(
    movie, *, original: bytes | None = None, derivative: bytes | None = None, name: str | None = None, **fields
):
    """The movie's Poster: ``original`` (as an importer stores it, not yet checked) and/or a
    processed ``derivative`` (with its checksum); neither: a poster row without a file."""
    from django.core.files.base import ContentFile

    from catalog.models import Poster

    name = name or f"{movie.source_id or movie.pk}.jpg"
    poster = Poster(movie=movie, **fields)
    if original is not None:
        poster.original.save(name, ContentFile(original), save=False)
    if derivative is not None:
        poster.derivative_checksum = hashlib.sha256(derivative).hexdigest()
        poster.derivative.save(name, ContentFile(derivative), save=False)
    poster.save()
    return poster


def movie_rows(n: int, *, start: int = 1) -> list[dict]:
    """Generated devset-shaped rows (id, title, year, overview, genres, source_id, poster, imdb_id):
    one or two of GENRES each, with the genres' words in the overview."""
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
    """A folder shaped like the devset: movies.csv (movie_rows) + posters/<id>.jpg."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = movie_rows(n)
    with open(folder / "movies.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    if posters:
        (folder / "posters").mkdir(exist_ok=True)
        for row in rows:
            (folder / "posters" / row["poster"]).write_bytes(image_bytes(96, 144, seed=row["id"], quality=85))
    return folder


def make_movies(n: int, *, start: int = 1) -> list[int]:
    """``n`` labelled movies from movie_rows (no posters); their ids."""
    return [
        make_movie(
            title=row["title"],
            year=row["year"],
            overview=row["overview"],
            source_id=row["source_id"],
            genres=row["genres"].split("|"),
        ).pk
        for row in movie_rows(n, start=start)
    ]


def build_tiny_model_version() -> int:
    """A real model version: a snapshot of the catalog's movies and a TF-IDF model trained on it
    by the ml services; its id."""
    from ml.services.snapshots import build_snapshot
    from ml.services.training import train_model

    snapshot = build_snapshot(min_genre_count=2, seed=3)
    return train_model(snapshot.pk, "tfidf-linear").model_version.pk


# --- users and API tokens ----------------------------------------------------------------------


def make_user(username: str, *, staff: bool = False, password: str = PASSWORD, **fields):
    from django.contrib.auth import get_user_model

    return get_user_model().objects.create_user(username, password=password, is_staff=staff, **fields)


def api_token(user) -> str:
    """The user's API token key (created on first use)."""
    from rest_framework.authtoken.models import Token

    return Token.objects.get_or_create(user=user)[0].key


def api_client_for(user):
    """A DRF test client authenticated with the user's token (``None``: anonymous)."""
    from rest_framework.test import APIClient

    api = APIClient()
    if user is not None:
        api.credentials(HTTP_AUTHORIZATION=f"Token {api_token(user)}")
    return api
