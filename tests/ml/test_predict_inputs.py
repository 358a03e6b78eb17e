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


def test_the_predict_page_shows_the_uploaded_poster_back_without_storing_it(client, monkeypatch, tmp_path, settings):
    import base64
    import io

    from django.core.files.uploadedfile import SimpleUploadedFile
    from PIL import Image

    import ml.services.inference
    import ml.views.predict
    from tests.factories import image_bytes

    media = tmp_path / "media"
    settings.MEDIA_ROOT = str(media)
    version = SimpleNamespace(pk=7, __str__=lambda self: "v7")
    monkeypatch.setattr(ml.views.predict, "production_version", lambda: version)
    monkeypatch.setattr(
        ml.services.inference,
        "predict_raw",
        lambda overview, poster, version, **inputs: {
            "model_version": 7,
            "genres": ["Horror"],
            "scores": [{"genre": "Horror", "score": 0.9, "threshold": 0.4, "predicted": True}],
            "used_text": False,
            "used_poster": True,
            "inputs": "image",
            "ignored": [],
            "calibrated": True,
        },
    )
    client.force_login(make_user("reader"))
    upload = SimpleUploadedFile("p.jpg", image_bytes(400, 600, colour=(200, 20, 20)), content_type="image/jpeg")
    page = client.post("/models/predict/", {"poster": upload})
    html = page.content.decode()
    assert page.status_code == 200 and 'id="uploaded-poster"' in html
    data_uri = html.split('id="uploaded-poster" src="', 1)[1].split('"', 1)[0]
    assert data_uri.startswith("data:image/jpeg;base64,")
    shown = Image.open(io.BytesIO(base64.b64decode(data_uri.split(",", 1)[1])))
    assert shown.size == (240, 360) and shown.getpixel((120, 180))[0] > 150  # the red poster, scaled down
    assert not [path for path in media.rglob("*") if path.is_file()]  # nothing written to media
    text_only = client.post("/models/predict/", {"overview": "a story"})
    assert 'id="uploaded-poster"' not in text_only.content.decode()
