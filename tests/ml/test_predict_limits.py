"""The predict page and API share one rate, and prediction uploads have their own pixel limit,
checked before decoding (issue 8)."""

from __future__ import annotations

import time

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from rest_framework.throttling import SimpleRateThrottle

from tests.factories import api_client_for, image_bytes


@pytest.mark.django_db
def test_the_predict_page_shares_the_api_predict_rate(labeler_client, labeler, world, monkeypatch):
    monkeypatch.setitem(SimpleRateThrottle.THROTTLE_RATES, "predict", "3/min")
    codes = [labeler_client.post(reverse("ml:predict"), {"overview": "a ghost story"}).status_code for _ in range(3)]
    assert 429 not in codes
    assert labeler_client.post(reverse("ml:predict"), {"overview": "again"}).status_code == 429
    # Same counters as the API: no way around the limit through the other door.
    assert api_client_for(labeler).post("/api/predict/", {"overview": "x"}, format="json").status_code == 429


@pytest.mark.django_db
@pytest.mark.slow  # decodes a 40-megapixel upload
def test_prediction_uploads_have_their_own_pixel_limit(labeler_client, labeler, world, settings):
    settings.GENREWEB_UPLOAD_MAX_PIXELS = 12_000_000
    data = image_bytes(8000, 5000, colour=(200, 30, 30), fmt="PNG")  # 40 megapixels in ~150 KB: seconds to decode
    api = api_client_for(labeler)
    started = time.process_time()
    response = api.post(
        "/api/predict/", {"poster": SimpleUploadedFile("big.png", data, "image/png")}, format="multipart"
    )
    spent = time.process_time() - started
    assert response.status_code in (400, 413) and "12,000,000" in str(response.json()["poster"])
    page = labeler_client.post(reverse("ml:predict"), {"poster": SimpleUploadedFile("big.png", data, "image/png")})
    assert "12,000,000" in str(page.context["form"].errors["poster"])
    assert spent < 1.0, f"rejected from the header, without decoding ({spent:.2f} s CPU)"
