"""Roles, one place for the web pages and the API.

- anonymous: only the login page, unless settings.GENREWEB_ANONYMOUS_READ is on, in which
  case safe (read-only) requests are allowed everywhere except staff pages.
- labeler: any active logged-in user. We chose "any active user" over a "labeler" group:
  accounts are created by staff in the admin, so having an account already means being
  trusted to label; a group would add a second switch that is easy to forget.
- staff (user.is_staff): also queues/cancels/retries jobs, promotes model versions and
  manages users (Django admin).
"""

from __future__ import annotations

from functools import wraps

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from rest_framework import permissions

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def is_labeler(user) -> bool:
    return bool(user and user.is_authenticated and user.is_active)


def is_staff(user) -> bool:
    return is_labeler(user) and user.is_staff


def can_read(request) -> bool:
    if is_labeler(request.user):
        return True
    return settings.GENREWEB_ANONYMOUS_READ and request.method in SAFE_METHODS


def _deny(request):
    if not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    raise PermissionDenied("You do not have permission to do this.")


def reader_required(view):
    """Page readable by labelers (and by anonymous visitors when anonymous reading is on)."""

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if request.method in SAFE_METHODS and can_read(request):
            return view(request, *args, **kwargs)
        if request.method not in SAFE_METHODS and is_labeler(request.user):
            return view(request, *args, **kwargs)
        return _deny(request)

    return wrapper


def labeler_required(view):
    """Any request needs a logged-in labeler (e.g. a relabel POST)."""

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if is_labeler(request.user):
            return view(request, *args, **kwargs)
        return _deny(request)

    return wrapper


def staff_required(view):
    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if is_staff(request.user):
            return view(request, *args, **kwargs)
        return _deny(request)

    return wrapper


class ReaderMixin:
    """Class-based view version of reader_required."""

    def dispatch(self, request, *args, **kwargs):
        return reader_required(super().dispatch)(request, *args, **kwargs)


# --- API ----------------------------------------------------------------------


class IsLabelerOrAnonymousRead(permissions.BasePermission):
    """Read for labelers (and anonymous when allowed), write for labelers."""

    message = "Log in (token or session) to use the API."

    def has_permission(self, request, view):
        if request.method in permissions.SAFE_METHODS:
            return can_read(request)
        return is_labeler(request.user)


class IsStaffForWrite(permissions.BasePermission):
    """Read like IsLabelerOrAnonymousRead; any write needs staff."""

    message = "Only staff can do this."

    def has_permission(self, request, view):
        if request.method in permissions.SAFE_METHODS:
            return can_read(request)
        return is_staff(request.user)


class IsStaff(permissions.BasePermission):
    message = "Only staff can do this."

    def has_permission(self, request, view):
        return is_staff(request.user)
