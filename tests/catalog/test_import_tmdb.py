"""TMDB API importer against a local fake TMDB server (no network)."""

from __future__ import annotations

import io
from datetime import date

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from catalog.importers import ImporterError, run_import
from catalog.models import Genre, ImportRun, Movie, Poster

from .fake_tmdb import FakeMovie


def fill(server, make_image, count=5, *, without_poster=(3,)):
    for i in range(1, count + 1):
        server.add(
            FakeMovie(
                id=1000 + i,
                title=f"Film {i}",
                release_date=f"2020-01-{i:02d}",
                genre_ids=[28, 18] if i % 2 else [35],
                imdb_id=f"tt{9000000 + i}",
                poster_path=None if i in without_poster else f"/poster{i}.jpg",
                poster=make_image(seed=i),
                popularity=float(i),
            )
        )


def params(**extra):
    return {"api_key": "test-key", "date_from": "2020-01-01", "date_to": "2020-12-31", "backoff_base": 0.01, **extra}


@pytest.mark.django_db
def test_happy_path_imports_details_genres_and_posters(fake_tmdb, make_image, recorded_sleeps):
    fill(fake_tmdb, make_image)
    run = run_import("tmdb", params())

    assert (run.status, run.created, run.skipped, run.posters_stored) == ("succeeded", 5, 0, 4)
    assert run.params["api_key"] == "***", "credentials are never stored"
    movie = Movie.objects.get(tmdb_id=1001)
    assert (movie.title, movie.imdb_id, movie.release_date, movie.year, movie.source) == (
        "Film 1",
        "tt9000001",
        date(2020, 1, 1),
        2020,
        "tmdb",
    )
    assert set(movie.genres.values_list("name", flat=True)) == {"Action", "Drama"}
    assert Genre.objects.get(name="Action").tmdb_id == 28
    poster = movie.poster
    assert poster.source_url == f"{fake_tmdb.root}/t/p/w342/poster1.jpg"
    assert poster.original.read() == make_image(seed=1) and poster.status == "pending"
    no_poster = Poster.objects.get(movie__tmdb_id=1003)
    assert no_poster.status == "missing" and "no poster" in no_poster.error
    assert recorded_sleeps == []


@pytest.mark.django_db
def test_bearer_token_works_and_poster_size_is_honoured(fake_tmdb, make_image):
    fill(fake_tmdb, make_image, 2)
    run = run_import("tmdb", {"bearer_token": "test-bearer", "date_from": "2020-01-01", "poster_size": "w185"})
    assert run.created == 2
    assert fake_tmdb.requests_to("/t/p/w185/") and not fake_tmdb.requests_to("/t/p/w342/")


@pytest.mark.django_db
def test_rerun_resumes_without_downloading_posters_again(fake_tmdb, make_image):
    fill(fake_tmdb, make_image)
    run_import("tmdb", params())
    images_before = len(fake_tmdb.requests_to("/t/p/"))
    again = run_import("tmdb", params())
    assert (again.created, again.updated, again.unchanged, again.posters_stored) == (0, 0, 5, 0)
    assert len(fake_tmdb.requests_to("/t/p/")) == images_before
    assert Movie.objects.count() == 5


@pytest.mark.django_db
def test_wrong_key_fails_fast_and_clearly(fake_tmdb, make_image, recorded_sleeps):
    fill(fake_tmdb, make_image)
    with pytest.raises(ImporterError, match=r"401.*Invalid API key") as info:
        run_import("tmdb", params(api_key="wrong"))
    run = info.value.run
    assert run.status == ImportRun.Status.FAILED and "401" in run.error and run.finished_at
    assert len(fake_tmdb.state.requests) == 1 and recorded_sleeps == [], "no retries on 401"
    assert Movie.objects.count() == 0


