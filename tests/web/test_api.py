"""REST API: permissions per endpoint and role, validation errors, audited labels, upload
checks, throttling, a real ad-hoc prediction, and an OpenAPI schema that validates."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command

from catalog.models import LabelChange, MovieGenre
from ml.models import Prediction
from tests.factories import image_bytes
from workers.models import Job

pytestmark = pytest.mark.django_db


def urls(world):
    movie = world["movies"]["Laugh Track"]
    version = world["version"]
    return {
        "genres": "/api/genres/",
        "movies": "/api/movies/",
        "movie": f"/api/movies/{movie.pk}/",
        "versions": "/api/model-versions/",
        "version": f"/api/model-versions/{version.pk}/",
        "predictions": f"/api/predictions/?movie={movie.pk}",
        "jobs": "/api/jobs/",
    }


@pytest.mark.parametrize("name", ["genres", "movies", "movie", "versions", "version", "predictions", "jobs"])
def test_read_endpoints_per_role(api_clients, world, name):
    url = urls(world)[name]
    assert api_clients["anonymous"].get(url).status_code == 401
    assert api_clients["labeler"].get(url).status_code == 200
    assert api_clients["staff"].get(url).status_code == 200


def test_anonymous_read_setting_opens_reads_only(api_clients, world, settings):
    settings.GENREWEB_ANONYMOUS_READ = True
    anonymous = api_clients["anonymous"]
    assert anonymous.get("/api/movies/").status_code == 200
    movie = world["movies"]["Long Road"]
    assert anonymous.put(f"/api/movies/{movie.pk}/labels/", {"genres": []}, format="json").status_code == 401


def test_session_auth_works_for_the_browser(labeler_client, world):
    assert labeler_client.get("/api/movies/").status_code == 200


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
    assert {m["title"] for m in api.get("/api/movies/?model=disagrees").json()["results"]} == {
        "Laugh Track",
        "Night Shift",
    }
    assert {m["title"] for m in api.get("/api/movies/?model=unsure").json()["results"]} == {"Edge Case"}
    assert api.get("/api/movies/?q=quiet").json()["count"] == 1


def test_movie_list_validation_errors_name_the_parameter(api_clients, world):
    response = api_clients["labeler"].get("/api/movies/?year_min=soon&genre=nope&model=maybe")
    assert response.status_code == 400
    assert {"year_min", "genre"} <= set(response.json())
    response = api_clients["labeler"].get("/api/movies/?model=maybe")
    assert response.status_code == 400 and "model" in response.json()


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
    assert not Prediction.objects.get(movie=movie).disagrees  # queue refreshed
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


def test_jobs_create_is_staff_only(api_clients, world, monkeypatch):
    monkeypatch.setattr("workers.jobs._send_job_message", lambda *args: None)
    payload = {"kind": "preprocess", "params": {}}
    assert api_clients["anonymous"].post("/api/jobs/", payload, format="json").status_code == 401
    assert api_clients["labeler"].post("/api/jobs/", payload, format="json").status_code == 403
    response = api_clients["staff"].post("/api/jobs/", payload, format="json")
    assert response.status_code == 201
    job = Job.objects.get()
    assert response.json()["id"] == job.pk and job.requested_by.username == "sam"
    detail = api_clients["labeler"].get(f"/api/jobs/{job.pk}/").json()
    assert detail["status"] == "queued" and detail["log"]


def test_jobs_validation_errors_name_the_field(api_clients, world):
    staff = api_clients["staff"]
    response = staff.post("/api/jobs/", {"kind": "train", "params": {"config": "tfidf-linear"}}, format="json")
    assert response.status_code == 400 and "snapshot_id" in response.json()["params"]
    response = staff.post("/api/jobs/", {"kind": "teleport"}, format="json")
    assert response.status_code == 400 and "kind" in response.json()
    response = staff.post("/api/jobs/", {"kind": "import", "params": {"source": "csv", "path": "/nope"}}, format="json")
    assert response.status_code == 400 and "path" in response.json()["params"]
    assert staff.get("/api/jobs/?status=bogus").status_code == 400
    assert not Job.objects.exists()


def test_job_cancel_and_retry(api_clients, world, monkeypatch):
    monkeypatch.setattr("workers.jobs._send_job_message", lambda *args: None)
    monkeypatch.setattr("workers.jobs._revoke", lambda ids: None)
    job_id = api_clients["staff"].post("/api/jobs/", {"kind": "preprocess"}, format="json").json()["id"]
    assert api_clients["labeler"].post(f"/api/jobs/{job_id}/cancel/").status_code == 403
    response = api_clients["staff"].post(f"/api/jobs/{job_id}/cancel/")
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    assert api_clients["staff"].post(f"/api/jobs/{job_id}/cancel/").status_code == 409
    assert api_clients["labeler"].post(f"/api/jobs/{job_id}/retry/").status_code == 403
    retried = api_clients["staff"].post(f"/api/jobs/{job_id}/retry/")
    assert retried.status_code == 201 and retried.json()["retry_of"] == job_id


def test_model_versions_and_promote(api_clients, world):
    from ml.models import ModelVersion
    from ml.services.registry import production_version

    a = world["version"]
    b = ModelVersion.objects.create(
        name="tiny v2",
        snapshot=a.snapshot,
        genres=a.genres,
        thresholds=a.thresholds,
        artifact_path="models/none2",
        checksum="d" * 64,
    )
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
    assert api.get(f"/api/predictions/?model_version={version.pk}&disagrees=true").json()["count"] == 2
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


def test_schema_validates(tmp_path):
    """drf-spectacular's own validation, failing on any warning."""
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yaml"))
    schema = (tmp_path / "schema.yaml").read_text()
    for path in (
        "/api/movies/{id}/labels/",
        "/api/jobs/{id}/cancel/",
        "/api/model-versions/{id}/promote/",
        "/api/predict/",
        "/api/predictions/",
    ):
        assert path in schema


def test_schema_and_docs_are_served(labeler_client):
    assert labeler_client.get("/api/schema/").status_code == 200
    assert labeler_client.get("/api/docs/").status_code == 200


def test_schema_documents_label_versions_and_the_409():
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator().get_schema(request=None, public=True)
    labels = schema["paths"]["/api/movies/{id}/labels/"]
    components = schema["components"]["schemas"]

    def body(ref):
        return components[ref["$ref"].rsplit("/", 1)[1]]

    for method in ("put", "patch"):
        responses = labels[method]["responses"]
        assert {"200", "400", "404", "409"} <= set(responses), method
        conflict = body(responses["409"]["content"]["application/json"]["schema"])
        assert {"genres", "labels", "label_version", "detail"} <= set(conflict["properties"])
        assert "label_version" in body(responses["200"]["content"]["application/json"]["schema"])["properties"]
    put_body = body(labels["put"]["requestBody"]["content"]["application/json"]["schema"])
    patch_body = body(labels["patch"]["requestBody"]["content"]["application/json"]["schema"])
    assert "label_version" in put_body["required"] and "label_version" not in patch_body.get("required", [])
    assert {"add", "remove"} <= set(patch_body["properties"])
    for movie in ("Movie", "MovieDetail"):
        assert "label_version" in components[movie]["properties"]
