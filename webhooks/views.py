"""Webhooks pages (staff only): endpoints with their secret shown once, the delivery log per
endpoint with payloads and "redeliver"."""

from __future__ import annotations

from django.contrib import messages
from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.cache import add_never_cache_headers
from django.views.decorators.http import require_POST

from base.events import EVENTS
from base.permissions import staff_required

from . import delivery as deliveries
from .forms import EndpointForm
from .models import Delivery, Endpoint


def _show_secret(request, endpoint: Endpoint, message: str):
    """The one page that shows the secret (rendered, not redirected to: it is never stored elsewhere)."""
    response = render(request, "webhooks/secret.html", {"endpoint": endpoint, "message": message})
    add_never_cache_headers(response)  # no copy of the secret in a browser or proxy cache
    return response


@staff_required
def endpoint_list(request):
    form = EndpointForm(request.POST or None, initial={"events": list(EVENTS), "active": True})
    if request.method == "POST" and form.is_valid():
        endpoint = form.save(commit=False)
        endpoint.created_by = request.user
        endpoint.save()
        return _show_secret(request, endpoint, f"Registered webhook “{endpoint.name}”.")
    endpoints = Endpoint.objects.select_related("created_by")
    return render(request, "webhooks/endpoints.html", {"form": form, "endpoints": endpoints, "events": EVENTS})


@staff_required
def endpoint_detail(request, pk: int):
    endpoint = get_object_or_404(Endpoint, pk=pk)
    form = EndpointForm(request.POST or None, instance=endpoint)
    if request.method == "POST" and form.is_valid():
        form.save()
        messages.success(request, "Saved.")
        return redirect("webhooks:endpoint", pk=endpoint.pk)
    found = endpoint.deliveries.select_related("requested_by")
    status = request.GET.get("status")
    if status in Delivery.Status.values:
        found = found.filter(status=status)
    page = Paginator(found, 30).get_page(request.GET.get("page"))
    return render(
        request,
        "webhooks/endpoint.html",
        {
            "endpoint": endpoint,
            "form": form,
            "page": page,
            "deliveries": page.object_list,
            "statuses": Delivery.Status.choices,
            "status": status,
            "query_without_page": f"status={status}" if status in Delivery.Status.values else "",
            "schedule": deliveries.retry_schedule(),
        },
    )


@staff_required
@require_POST
def rotate_secret(request, pk: int):
    endpoint = get_object_or_404(Endpoint, pk=pk)
    endpoint.rotate_secret()
    return _show_secret(request, endpoint, "New secret made; the old one no longer signs deliveries.")


@staff_required
@require_POST
def ping(request, pk: int):
    endpoint = get_object_or_404(Endpoint, pk=pk)
    if not endpoint.active:
        messages.error(request, "The endpoint is not active: activate it first.")
    else:
        sent = deliveries.ping(endpoint, request.user)
        messages.success(request, f"Ping #{sent.pk} queued.")
    return redirect("webhooks:endpoint", pk=endpoint.pk)


@staff_required
@require_POST
def delete_endpoint(request, pk: int):
    endpoint = get_object_or_404(Endpoint, pk=pk)
    endpoint.delete()
    messages.success(request, f"Deleted webhook “{endpoint.name}” and its delivery log.")
    return redirect("webhooks:endpoints")


@staff_required
@require_POST
def redeliver(request, pk: int):
    original = get_object_or_404(Delivery.objects.select_related("endpoint"), pk=pk)
    if not original.endpoint.active:
        messages.error(request, "The endpoint is not active: activate it first.")
    else:
        new = deliveries.redeliver(original, request.user)
        messages.success(request, f"Redelivery #{new.pk} queued.")
    return redirect("webhooks:endpoint", pk=original.endpoint_id)
