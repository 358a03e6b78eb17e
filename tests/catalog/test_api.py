"""Catalog API: the movie list and detail, audited label writes with versions (409 on a stale
write), validation errors (jobs: tests/workers/test_api.py; models and predict:
tests/ml/test_api.py; the API as a whole: tests/genreweb/test_api.py)."""

from __future__ import annotations

import pytest

from catalog.models import LabelChange, MovieGenre
from ml.models import Prediction

pytestmark = pytest.mark.django_db


def test_movie_list_filters_and_shape(api_clients, world, django_assert_max_num_queries):
    api = api_clients["labeler"]
    with django_assert_max_num_queries(8):  # token, count, movies, labels: not one per movie
        body = api.get("/api/movies/?genre=drama").json()
    assert body["count"] == 2
    assert {m["title"] for m in body["results"]} == {"Long Road", "Quiet Years"}
    first = body["results"][0]
    assert {"id", "title", "year", "labels", "poster", "label_source", "label_version"} <= set(first)
    assert first["label_version"] == 1  # one imported label set
    assert first["poster"]["status"] == "ok" and first["poster"]["url"].startswith("http://testserver/media/")
    assert api.get("/api/movies/?q=quiet").json()["count"] == 1


def test_movie_list_validation_errors_name_the_parameter(api_clients, world):
    response = api_clients["labeler"].get("/api/movies/?year_min=soon&genre=nope&audit=maybe")
    assert response.status_code == 400
    assert {"year_min", "genre"} <= set(response.json())
    response = api_clients["labeler"].get("/api/movies/?audit=maybe")
    assert response.status_code == 400 and "audit" in response.json()


def test_movie_detail_has_history(api_clients, world):
    movie = world["movies"]["Night Shift"]
    body = api_clients["labeler"].get(f"/api/movies/{movie.pk}/").json()
    assert {(h["genre"], h["action"], h["origin"]) for h in body["history"]} == {
        ("Horror", "added", "imported"),
        ("Comedy", "added", "imported"),
    }


def test_labels_put_and_patch_are_audited(api_clients, labeler, world):
    api = api_clients["labeler"]
    movie = world["movies"]["Laugh Track"]
    url = f"/api/movies/{movie.pk}/labels/"
    version = api.get(f"/api/movies/{movie.pk}/").json()["label_version"]
    response = api.put(
        url, {"genres": ["Comedy", "romance"], "reason": "romcom", "label_version": version}, format="json"
    )
    assert response.status_code == 200, response.json()
    assert response.json()["added"] == ["Romance"] and response.json()["removed"] == []
    assert response.json()["label_version"] == version + 1
    assert [label["genre"] for label in response.json()["labels"]] == ["Comedy", "Romance"]
    change = LabelChange.objects.get(movie=movie, origin="person")
    assert (change.user, change.reason, change.genre.name) == (labeler, "romcom", "Romance")
    assert not Prediction.objects.get(movie=movie).disagrees  # the prediction refreshed
    response = api.patch(url, {"remove": ["Comedy"], "add": ["Drama"]}, format="json")
    assert response.status_code == 200
    assert set(MovieGenre.objects.filter(movie=movie).values_list("genre__name", flat=True)) == {"Drama", "Romance"}
    assert LabelChange.objects.filter(movie=movie, origin="person").count() == 3


def test_labels_write_from_an_older_version_is_refused_with_the_current_labels(api_clients, world):
    api = api_clients["labeler"]
    movie = world["movies"]["Laugh Track"]
    url = f"/api/movies/{movie.pk}/labels/"
    seen = api.get(f"/api/movies/{movie.pk}/").json()["label_version"]
    assert api.patch(url, {"add": ["Drama"]}, format="json").status_code == 200  # someone else, meanwhile
    history = LabelChange.objects.count()

    response = api.put(url, {"genres": ["Comedy", "Romance"], "label_version": seen}, format="json")
    assert response.status_code == 409
    body = response.json()
    assert body["genres"] == ["Comedy", "Drama"] and body["label_version"] == seen + 1
    assert [label["genre"] for label in body["labels"]] == ["Comedy", "Drama"]
    assert "changed" in body["detail"]
    stale_patch = api.patch(url, {"remove": ["Drama"], "label_version": seen}, format="json")
    assert stale_patch.status_code == 409 and stale_patch.json()["label_version"] == seen + 1
    assert set(movie.labels.values_list("genre__name", flat=True)) == {"Comedy", "Drama"}
    assert LabelChange.objects.count() == history  # nothing written

    # Redone from the version the 409 gave, it is saved.
    redo = api.put(url, {"genres": ["Comedy", "Romance"], "label_version": body["label_version"]}, format="json")
    assert redo.status_code == 200
    assert (redo.json()["added"], redo.json()["removed"], redo.json()["label_version"]) == (
        ["Romance"],
        ["Drama"],
        seen + 2,
    )
    assert api.get(f"/api/movies/{movie.pk}/").json()["label_version"] == seen + 2


def test_labels_unchanged_write_keeps_the_version(api_clients, world):
    api = api_clients["labeler"]
    movie = world["movies"]["Long Road"]
    response = api.patch(f"/api/movies/{movie.pk}/labels/", {"add": ["Drama"]}, format="json")
    assert response.status_code == 200 and response.json()["label_version"] == 1
    movie.refresh_from_db()
    assert movie.label_version == 1 and movie.label_source == "imported"


@pytest.mark.parametrize(
    "method, payload, field",
    [
        ("put", {"genres": ["Comedy", "Space Opera"]}, "genres"),
        ("put", {"genres": "Comedy"}, "genres"),
        ("put", {}, "genres"),
        ("patch", {}, "add"),
        ("patch", {"add": ["Drama"], "remove": ["Drama"]}, "remove"),
        ("put", {"genres": [], "reason": "x" * 501, "label_version": 1}, "reason"),
        ("put", {"genres": ["Comedy"]}, "label_version"),
        ("put", {"genres": ["Comedy"], "label_version": "new"}, "label_version"),
        ("patch", {"add": ["Comedy"], "label_version": -1}, "label_version"),
    ],
)
def test_labels_validation_errors(api_clients, world, method, payload, field):
    movie = world["movies"]["Long Road"]
    response = getattr(api_clients["labeler"], method)(f"/api/movies/{movie.pk}/labels/", payload, format="json")
    assert response.status_code == 400
    assert field in response.json()
    assert list(movie.labels.values_list("genre__name", flat=True)) == ["Drama"]


def test_labels_need_a_login(api_clients, world):
    movie = world["movies"]["Long Road"]
    assert (
        api_clients["anonymous"].put(f"/api/movies/{movie.pk}/labels/", {"genres": []}, format="json").status_code
        == 401
    )
    assert api_clients["labeler"].put("/api/movies/999999/labels/", {"genres": []}, format="json").status_code == 404
