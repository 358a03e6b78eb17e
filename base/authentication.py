"""DRF authentication: tokens expire after settings.GENREWEB_TOKEN_TTL_HOURS (0: never).

Its own module, importing no DRF views: DRF imports authentication classes while it sets
itself up (base.auth holds the token views)."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.utils import timezone
from rest_framework import exceptions
from rest_framework.authentication import TokenAuthentication


def token_expires_at(token):
    """When ``token`` stops working, or None when tokens do not expire."""
    hours = settings.GENREWEB_TOKEN_TTL_HOURS
    return token.created + timedelta(hours=hours) if hours and hours > 0 else None


class ExpiringTokenAuthentication(TokenAuthentication):
    def authenticate_credentials(self, key):
        user, token = super().authenticate_credentials(key)
        expires = token_expires_at(token)
        if expires is not None and expires <= timezone.now():
            raise exceptions.AuthenticationFailed(
                "Token has expired. Create a new one on your account page (/accounts/me/) or with POST /api/auth/token/."
            )
        return user, token
