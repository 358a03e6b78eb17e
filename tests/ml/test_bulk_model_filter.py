"""Bulk changes, undo and export through ml's extensions of the catalog views and API: "all
matching this filter" includes the production model's opinion (model=disagrees), and the
review queues' predictions are refreshed after each batch (ml.views / ml.api hooks)."""

from __future__ import annotations

import csv
import io

import pytest
from django.core.management import call_command
from django.test import Client

from catalog.models import ChangeSet, Genre, Movie
from ml.models import Prediction
from ml.services.registry import production_version
from ml.services.review import filter_movies_by_opinion
from tests.factories import api_client_for, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def seeded():
    call_command("seed_synthetic", movies=40, predictions=True, batch=20, stdout=io.StringIO())
    return production_version()


def disagreeing(version) -> set[int]:
    return set(filter_movies_by_opinion(Movie.objects.all(), "disagrees", version).values_list("pk", flat=True))


def test_bulk_over_the_model_filter_and_the_queue_refresh(seeded):
    client = Client()
    client.force_login(make_user("lena"))
    wanted = disagreeing(seeded)
    assert 0 < len(wanted) < 40
    western = Genre.objects.get(slug="western")
    form = {"action": "add", "genre": "western", "scope": "filter", "filter": "model=disagrees", "confirmed": "1"}
    assert client.post("/bulk/", form).status_code == 302
    change_set = ChangeSet.objects.get()
    assert change_set.matched == len(wanted)
    changed = set(change_set.changes.values_list("movie_id", flat=True))
    assert changed and changed <= wanted
    # the hook refreshed the predictions: they were compared against the new labels
    for prediction in Prediction.objects.filter(movie_id__in=changed, model_version=seeded):
        assert western.name in prediction.labels_at_prediction

    rows = list(
        csv.DictReader(io.StringIO(b"".join(client.get("/export.csv?model=disagrees").streaming_content).decode()))
    )
    assert {int(r["id"]) for r in rows} == disagreeing(seeded)

    assert client.post(f"/changes/{change_set.pk}/undo/").status_code == 302
    for prediction in Prediction.objects.filter(movie_id__in=changed, model_version=seeded):
        assert western.name not in prediction.labels_at_prediction


def test_api_bulk_and_export_take_the_model_filter(seeded):
    api = api_client_for(make_user("lena"))
    wanted = disagreeing(seeded)
    answer = api.post("/api/change-sets/", {"add": ["Western"], "filter": {"model": "disagrees"}}, format="json")
    assert answer.status_code == 201 and answer.json()["matched"] == len(wanted)
    bad = api.post("/api/change-sets/", {"add": ["Western"], "filter": {"model": "sure"}}, format="json")
    assert bad.status_code == 400 and "model" in bad.json()["filter"]
    records = b"".join(api.get("/api/movies/export/json/?model=disagrees").streaming_content)
    assert records.count(b'"id":') == len(disagreeing(seeded))
