"""Bad input over HTTP is a clear 4xx, never a 500 (base.text_input and the JSON parser).

NUL characters: PostgreSQL refuses them in any text it stores or compares, so on PostgreSQL
(DATABASE_URL set) these requests used to end in a 500; on SQLite they must be a 400 too.
"""

from __future__ import annotations

import pytest

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
