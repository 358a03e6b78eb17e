"""Bulk changes, undo and export through ml's extensions of the catalog views and API: "all
matching this filter" is the browse page's filter, and the production model's predictions
are refreshed after each batch (ml.views / ml.api hooks). The removed ``model=`` filter is
refused there (tests/ml/test_removed_queues.py)."""

from __future__ import annotations

import csv
import io

import pytest
from django.core.management import call_command
from django.db.models import Count
from django.test import Client

from catalog.models import ChangeSet, Genre, Movie
from ml.models import Prediction
from ml.services.registry import production_version
from tests.factories import api_client_for, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def seeded():
    call_command("seed_synthetic", movies=40, predictions=True, batch=20, stdout=io.StringIO())
    return production_version()


def some_genre() -> Genre:
    """A genre some but not all seeded movies have (not Western, the one the tests add)."""
    counted = Genre.objects.exclude(slug="western").annotate(n=Count("labels")).filter(n__gt=0, n__lt=40)
    return counted.order_by("-n", "slug").first()


def with_genre(genre) -> set[int]:
    return set(Movie.objects.filter(labels__genre=genre).values_list("pk", flat=True))


def test_bulk_over_a_filter_refreshes_the_predictions(seeded, jobs_at_commit):
    client = Client()
    client.force_login(make_user("lena"))
    genre = some_genre()
    wanted = with_genre(genre)
    western = Genre.objects.get(slug="western")
    form = {"action": "add", "genre": "western", "scope": "filter", "filter": f"genre={genre.slug}", "confirmed": "1"}
    with jobs_at_commit():  # the bulk_labels job runs at commit, after the request answered
        assert client.post("/bulk/", form).status_code == 302
    change_set = ChangeSet.objects.get()
    assert change_set.status == ChangeSet.Status.SUCCEEDED
    assert change_set.matched == len(wanted)
    changed = set(change_set.changes.values_list("movie_id", flat=True))
    assert changed and changed <= wanted
    # the hook refreshed the predictions: they were compared against the new labels
    for prediction in Prediction.objects.filter(movie_id__in=changed, model_version=seeded):
        assert western.name in prediction.labels_at_prediction

    rows = list(
        csv.DictReader(io.StringIO(b"".join(client.get(f"/export.csv?genre={genre.slug}").streaming_content).decode()))
    )
    assert {int(r["id"]) for r in rows} == wanted

    with jobs_at_commit():
        assert client.post(f"/changes/{change_set.pk}/undo/").status_code == 302
    for prediction in Prediction.objects.filter(movie_id__in=changed, model_version=seeded):
        assert western.name not in prediction.labels_at_prediction


def test_api_bulk_and_export_take_the_filter(seeded, jobs_at_commit):
    api = api_client_for(make_user("lena"))
    genre = some_genre()
    wanted = with_genre(genre)
    with jobs_at_commit():
        answer = api.post("/api/change-sets/", {"add": ["Western"], "filter": {"genre": genre.slug}}, format="json")
    assert answer.status_code == 202
    assert api.get(f"/api/change-sets/{answer.json()['id']}/").json()["matched"] == len(wanted)
    changed = Movie.objects.filter(pk__in=wanted).exclude(labels__genre__slug="western")
    assert not changed.exists()
    refreshed = Prediction.objects.filter(movie_id__in=wanted, model_version=seeded)
    assert all("Western" in p.labels_at_prediction for p in refreshed)
    bad = api.post("/api/change-sets/", {"add": ["Western"], "filter": {"audit": "sure"}}, format="json")
    assert bad.status_code == 400 and "audit" in bad.json()["filter"]
    records = b"".join(api.get(f"/api/movies/export/json/?genre={genre.slug}").streaming_content)
    assert records.count(b'"id":') == len(wanted)
