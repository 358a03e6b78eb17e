"""Issue 8, "nobody gets what is not theirs": tokens and login attempts (the predict limits:
tests/ml/test_predict_limits.py).

- API tokens can be revoked by their owner and stop working after GENREWEB_TOKEN_TTL_HOURS;
  the "My account" page shows, creates and revokes them.
- Failed logins are throttled per username and per client IP, without locking out others.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from tests.factories import PASSWORD

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
