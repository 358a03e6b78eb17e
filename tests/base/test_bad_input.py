"""Bad input over HTTP is a clear 4xx, never a 500; pages stay bounded whatever the vocabulary.

NUL characters: PostgreSQL refuses them in any text it stores or compares, so on PostgreSQL
(DATABASE_URL set) these requests used to end in a 500; on SQLite they must be a 400 too.
"""

from __future__ import annotations

import pytest
from django.urls import reverse

from catalog.models import Genre, Movie, MovieGenre
from workers.models import Job

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "method,body",
    [
        ("put", {"genres": ["Drama\u0000"]}),
        ("patch", {"add": ["Drama\u0000"]}),
        ("patch", {"remove": ["\u0000"]}),
        ("put", {"genres": ["Drama"], "reason": "typo\u0000"}),
    ],
)
def test_nul_in_label_write_is_a_400(api_clients, world, method, body):
    movie = world["movies"]["Long Road"]
    response = getattr(api_clients["labeler"], method)(f"/api/movies/{movie.pk}/labels/", body, format="json")
    assert response.status_code == 400, response.content[:300]
    assert "null character" in response.content.decode().lower()
    assert list(movie.labels.values_list("genre__name", flat=True)) == ["Drama"]


def test_nul_in_form_encoded_label_write_is_a_400(api_clients, world):
    movie = world["movies"]["Long Road"]
    response = api_clients["labeler"].patch(
        f"/api/movies/{movie.pk}/labels/", "add=Comedy%00", content_type="application/x-www-form-urlencoded"
    )
    assert response.status_code == 400
    assert response.json() == {"add": {"0": ["Null characters (U+0000) are not allowed."]}}


def test_nul_in_job_params_is_a_400(api_clients, world):
    before = Job.objects.count()
    for body in (
        {"kind": "import", "params": {"source": "csv", "path": "/tmp/a\u0000b"}},
        {"kind": "snapshot", "params": {"name": "x\u0000"}},
        {"kind": "snapshot", "params": {"k\u0000": 1}},
    ):
        response = api_clients["staff"].post("/api/jobs/", body, format="json")
        assert response.status_code == 400, response.content[:300]
    # The same through a form field (the JSON arrives as text, not through the JSON parser).
    response = api_clients["staff"].post("/api/jobs/", {"kind": "snapshot", "params": '{"name": "x\\u0000"}'})
    assert response.status_code == 400 and "params" in response.json()
    assert Job.objects.count() == before


def test_json_body_nested_too_deeply_is_a_400(api_clients, world):
    movie = world["movies"]["Long Road"]
    body = '{"genres": ' + "[" * 100_000 + "]" * 100_000 + "}"
    response = api_clients["labeler"].generic(
        "PUT", f"/api/movies/{movie.pk}/labels/", body, content_type="application/json"
    )
    assert response.status_code == 400
    assert "nested too deeply" in response.json()["detail"]


@pytest.mark.parametrize(
    "url",
    [
        "/api/movies/?genre=dra%00ma",
        "/api/movies/?q=%00",
        "/api/movies/?model=%00",
        "/api/jobs/?status=%00",
        "/api/predictions/?movie=1%00",
        "/api/genres/?x%00=1",
    ],
)
def test_nul_in_api_query_parameters_is_a_400(api_clients, world, url):
    response = api_clients["labeler"].get(url)
    assert response.status_code == 400
    assert "null character" in response.json()["detail"]


@pytest.mark.parametrize("url", ["/?genre=dra%00ma", "/?q=%00", "/insight/?x=%00"])
def test_nul_in_page_query_parameters_is_a_400(labeler_client, world, url):
    response = labeler_client.get(url)
    assert response.status_code == 400
    assert "null character" in response.content.decode()


@pytest.mark.parametrize("vs", ["abc", "1.5", "-1", "99999999999999999999", "١"])
def test_f1_plot_with_a_bad_vs_is_a_400(labeler_client, world, vs):
    version = world["version"]
    response = labeler_client.get(reverse("ml:plot", args=[version.pk, "f1"]), {"vs": vs})
    assert response.status_code == 400


def test_f1_plot_against_another_version_still_works(labeler_client, world):
    version = world["version"]
    response = labeler_client.get(reverse("ml:plot", args=[version.pk, "f1"]), {"vs": str(version.pk)})
    assert response.status_code == 200 and response["Content-Type"] == "image/png"


def test_unmatched_api_url_is_a_json_404(api_clients, world):
    response = api_clients["labeler"].get("/api/movies/9.5e-39/")  # matches no route
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json" and response.json() == {"detail": "Not found."}


# --- the OpenAPI schema says what the API returns ---------------------------------------


@pytest.fixture
def openapi(api_clients):
    response = api_clients["staff"].get("/api/schema/?format=json")
    assert response.status_code == 200
    return response.json()


def test_schema_marks_label_usernames_nullable(openapi, api_clients, world):
    components = openapi["components"]["schemas"]
    assert components["Label"]["properties"]["set_by"]["nullable"] is True
    assert components["LabelChange"]["properties"]["user"]["nullable"] is True
    # ...and the API does return null for imported labels.
    movie = world["movies"]["Long Road"]
    body = api_clients["labeler"].get(f"/api/movies/{movie.pk}/").json()
    assert body["labels"][0]["set_by"] is None and body["history"][0]["user"] is None


def test_schema_documents_error_responses(openapi):
    paths = openapi["paths"]
    error_ref = {"$ref": "#/components/schemas/Error"}

    def codes(path, method):
        return set(paths[path][method]["responses"])

    for path, operations in paths.items():
        for method, operation in operations.items():
            assert {"400", "401", "403"} <= set(operation["responses"]), (method, path)
            assert operation["responses"]["400"]["content"]["application/json"]["schema"] == error_ref
            if "{id}" in path:
                assert "404" in operation["responses"], (method, path)
    assert {"200", "409", "404", "415"} <= codes("/api/movies/{id}/labels/", "put")
    assert {"200", "409"} <= codes("/api/jobs/{id}/cancel/", "post")
    assert {"201", "409"} <= codes("/api/jobs/{id}/retry/", "post")
    assert {"200", "409", "429", "503"} <= codes("/api/predict/", "post")
    assert "404" in codes("/api/movies/", "get")  # ?page=999: "Invalid page."


# --- the insight page is bounded whatever the vocabulary size -------------------------------


def test_insight_with_1500_genres_stays_bounded(labeler_client, world, settings, django_assert_max_num_queries):
    settings.GENREWEB_INSIGHT_MAX_GENRES = 30
    genres = Genre.objects.bulk_create([Genre(name=f"Garbage {i:04d}", slug=f"garbage-{i:04d}") for i in range(1500)])
    movies = list(Movie.objects.all())
    MovieGenre.objects.bulk_create(
        [MovieGenre(movie=movies[i % len(movies)], genre=genre) for i, genre in enumerate(genres)]
    )
    with django_assert_max_num_queries(25):
        response = labeler_client.get("/insight/")
    assert response.status_code == 200
    insight = response.context["insight"]
    assert insight["total_genres"] == 1505 and insight["shown_genres"] == 30
    assert len(insight["distribution"]) == 30
    assert len(insight["heatmap"]["labels"]) == 30 and len(insight["heatmap"]["cells"]) == 30 * 30
    assert len(insight["share_rows"]) == 30
    # The most used genres are the ones shown.
    assert {"Drama", "Comedy"} <= {row["genre"].name for row in insight["distribution"]}
    assert b"the 30 most used of 1,505 genres" in response.content
