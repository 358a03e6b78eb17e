"""The API as a whole (genreweb/api_urls.py): read permissions per endpoint and role, the
anonymous-read setting, session auth, a JSON 404 for unmatched URLs, and an OpenAPI schema
that validates, is served and documents the error responses and nullable fields."""

from __future__ import annotations

import pytest
from django.core.management import call_command

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


def test_schema_and_docs_are_served_to_signed_in_users_only(labeler_client, client):
    for path in ("/api/schema/", "/api/docs/", "/api/redoc/"):
        assert labeler_client.get(path).status_code == 200
        assert client.get(path).status_code in (401, 403), path


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


def test_unmatched_api_url_is_a_json_404(api_clients, world):
    response = api_clients["labeler"].get("/api/movies/9.5e-39/")  # matches no route
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json" and response.json() == {"detail": "Not found."}


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
