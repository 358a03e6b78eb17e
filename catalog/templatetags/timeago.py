"""``{{ when|ago }}``: a short relative time that reads right at every scale.

Django's ``timesince`` says "0 minutes" for anything under a minute, which on a job list
that refreshes every few seconds looks stuck."""

from __future__ import annotations

from datetime import datetime

from django import template
from django.utils import formats, timezone

register = template.Library()


@register.filter
def ago(value: datetime | None, now: datetime | None = None) -> str:
    if not value:
        return ""
    now = now or timezone.now()
    seconds = (now - value).total_seconds()
    if seconds < 5:  # also a clock a little ahead of this one
        return "just now"
    if seconds < 60:
        return f"{int(seconds)} s ago"
    minutes = int(seconds // 60)
    if minutes < 60:
        return f"{minutes} min ago"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min ago" if hours < 6 and minutes else f"{hours} h ago"
    days = hours // 24
    if days < 7:
        return "yesterday" if days == 1 else f"{days} days ago"
    return formats.date_format(timezone.localtime(value), "j M Y")
