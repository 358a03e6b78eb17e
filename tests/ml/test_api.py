"""Model API: versions and promotion, predictions per movie and version, ad-hoc predict (upload
checks, throttling, a missing artifact, a real trained model)."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile

from tests.factories import image_bytes

pytestmark = pytest.mark.django_db


def test_model_versions_and_promote(api_clients, world, candidate_version):
    from ml.services.registry import production_version

    a, b = world["version"], candidate_version
    listing = api_clients["labeler"].get("/api/model-versions/").json()["results"]
    by_id = {v["id"]: v for v in listing}
    assert by_id[a.pk]["is_production"] and not by_id[b.pk]["is_production"]
    assert by_id[a.pk]["headline"]["micro_f1"] == 0.7
    detail = api_clients["labeler"].get(f"/api/model-versions/{a.pk}/").json()
    assert len(detail["evaluations"][0]["genre_metrics"]) == 5
    assert api_clients["anonymous"].post(f"/api/model-versions/{b.pk}/promote/").status_code == 401
    assert api_clients["labeler"].post(f"/api/model-versions/{b.pk}/promote/").status_code == 403
    response = api_clients["staff"].post(f"/api/model-versions/{b.pk}/promote/")
    assert response.status_code == 200 and response.json()["is_production"]
    assert production_version() == b


def test_predictions_per_movie_and_per_version(api_clients, world):
    api = api_clients["labeler"]
    version = world["version"]
    assert api.get(f"/api/predictions/?model_version={version.pk}").json()["count"] == 5
    movie = world["movies"]["Laugh Track"]
    body = api.get(f"/api/predictions/?movie={movie.pk}").json()
    assert body["count"] == 1 and body["results"][0]["suggested_add"] == ["Romance"]
    assert api.get("/api/predictions/").status_code == 400
    assert "movie" in api.get("/api/predictions/?movie=abc").json()


@pytest.mark.parametrize(
    "name, data, content_type",
    [
        ("notes.jpg", b"definitely not an image", "image/jpeg"),
        ("empty.png", b"", "image/png"),
        ("bomb.png", None, "image/png"),
        ("script.svg", b"<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>", "image/svg+xml"),
    ],
)
def test_predict_rejects_bad_uploads_with_400(api_clients, world, name, data, content_type):
    # None: a tiny file that claims a huge image (decompression bomb).
    data = image_bytes(12_000, 12_000, colour=0, mode="1", fmt="PNG") if data is None else data
    upload = SimpleUploadedFile(name, data, content_type=content_type)
    response = api_clients["labeler"].post("/api/predict/", {"overview": "", "poster": upload}, format="multipart")
    assert response.status_code == 400, response.content
    assert "poster" in response.json()


def test_predict_rejects_huge_uploads(api_clients, world, settings):
    settings.GENREWEB_UPLOAD_MAX_BYTES = 1000
    upload = SimpleUploadedFile("big.jpg", image_bytes(400, 600, colour=(180, 40, 40)), content_type="image/jpeg")
    response = api_clients["labeler"].post("/api/predict/", {"poster": upload}, format="multipart")
    assert response.status_code == 400 and "too large" in response.json()["poster"][0]


def test_predict_needs_input_and_login(api_clients, world):
    assert api_clients["anonymous"].post("/api/predict/", {"overview": "x"}, format="json").status_code == 401
    response = api_clients["labeler"].post("/api/predict/", {"overview": "   "}, format="json")
    assert response.status_code == 400 and "overview" in response.json()
    response = api_clients["labeler"].post("/api/predict/", {"overview": "x", "model_version": 999}, format="json")
    assert response.status_code == 400 and "model_version" in response.json()


def test_predict_with_a_missing_artifact_is_a_clear_503(api_clients, world):
    response = api_clients["labeler"].post("/api/predict/", {"overview": "a ghost story"}, format="json")
    assert response.status_code == 503
    message = response.json()["model_version"][0]
    assert "cannot be used" in message
    assert str(settings.MEDIA_ROOT) not in message and "/" not in message  # no server paths


def test_predict_is_throttled(api_clients, world, settings, monkeypatch):
    from django.core.cache import cache
    from rest_framework.throttling import ScopedRateThrottle

    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"predict": "2/min"}}
    # The class read the rates at import; monkeypatch puts the original back after the test
    # (an assignment here leaked 2/min into every later test in the process).
    monkeypatch.setattr(ScopedRateThrottle, "THROTTLE_RATES", {"predict": "2/min"})
    cache.clear()
    codes = [
        api_clients["labeler"].post("/api/predict/", {"overview": " "}, format="json").status_code for _ in range(3)
    ]
    cache.clear()  # the throttle counters, should the cache be a shared one
    assert codes == [400, 400, 429]


@pytest.mark.slow  # trains a real model
def test_adhoc_prediction_with_a_trained_model(api_clients, db, settings, tmp_path, staff):
    """End to end: train the tiny TF-IDF model, promote it, POST an overview and a poster."""
    from catalog.labels import set_labels
    from catalog.models import Genre, Movie
    from ml.services.inference import clear_predictor_cache
    from ml.services.registry import promote
    from ml.services.snapshots import build_snapshot
    from ml.services.training import train_model

    settings.GENREWEB_ML_CACHE_DIR = tmp_path / "ml-cache"
    clear_predictor_cache()
    words = {"Horror": "ghost haunted scream blood night", "Comedy": "funny laugh joke silly party"}
    genres = {name: Genre.objects.create(name=name) for name in words}
    for i in range(24):
        name = "Horror" if i % 2 else "Comedy"
        movie = Movie.objects.create(
            title=f"T{i}", overview=f"{words[name]} story {i}", source="csv", source_id=f"p{i}"
        )
        set_labels(movie, [genres[name]], origin="imported")
    # seed 13: the split these small models were written against (the default is now 0)
    snapshot = build_snapshot(min_genre_count=1, fractions=(0.6, 0.2, 0.2), seed=13)
    run = train_model(snapshot.pk, {"preset": "tfidf-linear", "epochs": 30, "tfidf_min_df": 1, "patience": 30})
    promote(run.model_version.pk, user=staff)
    upload = SimpleUploadedFile("p.jpg", image_bytes(60, 90, colour=(180, 40, 40)), content_type="image/jpeg")
    response = api_clients["labeler"].post(
        "/api/predict/", {"overview": "a haunted house, a ghost and a scream", "poster": upload}, format="multipart"
    )
    clear_predictor_cache()
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["model_version"] == run.model_version.pk
    assert body["genres"][0] == "Horror"
    assert {s["genre"] for s in body["scores"]} == {"Horror", "Comedy"}
    # the TF-IDF model reads text only: the answer says the poster was not used
    assert body["used_text"] is True and body["used_poster"] is False and body["ignored"] == ["poster"]
