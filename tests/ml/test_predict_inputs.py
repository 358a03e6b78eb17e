"""The predict page says which inputs the model used (the API's used_text/used_poster/inputs/ignored)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from tests.factories import make_user

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "answer, shown",
    [
        ({"used_text": True, "used_poster": False, "inputs": "text", "ignored": []}, "Inputs used: text (this model"),
        ({"used_text": True, "used_poster": True, "inputs": "all", "ignored": []}, "Inputs used: text + poster."),
        (
            {"used_text": True, "used_poster": False, "inputs": "all", "ignored": ["poster"]},
            "Not read by this model: poster",
        ),
    ],
)
def test_the_predict_page_says_which_inputs_were_used(client, monkeypatch, answer, shown):
    import ml.services.inference
    import ml.views.predict

    version = SimpleNamespace(pk=7, __str__=lambda self: "v7")
    monkeypatch.setattr(ml.views.predict, "production_version", lambda: version)
    seen = {}

    def predict_raw(overview, poster, version, *, title="", year=None):
        seen.update(overview=overview, title=title, year=year)
        return {
            "model_version": 7,
            "model_name": "v7",
            "genres": ["Drama"],
            "scores": [{"genre": "Drama", "score": 0.8, "threshold": 0.4, "predicted": True}],
            "uncertainty": 0.2,
            "calibrated": True,
            **answer,
        }

    monkeypatch.setattr(ml.services.inference, "predict_raw", predict_raw)
    client.force_login(make_user("reader"))
    page = client.post("/models/predict/", {"overview": "a long road", "title": "Road", "year": "1999"})
    assert page.status_code == 200
    text = " ".join(page.content.decode().split())
    assert shown in text and "Scores are calibrated probabilities." in text
    assert seen == {"overview": "a long road", "title": "Road", "year": 1999}
