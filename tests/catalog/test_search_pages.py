"""Search, sort and pagination as the catalog page and the movie list API serve them (one
catalog.search behind both)."""

from __future__ import annotations

import re

import pytest

from catalog.api import MAX_PAGE_SIZE
from catalog.labels import set_labels
from catalog.models import Genre, Movie

pytestmark = pytest.mark.django_db

FILLERS = 330  # 7 grid pages of 48 with the named movies: enough for a page window with gaps

NAMED = [
    # title, year, popularity
    ("The Author", 2001, 900.0),
    ("Thor", 2011, 1.0),
    ("Thor: Ragnarok", 2017, 2.0),
    ("Up", 2009, 3.0),
    ("Cup Final", 1991, 800.0),
    ("Supper Club", 1995, 700.0),
]


@pytest.fixture
def big_catalog(db):
    Movie.objects.bulk_create(
        [
            Movie(title=title, year=year, popularity=pop, source="csv", source_id=f"n{i}")
            for i, (title, year, pop) in enumerate(NAMED)
        ]
        + [
            Movie(
                title=f"Filler {i:03d}",
                year=1950 + i % 70,
                popularity=100.0 + i,
                overview="A filler movie.",
                source="csv",
                source_id=f"f{i}",
            )
            for i in range(FILLERS)
        ]
    )
    return {m.title: m for m in Movie.objects.filter(title__in=[n[0] for n in NAMED])}


def shown(response) -> list[str]:
    return [m.title for m in response.context["movies"]]


def test_typing_a_title_shows_that_movie_first(labeler_client, big_catalog):
    response = labeler_client.get("/?q=Thor")
    assert shown(response)[:2] == ["Thor", "Thor: Ragnarok"]
    assert "The Author" not in shown(response)
    assert response.context["page"].paginator.count == 2
    response = labeler_client.get("/?q=Up")
    assert shown(response) == ["Up"]  # not "Cup Final", not "Supper Club"


def test_sort_control_on_the_page(labeler_client, big_catalog):
    html = labeler_client.get("/?q=thor").content.decode()
    assert '<option value="">sort: best first (relevance)</option>' in html  # the default with a query
    assert " selected>" not in html[html.index('<select name="sort"') :].split("</select>")[0]
    for value in ("relevance", "popularity", "title", "year", "relabelled"):
        assert f'<option value="{value}"' in html
    assert "label_issue" not in html  # no label-audit data to sort by yet
    assert shown(labeler_client.get("/?q=thor&sort=year")) == ["Thor: Ragnarok", "Thor"]
    assert shown(labeler_client.get("/?sort=title&view=list"))[:3] == ["Cup Final", "Filler 000", "Filler 001"]
    assert shown(labeler_client.get("/"))[0] == "The Author"  # popularity without a query
    assert "sort: best first (popularity)" in labeler_client.get("/").content.decode()
    assert '<option value="year" selected>' in labeler_client.get("/?sort=year").content.decode()


def test_recently_relabelled_sort(labeler_client, labeler, big_catalog):
    drama = Genre.objects.create(name="Drama")
    set_labels(big_catalog["Up"], [drama], user=labeler)
    set_labels(big_catalog["Thor"], [drama], user=labeler)
    assert shown(labeler_client.get("/?sort=relabelled"))[:2] == ["Thor", "Up"]


def test_unknown_sort_is_a_field_error(labeler_client, api_clients, big_catalog):
    response = labeler_client.get("/?sort=label_issue")
    assert response.status_code == 200 and "sort" in response.context["form"].errors
    response = api_clients["labeler"].get("/api/movies/?sort=label_issue")
    assert response.status_code == 400 and "sort" in response.json()


def test_numbered_pagination(labeler_client, big_catalog):
    html = labeler_client.get("/?page=4").content.decode()
    nav = html[html.index('<nav class="pagination"') :]
    numbers = re.findall(r'class="page-number">(\d+)</a>', nav)
    assert numbers == ["1", "2", "3", "5", "6", "7"]  # first, two either side of 4, last
    assert '<span class="current" aria-current="page">4</span>' in nav
    assert "« first" in nav and "‹ previous" in nav and "next ›" in nav and "last »" in nav
    html = labeler_client.get("/?page=1").content.decode()
    nav = html[html.index('<nav class="pagination"') :]
    assert re.findall(r'class="page-number">(\d+)</a>', nav) == ["2", "3", "7"]
    assert '<span class="gap">…</span>' in nav
    # the links keep the filters
    html = labeler_client.get("/?q=filler&sort=title&page=2").content.decode()
    assert 'href="?q=filler&amp;sort=title&page=3"' in html
    page3 = shown(labeler_client.get("/?q=filler&sort=title&page=3"))
    assert page3[0] == "Filler 096" and len(page3) == 48


def test_api_page_size_is_honoured_and_capped(api_clients, big_catalog):
    api = api_clients["labeler"]
    body = api.get("/api/movies/?page_size=7&sort=title").json()
    assert len(body["results"]) == 7 and body["count"] == FILLERS + len(NAMED)
    assert [m["title"] for m in body["results"]][:2] == ["Cup Final", "Filler 000"]
    second = api.get("/api/movies/?page_size=7&sort=title&page=2").json()
    assert second["results"][0]["title"] == "Filler 006"
    assert len(api.get("/api/movies/").json()["results"]) == 50  # the default
    assert len(api.get(f"/api/movies/?page_size={MAX_PAGE_SIZE + 300}").json()["results"]) == MAX_PAGE_SIZE


def test_api_search_and_sort(api_clients, big_catalog):
    api = api_clients["labeler"]
    assert [m["title"] for m in api.get("/api/movies/?q=thor").json()["results"]] == ["Thor", "Thor: Ragnarok"]
    assert [m["title"] for m in api.get("/api/movies/?q=thor&sort=year").json()["results"]] == [
        "Thor: Ragnarok",
        "Thor",
    ]
    assert [m["title"] for m in api.get("/api/movies/?q=up").json()["results"]] == ["Up"]


def test_schema_documents_sort_and_page_size(api_clients):
    schema = api_clients["labeler"].get("/api/schema/", HTTP_ACCEPT="application/json").json()
    parameters = {p["name"]: p for p in schema["paths"]["/api/movies/"]["get"]["parameters"]}
    assert parameters["page_size"]["schema"]["maximum"] == MAX_PAGE_SIZE
    assert set(parameters["sort"]["schema"]["enum"]) == {"relevance", "popularity", "title", "year", "relabelled"}
