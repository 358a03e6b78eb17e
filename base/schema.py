"""OpenAPI schema machinery: every operation documents the errors it can answer with.

``AutoSchema`` (settings.REST_FRAMEWORK["DEFAULT_SCHEMA_CLASS"]) adds, to each operation,
the error responses DRF and this project produce, all with one body (``ErrorSerializer``):

- 400 everywhere (validation; a NUL in the path or query, see base.text_input),
- 401 / 403 everywhere (no or a bad token; role not allowed),
- 404 where the path names an object or the list is paginated ("Invalid page."),
- 415 where there is a request body, 429 where the view is throttled.

Codes specific to one operation (409 for a conflict, 503 when a model cannot be used) are
declared where the view is, with ``error_responses``::

    @extend_schema(responses={200: LabelsResultSerializer, **error_responses(409)})

An explicit response for a code (e.g. a 409 whose body holds the current labels) wins.
"""

from __future__ import annotations

from drf_spectacular import openapi
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers
from rest_framework.throttling import ScopedRateThrottle

ERROR_DESCRIPTIONS = {
    400: "Invalid request: the body lists the problem per field (or `detail`).",
    401: "Not authenticated: missing or invalid token.",
    403: "Authenticated, but this role may not do this.",
    404: "No such object (or page).",
    409: "Conflict with the current state; `detail` (or the field) says which.",
    415: "Unsupported media type of the request body.",
    429: "Too many requests: throttled; retry after the `Retry-After` header.",
    503: "Temporarily unable to answer (e.g. the model's files cannot be loaded).",
}


class ErrorSerializer(serializers.Serializer):
    """An error body: ``{"detail": "..."}`` or ``{"<field>": ["message", ...], ...}``
    (nested by index/key for lists and objects), as DRF writes them."""

    detail = serializers.CharField(required=False, help_text="the error, when it is not about one field")

    class Meta:
        ref_name = "Error"


def error_responses(*codes: int) -> dict[int, OpenApiResponse]:
    """``{code: OpenApiResponse(ErrorSerializer)}`` for ``@extend_schema(responses=...)``."""
    return {code: OpenApiResponse(ErrorSerializer, description=ERROR_DESCRIPTIONS.get(code, "Error")) for code in codes}


class AutoSchema(openapi.AutoSchema):
    def _error_codes(self) -> list[int]:
        codes = [400, 401, 403]
        view = self.view
        if "{" in self.path or (self._is_list_view() and getattr(view, "pagination_class", None)):
            codes.append(404)
        if self.method in ("POST", "PUT", "PATCH"):
            codes.append(415)
        throttles = getattr(view, "throttle_classes", None) or []
        # A ScopedRateThrottle without a scope never throttles.
        if any(not issubclass(t, ScopedRateThrottle) or getattr(view, "throttle_scope", None) for t in throttles):
            codes.append(429)
        return codes

    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        if direction != "response":
            return responses
        for code, response in error_responses(*self._error_codes()).items():
            if str(code) not in responses:
                responses[str(code)] = self._get_response_for_code(response, str(code), direction=direction)
        return responses
