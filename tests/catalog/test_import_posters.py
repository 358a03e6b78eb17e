"""catalog.posters.store_original / mark_missing, and concurrent imports on PostgreSQL."""

from __future__ import annotations

import hashlib
import threading

import pytest
from django.db import connection

from catalog import posters
from catalog.importers import run_import
from catalog.models import Movie, Poster


@pytest.fixture
def movie(db):
    return Movie.objects.create(title="Poster test", source="manual")


def test_same_bytes_are_stored_once(movie, make_image):
    data = make_image()
    assert posters.store_original(movie, data, "a.jpg", "http://img/a.jpg") is True
    poster = Poster.objects.get(movie=movie)
    assert poster.checksum == hashlib.sha256(data).hexdigest() and poster.status == "pending"
    poster.status = "ok"
    poster.save()
    assert posters.store_original(movie, data, "renamed.jpg") is False
    poster.refresh_from_db()
    assert poster.status == "ok", "unchanged bytes keep the preprocessing result"


def test_changed_bytes_replace_the_file_and_reset_status(movie, make_image, django_capture_on_commit_callbacks):
    posters.store_original(movie, make_image(seed=1), "a.jpg")
    poster = Poster.objects.get(movie=movie)
    old_name = poster.original.name
    Poster.objects.filter(pk=poster.pk).update(status="corrupt", error="bad")
    with django_capture_on_commit_callbacks(execute=True):
        assert posters.store_original(movie, make_image(seed=2), "a.jpg") is True
    poster.refresh_from_db()
    assert (poster.status, poster.error) == ("pending", "")
    assert poster.original.read() == make_image(seed=2)
    assert not poster.original.storage.exists(old_name)


@pytest.mark.parametrize("data", [b"", "a string", None])
def test_non_file_data_is_refused_gracefully(movie, data):
    assert posters.store_original(movie, data, "x.jpg") is False
    poster = Poster.objects.get(movie=movie)
    assert poster.status == "missing" and not poster.original and poster.error


def test_oversized_data_is_refused(movie, monkeypatch):
    monkeypatch.setattr(posters, "MAX_POSTER_BYTES", 10)
    assert posters.store_original(movie, b"x" * 11, "big.jpg") is False
    assert "over the 10 byte limit" in Poster.objects.get(movie=movie).error


def test_mark_missing_keeps_a_poster_stored_earlier(movie, make_image):
    posters.store_original(movie, make_image(), "a.jpg")
    posters.mark_missing(movie, "gone from the source")
    poster = Poster.objects.get(movie=movie)
    assert poster.status == "pending" and poster.original


def test_files_are_deleted_when_the_block_fails(movie, make_image, media_root):
    with pytest.raises(RuntimeError):
        with posters.delete_new_files_on_error():
            posters.store_original(movie, make_image(), "a.jpg")
            raise RuntimeError("row failed")
    assert not [p for p in media_root.rglob("*") if p.is_file()]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_identical_imports_at_once_store_each_movie_once(tmp_path, make_image):
    folder = tmp_path / "set"
    (folder / "posters").mkdir(parents=True)
    lines = ["id,title,year,overview,genres,source_id,poster,imdb_id"]
    for i in range(1, 41):
        lines.append(f"tmdb_{i},Movie {i},2000,Plot {i}.,Drama|Comedy,tmdb:{i},tmdb_{i}.jpg,tt{i:07d}")
        (folder / "posters" / f"tmdb_{i}.jpg").write_bytes(make_image(seed=i))
    (folder / "movies.csv").write_text("\n".join(lines) + "\n")
    runs, errors = [], []

    def import_once():
        try:
            runs.append(run_import("csv", {"path": str(folder)}))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=import_once) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors
    assert Movie.objects.count() == 40 and Poster.objects.count() == 40
    assert sum(r.created for r in runs) == 40
    assert all(r.skipped == 0 for r in runs)
    for movie in Movie.objects.all():
        assert set(movie.genres.values_list("name", flat=True)) == {"Drama", "Comedy"}
