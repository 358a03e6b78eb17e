"""The in-sample review queues ("model disagrees", "model unsure" from the production model's
own predictions on the labels it was trained on) and their ``?model=`` / ``?disagrees=`` /
``?unsure=`` filters are gone: old bookmarks redirect to the label-audit queues that replace
them, the API refuses the old filters (400, naming what replaces them) instead of ignoring
them (which would mean "every movie"), and nothing offers them any more."""

from __future__ import annotations

import pytest
from django.urls import NoReverseMatch, Resolver404, resolve, reverse

from catalog.models import ChangeSet, LabelChange
from ml.services import review

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "old, new",
    [
        ("/models/review/disagrees/", "/models/review/errors/"),
        ("/models/review/unsure/", "/models/review/uncertain/"),
        ("/models/review/disagrees/?page=3", "/models/review/errors/?page=3"),
        ("/models/review/disagrees/7/", "/models/review/errors/7/"),
        ("/models/review/unsure/2/", "/models/review/uncertain/2/"),
    ],
)
def test_old_queue_urls_redirect_to_the_audit_queues(labeler_client, world, old, new):
    response = labeler_client.get(old)
    assert response.status_code == 302 and response["Location"] == new
    assert review.REPLACED_QUEUES == {"disagrees": "errors", "unsure": "uncertain"}


def test_old_queue_urls_still_need_a_login(client, world):
    response = client.get("/models/review/disagrees/")
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))


def test_unknown_queues_and_the_old_accept_endpoint_are_gone(labeler_client, world):
    assert labeler_client.get("/models/review/nonsense/").status_code == 404
    assert labeler_client.get("/models/review/nonsense/1/").status_code == 404
    with pytest.raises(NoReverseMatch):
        reverse("ml:accept", args=[1])
    with pytest.raises(Resolver404):
        resolve("/models/suggestions/1/accept/")
    prediction = world["movies"]["Laugh Track"].predictions.get()
    assert labeler_client.post(f"/models/suggestions/{prediction.pk}/accept/").status_code == 404
    assert not LabelChange.objects.exclude(origin="imported").exists()


@pytest.mark.parametrize(
    "old, new",
    [
        ("/?model=disagrees", "/?audit=errors"),
        ("/?view=list&model=unsure&genre=comedy", "/?view=list&genre=comedy&audit=uncertain"),
        ("/?model=disagrees&audit=unlabeled", "/?audit=unlabeled"),  # an explicit audit filter wins
        ("/?model=maybe&q=laugh", "/?q=laugh"),  # an unknown old value is dropped
        ("/?model=", "/"),
        ("/export.csv?model=disagrees&genre=drama", "/export.csv?genre=drama&audit=errors"),
        ("/export.json?model=unsure", "/export.json?audit=uncertain"),
    ],
)
def test_old_catalog_and_export_filters_redirect_to_the_audit_filter(labeler_client, world, old, new):
    response = labeler_client.get(old)
    assert response.status_code == 302 and response["Location"] == new


def test_the_catalog_page_offers_no_model_opinion_filter(labeler_client, world):
    html = labeler_client.get("/?view=list").content.decode()
    assert 'name="audit"' in html and 'name="model"' not in html
    assert 'value="disagrees"' not in html and 'value="unsure"' not in html
    assert '<option value="uncertain">model unsure</option>' in html  # the audit queue's option
    # an unknown audit queue is named, not silently "every movie" for a bulk change
    bad = labeler_client.get("/?view=list&audit=sure")
    assert bad.status_code == 200 and "audit: Select a valid choice" in bad.content.decode()


@pytest.mark.parametrize("filter_", ["model=disagrees", "model=unsure", "audit=sure"])
def test_a_bulk_change_over_a_removed_or_unknown_filter_changes_nothing(labeler_client, world, filter_, jobs_at_commit):
    form = {"action": "add", "genre": "drama", "scope": "filter", "filter": filter_, "confirmed": "1"}
    response = labeler_client.post("/bulk/", form, follow=True)
    assert "Nothing changed: the filter is not valid" in response.content.decode()
    assert not ChangeSet.objects.exists() and not LabelChange.objects.exclude(origin="imported").exists()
    with jobs_at_commit():  # the same change over a valid filter (its job runs at commit)
        labeler_client.post("/bulk/", {**form, "filter": "genre=comedy"})
    assert ChangeSet.objects.get().changed == 2


