"""Issue 8, "nobody gets what is not theirs": tokens, login attempts, predict limits.

- API tokens can be revoked by their owner and stop working after GENREWEB_TOKEN_TTL_HOURS;
  the "My account" page shows, creates and revokes them.
- Failed logins are throttled per username and per client IP, without locking out others.
- The HTML predict page shares the API's "predict" rate.
- Ad-hoc prediction uploads have their own, lower pixel limit, checked before decoding.
"""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient
from rest_framework.throttling import SimpleRateThrottle

from tests.factories import PASSWORD, api_client_for, image_bytes

# --- tokens ----------------------------------------------------------------------------------


def token_client(key: str) -> APIClient:
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return api


@pytest.mark.django_db
def test_owner_replaces_and_revokes_their_token_through_the_api(labeler):
    old = Token.objects.create(user=labeler).key
    api = token_client(old)
    assert api.get("/api/genres/").status_code == 200
    state = api.get("/api/auth/token/").json()
    assert state["exists"] and state["expires"] and not state["expired"] and "token" not in state

    created = api.post("/api/auth/token/")
    assert created.status_code == 201
    new = created.json()["token"]
    assert new != old and token_client(old).get("/api/genres/").status_code == 401

    assert token_client(new).delete("/api/auth/token/").status_code == 204
    assert token_client(new).get("/api/genres/").status_code == 401
    assert not Token.objects.filter(user=labeler).exists()


@pytest.mark.django_db
def test_tokens_expire_after_the_configured_time(labeler, settings):
    settings.GENREWEB_TOKEN_TTL_HOURS = 2
    token = Token.objects.create(user=labeler)
    assert token_client(token.key).get("/api/genres/").status_code == 200
    Token.objects.filter(pk=token.pk).update(created=timezone.now() - timedelta(hours=2, minutes=1))
    response = token_client(token.key).get("/api/genres/")
    assert response.status_code == 401 and "expired" in response.json()["detail"]
    settings.GENREWEB_TOKEN_TTL_HOURS = 0  # 0: tokens never expire
    assert token_client(token.key).get("/api/genres/").status_code == 200


@pytest.mark.django_db
def test_my_account_page_shows_creates_and_revokes_the_token(labeler_client, labeler):
    page = labeler_client.get(reverse("account"))
    assert page.status_code == 200 and "You have no API token" in page.content.decode()
    assert reverse("account") in labeler_client.get("/").content.decode(), "linked in the nav"

    created = labeler_client.post(reverse("account"), {"action": "create"})
    key = Token.objects.get(user=labeler).key
    assert key in created.content.decode()
    assert token_client(key).get("/api/genres/").status_code == 200
    assert key not in labeler_client.get(reverse("account")).content.decode(), "shown only once"

    labeler_client.post(reverse("account"), {"action": "revoke"})
    assert not Token.objects.filter(user=labeler).exists()
    assert Client().get(reverse("account")).status_code == 302, "anonymous: log in first"


# --- login throttle --------------------------------------------------------------------------


def login(client: Client, username: str, password: str):
    return client.post(reverse("login"), {"username": username, "password": password})


@pytest.mark.django_db
def test_failed_logins_are_throttled_per_username(labeler, staff, settings):
    settings.GENREWEB_LOGIN_RATE = "5/min"
    attacker = Client(REMOTE_ADDR="203.0.113.9")
    for _ in range(5):
        assert login(attacker, "lena", "guess").status_code == 200
    # Even the right password is refused now, from any address, for this username only.
    refused = login(Client(REMOTE_ADDR="198.51.100.1"), "lena", PASSWORD)
    assert refused.status_code == 429 and "Too many failed attempts" in refused.content.decode()
    assert login(Client(REMOTE_ADDR="198.51.100.2"), "sam", PASSWORD).status_code == 302, "others log in"


@pytest.mark.django_db
def test_failed_logins_are_throttled_per_address(labeler, staff, settings):
    settings.GENREWEB_LOGIN_RATE = "5/min"
    sprayer = Client(REMOTE_ADDR="203.0.113.7")
    for n in range(5):
        login(sprayer, f"user{n}", "guess")
    assert login(sprayer, "sam", PASSWORD).status_code == 429
    assert login(Client(REMOTE_ADDR="198.51.100.3"), "sam", PASSWORD).status_code == 302


# --- predict limits ----------------------------------------------------------------------------


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
