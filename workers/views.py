"""Jobs pages: list, queue (staff), detail with live progress, cancel/retry (staff).

Every job goes through workers.jobs (enqueue/cancel/retry); these views only collect and
validate the parameters. Progress is polled by the page from ``status_json``.
"""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from base.permissions import is_staff, reader_required, staff_required
from catalog.importers import registry as import_registry

from . import jobs, kinds
from .jobs import JobError, enqueue
from .kinds import InvalidJobParams
from .models import Job
from .summary import result_summary


def _preset_choices() -> list[tuple[str, str]]:
    """The presets, the recommended one first and marked (ml.engine.registry.preset_list)."""
    from ml.engine.registry import preset_list  # cheap: config dataclasses only, no torch

    return [
        (
            p["name"],
            ("★ recommended: " if p["recommended"] else "")
            + (f"{p['name']} — {p['notes']}" if p["notes"] else p["name"]),
        )
        for p in preset_list()
    ]


def _version_choices() -> list[tuple[str, str]]:
    from ml.models import ModelVersion

    return [("", "the production model")] + [(str(v.pk), str(v)) for v in ModelVersion.objects.all()[:100]]


def _snapshot_choices() -> list[tuple[str, str]]:
    from ml.models import DatasetSnapshot

    return [("", "—")] + [(str(s.pk), str(s)) for s in DatasetSnapshot.objects.all()[:100]]


class QueueJobForm(forms.Form):
    """One form for every kind; ``params()`` builds the parameters workers.jobs expects for
    the chosen kind (which validates them again and names any bad field)."""

    kind = forms.ChoiceField(choices=kinds.kind_choices)
    source = forms.ChoiceField(choices=(), required=False, label="import source")
    path = forms.CharField(required=False, max_length=1000, label="file or folder path (on the worker)")
    api_key = forms.CharField(
        required=False, max_length=200, label="TMDB API key", widget=forms.PasswordInput(render_value=True)
    )
    date_from = forms.DateField(
        required=False, label="TMDB release date from", widget=forms.DateInput(attrs={"type": "date"})
    )
    date_to = forms.DateField(
        required=False, label="TMDB release date to", widget=forms.DateInput(attrs={"type": "date"})
    )
    limit = forms.IntegerField(required=False, min_value=1, label="at most this many movies")
    snapshot_id = forms.ChoiceField(required=False, choices=(), label="dataset snapshot")
    config = forms.ChoiceField(required=False, choices=(), label="model family preset")
    model_version_id = forms.ChoiceField(required=False, choices=(), label="model version")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["source"].choices = import_registry.choices()
        from ml.engine.registry import RECOMMENDED_PRESET

        self.fields["config"].choices = _preset_choices()
        self.fields["config"].initial = RECOMMENDED_PRESET
        self.fields["model_version_id"].choices = _version_choices()
        self.fields["snapshot_id"].choices = _snapshot_choices()

    def clean(self):
        cleaned = super().clean()
        kind = cleaned.get("kind")
        if kind in (kinds.EVALUATE, kinds.PREDICT) and not cleaned.get("model_version_id"):
            from ml.services.registry import production_version

            version = production_version()
            if version is None:
                self.add_error("model_version_id", "no production model yet: pick a version")
            else:
                cleaned["model_version_id"] = str(version.pk)
        return cleaned

    def params(self) -> dict:
        data, kind = self.cleaned_data, self.cleaned_data["kind"]
        params: dict = {}
        for name in kinds.get(kind).form_fields:  # the kinds table says which fields a kind uses
            value = data.get(name)
            if value in (None, ""):
                continue
            if name in ("snapshot_id", "model_version_id"):
                value = int(value)
            elif hasattr(value, "isoformat"):
                value = value.isoformat()
            params[name] = value
        if kind == kinds.IMPORT and params.get("source"):
            # Only the fields the chosen source takes (e.g. no path for TMDB, no API key for a CSV).
            accepted = import_registry.get(params["source"]).all_params | {"source"}
            params = {name: value for name, value in params.items() if name in accepted}
        return params


def job_json(job: Job) -> dict:
    return {
        "id": job.pk,
        "kind": job.kind,
        "status": job.status,
        "status_display": job.get_status_display(),
        "progress": round(job.progress, 1),
        "step": job.step,
        "finished": job.is_finished,
        "error": job.error,
        "log_tail": job.log[-50:],
        "result": job.result,
    }


@reader_required
def job_list(request):
    form = None
    if is_staff(request.user):
        form = QueueJobForm(request.POST or None, initial={"kind": request.GET.get("kind", kinds.PREPROCESS)})
        if request.method == "POST" and form.is_valid():
            try:
                job = enqueue(form.cleaned_data["kind"], form.params(), request.user)
            except InvalidJobParams as exc:  # the jobs service names each bad parameter
                for name, message in exc.errors.items():
                    form.add_error(name if name in form.fields else None, message)
            else:
                messages.success(request, f"Queued {job.get_kind_display().lower()} job #{job.pk}.")
                return redirect("workers:job", pk=job.pk)
    elif request.method == "POST":
        raise PermissionDenied("Only staff can queue jobs.")
    jobs = Job.objects.select_related("requested_by")
    status = request.GET.get("status")
    if status in Job.Status.values:
        jobs = jobs.filter(status=status)
    page = Paginator(jobs, 30).get_page(request.GET.get("page"))
    return render(
        request,
        "workers/jobs.html",
        {
            "form": form,
            "kind_fields": {name: list(kind.form_fields) for name, kind in kinds.KINDS.items()},
            "page": page,
            "jobs": page.object_list,
            "statuses": Job.Status.choices,
            "status": status,
            "query_without_page": f"status={status}" if status else "",
        },
    )


@reader_required
def job_detail(request, pk: int):
    job = get_object_or_404(Job.objects.select_related("requested_by", "parent", "retry_of"), pk=pk)
    shards = job.shards.all() if job.kind == kinds.PREDICT else []
    return render(
        request,
        "workers/job.html",
        {
            "job": job,
            "shards": shards,
            "children": job.children.all(),
            "summary": result_summary(job.result, request.user),
        },
    )


@reader_required
def status_json(request, pk: int):
    """Polled by the job page (and the list) for live progress."""
    return JsonResponse(job_json(get_object_or_404(Job, pk=pk)))


@reader_required
def statuses_json(request):
    """Progress of several jobs at once (?ids=1,2,3), for the list page."""
    ids = [int(i) for i in request.GET.get("ids", "").split(",") if i.strip().isdigit()][:100]
    return JsonResponse({"jobs": [job_json(job) for job in Job.objects.filter(pk__in=ids)]})


@require_POST
@staff_required
def cancel(request, pk: int):
    job = get_object_or_404(Job, pk=pk)
    try:
        job = jobs.cancel(job, request.user)
    except JobError as exc:
        messages.info(request, str(exc))
    else:
        messages.success(request, f"Job #{job.pk}: {job.step or 'cancellation requested'}.")
    return redirect("workers:job", pk=pk)


@require_POST
@staff_required
def retry(request, pk: int):
    job = get_object_or_404(Job, pk=pk)
    try:
        new_job = jobs.retry(job, request.user)
    except (JobError, InvalidJobParams) as exc:
        messages.error(request, str(exc))
        return redirect("workers:job", pk=pk)
    messages.success(request, f"Retrying job #{job.pk} as job #{new_job.pk}.")
    return redirect("workers:job", pk=new_job.pk)
