"""One model-opinion filter for the browse page, the movies API, the predictions API and the queues."""

from __future__ import annotations

import pytest

from ml.services import review


def _everywhere(client, api, opinion: str) -> dict[str, set[str]]:
    from ml.models import Prediction

    page = {m.title for m in client.get(f"/?view=list&model={opinion}").context["movies"]}
    movies_api = {m["title"] for m in api.get(f"/api/movies/?model={opinion}").json()["results"]}
    version = Prediction.objects.first().model_version_id
    ids = {p["movie"] for p in api.get(f"/api/predictions/?model_version={version}&{opinion}=1").json()["results"]}
    from catalog.models import Movie

    predictions_api = set(Movie.objects.filter(pk__in=ids).values_list("title", flat=True))
    queue = {p.movie.title for p in client.get(f"/models/review/{opinion}/").context["page"].object_list}
    return {"page": page, "movies API": movies_api, "predictions API": predictions_api, "queue": queue}


@pytest.mark.django_db
def test_pages_api_and_queues_share_one_definition_of_unsure(labeler_client, api_clients, world, monkeypatch):
    seen = _everywhere(labeler_client, api_clients["labeler"], "unsure")
    assert all(titles == {"Edge Case"} for titles in seen.values()), seen
    # Moving the one threshold moves every consumer.
    monkeypatch.setattr(review, "UNSURE_MIN", 0.0)
    seen = _everywhere(labeler_client, api_clients["labeler"], "unsure")
    everything = {"Laugh Track", "Night Shift", "Long Road", "Edge Case", "Quiet Years"}
    assert all(titles == everything for titles in seen.values()), seen


@pytest.mark.django_db
def test_pages_api_and_queues_agree_on_disagreements(labeler_client, api_clients, world):
    seen = _everywhere(labeler_client, api_clients["labeler"], "disagrees")
    assert all(titles == {"Laugh Track", "Night Shift"} for titles in seen.values()), seen
