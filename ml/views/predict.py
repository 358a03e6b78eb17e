"""The ad-hoc prediction page (same service and rate limit as POST /api/predict/)."""

from __future__ import annotations

import logging

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.shortcuts import render

from base.permissions import reader_required
from catalog.images import ImageRejected, decode_image, read_upload, to_rgb

from ..services.registry import production_version

logger = logging.getLogger(__name__)


class PredictForm(forms.Form):
    title = forms.CharField(max_length=500, required=False, help_text="read by models whose text has titles")
    year = forms.IntegerField(min_value=1800, max_value=2200, required=False)
    overview = forms.CharField(widget=forms.Textarea(attrs={"rows": 6}), max_length=10_000, required=False)
    poster = forms.FileField(required=False, help_text="JPEG/PNG/WebP, up to 10 MB")

    def clean_poster(self):
        upload = self.cleaned_data.get("poster")
        if not upload:
            return None
        try:
            return read_upload(upload)
        except ImageRejected as exc:
            raise forms.ValidationError(f"Not a usable image: {exc.reason}") from exc

    def clean(self):
        cleaned = super().clean()
        if not (cleaned.get("overview") or "").strip() and not cleaned.get("poster") and not self.errors:
            raise forms.ValidationError("Give an overview, a poster, or both.")
        return cleaned


def _predict_throttle_wait(request) -> float | None:
    """None when this prediction may run; else seconds to wait. The same "predict" rate and
    counters (per user) as POST /api/predict/, so the page is no way around the API limit."""
    from rest_framework.throttling import ScopedRateThrottle

    class PredictScope:
        throttle_scope = "predict"

    throttle = ScopedRateThrottle()
    if throttle.allow_request(request, PredictScope()):
        return None
    return throttle.wait() or 1.0


def poster_preview(poster: bytes | None, size=(240, 360)) -> str:
    """The uploaded poster shown back beside the result, as a small JPEG data URI: nothing is
    stored or served from a path (the upload was decoded safely in the form already)."""
    if not poster:
        return ""
    import base64
    import io

    try:
        image = to_rgb(decode_image(poster).image)
    except ImageRejected:
        return ""
    image.thumbnail(size)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


@reader_required
def predict_page(request):
    version = production_version()
    form = PredictForm(request.POST or None, request.FILES or None)
    result = None
    if request.method == "POST":
        if not request.user.is_authenticated:
            raise PermissionDenied("Log in to predict.")
        wait = _predict_throttle_wait(request)
        if wait is not None:
            messages.error(request, f"Too many predictions; try again in {int(wait or 1)} s.")
            response = render(request, "ml/predict.html", {"form": form, "version": version, "result": None})
            response.status_code = 429
            return response
        if version is None:
            messages.error(request, "No production model yet: train one and promote it first.")
        elif form.is_valid():
            from ..services.inference import predict_raw  # loads the engine: only when predicting

            try:
                raw = predict_raw(
                    form.cleaned_data["overview"],
                    form.cleaned_data["poster"],
                    version,
                    title=form.cleaned_data.get("title") or "",
                    year=form.cleaned_data.get("year"),
                )
            except (FileNotFoundError, ValueError):  # artifact missing or damaged
                # The reason names server paths: it goes to the log, never to the page.
                logger.exception("model version %s cannot be used on the predict page", version.pk)
                messages.error(
                    request, f"The production model {version} cannot be used: its files are missing or damaged."
                )
                return render(request, "ml/predict.html", {"form": form, "version": version, "result": None})
            result = {
                **raw,
                "poster_preview": poster_preview(form.cleaned_data["poster"]),
                "rows": [
                    {
                        "genre": s["genre"],
                        "pct": round(100 * s["score"], 1),
                        "threshold_pct": round(100 * s["threshold"], 1),
                        "predicted": s["predicted"],
                        "labelled": False,
                    }
                    for s in raw["scores"]
                ],
            }
    return render(request, "ml/predict.html", {"form": form, "version": version, "result": result})
