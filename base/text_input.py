"""One rule for text that arrives over HTTP: a NUL character (U+0000) is a client error (400).

PostgreSQL cannot store or even compare text holding NUL; left alone, such a value reaches a
query and the request ends in a 500. It is refused at the edge instead:

- ``RejectNulMiddleware``: the path and every query parameter (name and value), for pages and
  the API alike (filters such as ``?genre=%00`` or ``?q=%00``);
- ``JSONParser``: every string and key of a JSON body, at any depth (also answers a body
  nested too deeply to parse with a 400, not a RecursionError);
- ``NulFreeJSONField``: the same for a JSON value posted as a form field (job params);
- ``prohibit_nul``: for serializer fields that are not DRF CharFields (DRF's CharField already
  carries ``ProhibitNullCharactersValidator``), e.g. the genre name field of the labels API.
"""

from __future__ import annotations

from django.core.validators import ProhibitNullCharactersValidator
from django.http import HttpResponseBadRequest, JsonResponse
from rest_framework import parsers, serializers
from rest_framework.exceptions import ParseError

NUL = "\x00"
NUL_MESSAGE = "Null characters (U+0000) are not allowed."


def nul_location(value, root: str = "") -> str | None:
    """Where in ``value`` (str / list / dict, any depth) a NUL occurs, e.g. "genres[0]"; else None.

    Iterative, so a deeply nested value cannot exhaust the stack."""
    stack = [(root, value)]
    while stack:
        where, item = stack.pop()
        if isinstance(item, str):
            if NUL in item:
                return where or "(value)"
        elif isinstance(item, dict):
            for key, child in item.items():
                if isinstance(key, str) and NUL in key:
                    return f"{where}.(key)" if where else "(key)"
                stack.append((f"{where}.{key}" if where else str(key), child))
        elif isinstance(item, (list, tuple)):
            stack.extend((f"{where}[{i}]", child) for i, child in enumerate(item))
    return None


class RejectNulMiddleware:
    """400 for a request whose path or query string holds a NUL character."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        bad = None
        if NUL in request.path:
            bad = "path"
        else:
            for name, values in request.GET.lists():
                if NUL in name or any(NUL in v for v in values):
                    bad = f"query parameter {name!r}".replace(NUL, "\\x00")
                    break
        if bad is None:
            return self.get_response(request)
        message = f"The {bad} contains a null character (U+0000)."
        if request.path.startswith("/api/"):
            return JsonResponse({"detail": message}, status=400)
        return HttpResponseBadRequest(message, content_type="text/plain; charset=utf-8")


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser, refusing NUL anywhere in the body and bodies too deep to parse."""

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError("JSON parse error - nested too deeply.") from None
        where = nul_location(data)
        if where is not None:
            raise ParseError(f"JSON parse error - {NUL_MESSAGE} Found in {where}.")
        return data


class NulFreeJSONField(serializers.JSONField):
    """A JSON value (object, list, ...) whose strings and keys hold no NUL."""

    def to_internal_value(self, data):
        try:
            value = super().to_internal_value(data)
        except RecursionError:
            raise serializers.ValidationError("Nested too deeply.") from None
        where = nul_location(value)
        if where is not None:
            raise serializers.ValidationError(f"{NUL_MESSAGE} Found in {where}.")
        return value


def prohibit_nul(value):
    """Raise a field ValidationError if ``value`` (text, or any JSON-ish value) holds a NUL,
    with the message and code of Django's ProhibitNullCharactersValidator (which every DRF
    CharField runs), for fields that resolve their value before validators run."""
    if nul_location(value) is not None:
        raise serializers.ValidationError(NUL_MESSAGE, code=ProhibitNullCharactersValidator.code)
    return value
