"""Accounts: API tokens that expire and that their owner can revoke, and throttled logins.

- base.authentication.ExpiringTokenAuthentication: DRF token auth that refuses a token
  older than settings.GENREWEB_TOKEN_TTL_HOURS (0: tokens never expire).
- ``TokenView`` (``/api/auth/token/``): GET shows the caller's token state, POST creates a new
  token (replacing the old one) and returns its key once, DELETE revokes it.
- ``account_page`` (``/accounts/me/``): the same for people, in the browser.
- ``ThrottledLoginView``: failed logins are counted per username and per client IP in the
  shared cache; over settings.GENREWEB_LOGIN_RATE the form refuses that username / IP (HTTP
  429) until the window ends. Other usernames and addresses log in as usual.
"""

from __future__ import annotations

import time

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.cache import cache
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_http_methods
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.authtoken.models import Token
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from .authentication import token_expires_at

# --- tokens ---------------------------------------------------------------------------------


def token_state(user) -> dict:
    token = Token.objects.filter(user=user).first()
    if token is None:
        return {"exists": False, "created": None, "expires": None, "expired": False}
    expires = token_expires_at(token)
    return {
        "exists": True,
        "created": token.created,
        "expires": expires,
        "expired": bool(expires and expires <= timezone.now()),
    }


def new_token(user) -> Token:
    """A fresh token for ``user``; the old one (if any) stops working."""
    Token.objects.filter(user=user).delete()
    return Token.objects.create(user=user)


def revoke_token(user) -> bool:
    deleted, _ = Token.objects.filter(user=user).delete()
    return bool(deleted)


class TokenStateSerializer(serializers.Serializer):
    exists = serializers.BooleanField()
    created = serializers.DateTimeField(allow_null=True)
    expires = serializers.DateTimeField(allow_null=True)
    expired = serializers.BooleanField()


class NewTokenSerializer(serializers.Serializer):
    token = serializers.CharField()
    created = serializers.DateTimeField()
    expires = serializers.DateTimeField(allow_null=True)


class TokenView(APIView):
    """The caller's own API token: see its state, create a new one, revoke it."""

    permission_classes = [IsAuthenticated]

    @extend_schema(responses=TokenStateSerializer)
    def get(self, request):
        return Response(TokenStateSerializer(token_state(request.user)).data)

    @extend_schema(request=None, responses={201: NewTokenSerializer})
    def post(self, request):
        token = new_token(request.user)
        data = {"token": token.key, "created": token.created, "expires": token_expires_at(token)}
        return Response(NewTokenSerializer(data).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses={204: None})
    def delete(self, request):
        revoke_token(request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


@login_required
@require_http_methods(["GET", "POST"])
def account_page(request):
    new_key = None
    if request.method == "POST":
        action = request.POST.get("action")
        if action == "create":
            new_key = new_token(request.user).key
            messages.success(request, "New API token created. Copy it now: it is shown only once.")
        elif action == "revoke":
            if revoke_token(request.user):
                messages.success(request, "API token revoked.")
            return redirect("account")
    return render(
        request,
        "registration/account.html",
        {"token": token_state(request.user), "new_key": new_key, "ttl_hours": settings.GENREWEB_TOKEN_TTL_HOURS},
    )


# --- login throttle ---------------------------------------------------------------------------


def parse_rate(rate: str) -> tuple[int, int]:
    """ "10/min" -> (10, 60): attempts per window of seconds."""
    count, _, period = rate.partition("/")
    seconds = {"s": 1, "m": 60, "h": 3600, "d": 86400}[period.strip()[:1].lower()]
    return int(count), seconds


class LoginThrottle:
    """Failed-login counters per username and per IP, in fixed windows of the shared cache."""

    def __init__(self, request, username: str):
        self.limit, self.window = parse_rate(settings.GENREWEB_LOGIN_RATE)
        bucket = int(time.time() // self.window)
        # REMOTE_ADDR only: X-Forwarded-For is set by clients too.
        ip = request.META.get("REMOTE_ADDR", "")
        self.keys = [f"login-fail:user:{username.strip().lower()[:150]}:{bucket}", f"login-fail:ip:{ip}:{bucket}"]

    def blocked(self) -> bool:
        counts = cache.get_many(self.keys)
        return any(counts.get(key, 0) >= self.limit for key in self.keys)

    def failed(self) -> None:
        for key in self.keys:
            if not cache.add(key, 1, self.window + 1):
                try:
                    cache.incr(key)
                except ValueError:  # expired between add and incr
                    cache.add(key, 1, self.window + 1)


class ThrottledLoginView(auth_views.LoginView):
    def post(self, request, *args, **kwargs):
        throttle = LoginThrottle(request, request.POST.get("username", ""))
        if throttle.blocked():
            form = self.get_form_class()(request)  # unbound: no password check while blocked
            response = self.render_to_response(self.get_context_data(form=form, throttled=True))
            response.status_code = 429
            response["Retry-After"] = str(throttle.window)
            return response
        response = super().post(request, *args, **kwargs)
        if not request.user.is_authenticated:
            throttle.failed()
        return response