@pytest.mark.django_db
def test_401_in_the_middle_stops_the_import_and_keeps_whole_batches(fake_tmdb, make_image, monkeypatch):
    from catalog.importers.tmdb import TmdbSource

    monkeypatch.setattr(TmdbSource, "batch_size", 2)
    fill(fake_tmdb, make_image)
    # Movies 1-2 make the first batch; the key is revoked while the second batch is read.
    fake_tmdb.fail("/3/movie/1004", "401")
    with pytest.raises(ImporterError, match="401"):
        run_import("tmdb", params())
    run = ImportRun.objects.get()
    assert run.status == "failed" and run.created == 2
    assert set(Movie.objects.values_list("tmdb_id", flat=True)) == {1001, 1002}


@pytest.mark.django_db
def test_429_honours_retry_after_else_backs_off(fake_tmdb, make_image, recorded_sleeps):
    fill(fake_tmdb, make_image, 2)
    fake_tmdb.fail("/3/discover/movie", ("429", "3"))
    fake_tmdb.fail("/3/movie/1001", "429")
    run = run_import("tmdb", params())

    assert run.created == 2
    assert recorded_sleeps[0] == 3.0
    # Backoff for a first retry: half a step plus jitter, step = backoff_base (0.01 s).
    assert 0.005 <= recorded_sleeps[1] <= 0.01
    assert any("2x rate limited" in w for w in run.warnings)


@pytest.mark.django_db
def test_too_long_retry_after_fails_clearly(fake_tmdb, make_image, recorded_sleeps):
    fill(fake_tmdb, make_image, 1)
    fake_tmdb.fail("/3/genre", ("429", "86400"))
    with pytest.raises(ImporterError, match="asks to wait 86400s"):
        run_import("tmdb", params())


@pytest.mark.django_db
def test_5xx_and_malformed_json_are_retried(fake_tmdb, make_image, recorded_sleeps):
    fill(fake_tmdb, make_image, 3)
    fake_tmdb.fail("/3/configuration", "500", "503")
    fake_tmdb.fail("/3/movie/1002", "malformed")
    fake_tmdb.fail("/t/p/w342/poster1.jpg", "500")
    run = run_import("tmdb", params())

    assert (run.created, run.skipped, run.posters_stored) == (3, 0, 2)
    assert len(recorded_sleeps) == 4
    # Exponential with jitter: retry n waits between half and all of backoff_base * 2**(n-1).
    assert 0.005 <= recorded_sleeps[0] <= 0.01 and 0.01 <= recorded_sleeps[1] <= 0.02


@pytest.mark.django_db
def test_bounded_retries_skip_the_row_with_a_reason(fake_tmdb, make_image, recorded_sleeps):
    fill(fake_tmdb, make_image, 3)
    fake_tmdb.fail("/3/movie/1002", *["malformed"] * 4)
    fake_tmdb.fail("/t/p/w342/poster1.jpg", *["500"] * 4)
    run = run_import("tmdb", params(max_retries=3))

    assert (run.created, run.skipped) == (2, 1)
    (skip,) = run.skipped_rows
    assert skip["tmdb_id"] == 1002 and "malformed JSON" in skip["reason"] and "after 3 retries" in skip["reason"]
    poster = Poster.objects.get(movie__tmdb_id=1001)
    assert poster.status == "missing" and "HTTP 500" in poster.error


@pytest.mark.django_db
def test_unknown_movie_and_missing_poster_file(fake_tmdb, make_image):
    fill(fake_tmdb, make_image, 2)
    fake_tmdb.fail("/3/movie/1001", "404")
    fake_tmdb.state.movies[1002].poster = b""  # the image server has lost this file
    run = run_import("tmdb", params())
    assert run.created == 1 and "404" in run.skipped_rows[0]["reason"]
    assert Poster.objects.get(movie__tmdb_id=1002).status == "missing"