@pytest.mark.parametrize(
    "url",
    [
        "/api/movies/?model=disagrees",
        "/api/movies/?model=unsure",
        "/api/movies/?model=",
        "/api/movies/export/json/?model=disagrees",
        "/api/movies/export/csv/?model=unsure",
    ],
)
def test_the_movies_api_refuses_the_removed_model_filter(api_clients, world, url):
    response = api_clients["labeler"].get(url)
    assert response.status_code == 400
    message = str(response.json()["model"])
    assert "removed" in message and "audit=errors" in message and "audit=uncertain" in message


def test_the_apis_still_name_an_unknown_audit_queue(api_clients, world):
    response = api_clients["labeler"].get("/api/movies/?audit=disagrees")
    assert response.status_code == 400 and "errors" in str(response.json()["audit"])
    for old in review.REPLACED_QUEUES:
        response = api_clients["labeler"].get(f"/api/label-issues/?queue={old}")
        assert response.status_code == 400 and "uncertain" in str(response.json()["queue"])
        response = api_clients["labeler"].post(
            "/api/reviews/", {"movie": world["movies"]["Laugh Track"].pk, "action": "skip", "queue": old}, format="json"
        )
        assert response.status_code == 400 and "queue" in response.json()


@pytest.mark.parametrize("query", ["disagrees=true", "unsure=1", "disagrees=0"])
def test_the_predictions_api_refuses_the_removed_opinion_filters(api_clients, world, query):
    version = world["version"]
    response = api_clients["labeler"].get(f"/api/predictions/?model_version={version.pk}&{query}")
    assert response.status_code == 400
    (name,) = response.json()
    assert query.startswith(name) and "audit=" in str(response.json()[name])
    # without them the list is as before, and each prediction still carries its own fields
    body = api_clients["labeler"].get(f"/api/predictions/?model_version={version.pk}").json()
    assert body["count"] == 5 and {"disagrees", "disagreement", "uncertainty"} <= set(body["results"][0])


@pytest.mark.parametrize("filter_", [{"model": "disagrees"}, {"model": "unsure", "genre": "comedy"}])
def test_a_bulk_change_set_over_the_removed_model_filter_is_refused(api_clients, world, filter_):
    response = api_clients["labeler"].post("/api/change-sets/", {"add": ["Drama"], "filter": filter_}, format="json")
    assert response.status_code == 400 and "model" in str(response.json()["filter"])
    assert not ChangeSet.objects.exists()


def test_the_openapi_schema_documents_no_removed_filter(api_clients, world):
    schema = api_clients["labeler"].get("/api/schema/?format=json").json()
    for path in ("/api/movies/", "/api/movies/export/csv/", "/api/movies/export/json/", "/api/predictions/"):
        names = {p["name"] for p in schema["paths"][path]["get"].get("parameters", [])}
        assert not names & {"model", "disagrees", "unsure"}, (path, names)
    movies = {p["name"]: p for p in schema["paths"]["/api/movies/"]["get"]["parameters"]}
    assert movies["audit"]["schema"]["enum"] == sorted(["errors", "unlabeled", "uncertain"])
    assert "answers 400" in movies["audit"]["description"]
    assert "removed" in schema["paths"]["/api/predictions/"]["get"]["description"]


def test_the_old_queue_helpers_are_gone():
    for name in (
        "QUEUES",
        "OPINIONS",
        "UNSURE_MIN",
        "UNSURE_MIN_EXPECTED_ERRORS",
        "filter_movies_by_opinion",
        "filter_predictions_by_opinion",
        "is_unsure",
        "queue_predictions",
    ):
        assert not hasattr(review, name), name