@pytest.mark.django_db
def test_windows_over_the_page_cap_are_split_by_date(fake_tmdb, make_image):
    fake_tmdb.state.page_size, fake_tmdb.state.max_pages = 2, 2
    for i in range(9):
        fake_tmdb.add(FakeMovie(id=2000 + i, title=f"M{i}", release_date=f"2021-0{1 + i}-15", genre_ids=[18]))
    run = run_import("tmdb", params(date_from="2021-01-01", date_to="2021-12-31", max_pages=2, poster_size="none"))

    assert run.created == 9 and run.skipped == 0
    discover = fake_tmdb.requests_to("/3/discover/movie")
    assert not any("page=3" in r for r in discover), "never asks beyond the cap"
    assert any("gte%5D=2021-01-01" in r or "gte=2021-01-01" in r for r in discover)
    assert len({r.split("primary_release_date.gte=")[1][:10] for r in discover}) > 2, "split into windows"


@pytest.mark.django_db
def test_discover_only_mode_maps_genre_ids(fake_tmdb, make_image):
    fill(fake_tmdb, make_image, 2)
    run = run_import("tmdb", params(details=False, limit=1))
    assert run.created == 1
    movie = Movie.objects.get()
    assert movie.imdb_id is None and set(movie.genres.values_list("name", flat=True)) == {"Action", "Drama"}
    assert not fake_tmdb.requests_to("/3/movie/")


@pytest.mark.django_db
def test_bad_parameters_fail_clearly(fake_tmdb, make_image):
    with pytest.raises(ImporterError, match="needs api_key or bearer_token"):
        run_import("tmdb", {"date_from": "2020-01-01"})
    with pytest.raises(ImporterError, match="poster_size 'w9999' is not offered.*w342"):
        run_import("tmdb", params(poster_size="w9999"))
    with pytest.raises(ImporterError, match="after date_to"):
        run_import("tmdb", params(date_from="2021-01-01", date_to="2020-01-01"))


@pytest.mark.django_db
def test_import_tmdb_command(fake_tmdb, make_image):
    fill(fake_tmdb, make_image, 2)
    out = io.StringIO()
    call_command(
        "import_tmdb",
        "--api-key",
        "test-key",
        "--from",
        "2020-01-01",
        "--to",
        "2020-02-01",
        stdout=out,
        skip_checks=True,
    )
    assert "2 created" in out.getvalue()
    with pytest.raises(CommandError, match="401"):
        call_command("import_tmdb", "--api-key", "nope", "--from", "2020-01-01", stdout=io.StringIO(), skip_checks=True)


@pytest.mark.django_db
def test_timeouts_are_retried(fake_tmdb, make_image, recorded_sleeps):
    fill(fake_tmdb, make_image, 1)
    fake_tmdb.fail("/3/genre/movie/list", ("slow", 1.0))
    run = run_import("tmdb", params(timeout=0.2))
    assert run.created == 1 and len(recorded_sleeps) == 1
    assert any("1x timeout" in w for w in run.warnings)


@pytest.mark.django_db
def test_retry_after_as_http_date(fake_tmdb, make_image, recorded_sleeps):
    import email.utils
    import time

    fill(fake_tmdb, make_image, 1)
    fake_tmdb.fail("/3/configuration", ("429", email.utils.formatdate(time.time() + 30, usegmt=True)))
    run_import("tmdb", params())
    assert 25 <= recorded_sleeps[0] <= 30


@pytest.mark.django_db
def test_a_single_day_over_the_cap_is_imported_as_far_as_tmdb_allows(fake_tmdb, make_image):
    fake_tmdb.state.page_size, fake_tmdb.state.max_pages = 1, 2
    for i in range(3):
        fake_tmdb.add(FakeMovie(id=3000 + i, title=f"Same day {i}", release_date="2022-05-05", genre_ids=[18]))
    run = run_import("tmdb", params(date_from="2022-05-01", date_to="2022-05-09", max_pages=2, poster_size="none"))
    assert run.created == 2
    assert any("2022-05-05 alone has 3 pages" in w for w in run.warnings)
