"""Jobs pages: list, queue (staff), detail with live progress, cancel/retry (staff); and the
catalog's bulk change and undo (ml.views' extensions of catalog.views), run as jobs.

Every job goes through workers.jobs (enqueue/cancel/retry); these views only collect and
validate the parameters. Progress is polled by the page from ``status_json``.
"""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from base.permissions import is_staff, reader_required, staff_required
from base.runs import RUN_OPEN
from ml import views as ml_views

from . import jobs, kinds
from .forms import QueueJobForm
from .jobs import JobError, enqueue
from .kinds import InvalidJobParams
from .models import Job
from .summary import result_summary


def _round_or_none(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def eta_text(seconds: float | None) -> str:
    """ "about 3 min left" (empty when there is no estimate)."""
    if seconds is None:
        return ""
    if seconds < 60:
        return f"about {max(1, round(seconds))} s left"
    if seconds < 3600:
        return f"about {round(seconds / 60)} min left"
    return f"about {seconds / 3600:.1f} h left"


def job_json(job: Job) -> dict:
    return {
        "id": job.pk,
        "kind": job.kind,
        "status": job.status,
        "status_display": job.get_status_display(),
        "progress": round(job.progress, 1),
        "step": job.step,
        "eta_s": _round_or_none(job.eta_s()),
        "eta": eta_text(job.eta_s()),
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
            except InvalidJobParams as exc:  # the kind's schema names each bad parameter
                form.add_param_errors(exc.errors)
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
    shards = job.shards.all() if job.kind in kinds.sharded_kinds() else []
    return render(
        request,
        "workers/job.html",
        {
            "job": job,
            "shards": shards,
            "children": job.children.all(),
            "summary": result_summary(job.result, request.user),
            "eta": eta_text(job.eta_s()),
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


@require_POST
@staff_required
def import_devset(request):
    """The empty catalog's one-click import of the development set beside the project: an
    import job of that folder (a CSV + posters source), queued like any other."""
    from catalog.importers.registry import devset_dir

    folder = devset_dir()
    if folder is None:
        messages.error(request, "There is no development set beside the project.")
        return redirect("home")
    params = {"source": "csv", "path": str(folder)}
    running = (
        Job.objects.filter(kind=kinds.IMPORT, status__in=RUN_OPEN, params__source="csv", params__path=str(folder))
        .order_by("pk")
        .first()
    )
    if running is not None:  # a second click while it runs: show the running one
        messages.info(request, f"The development set is being imported by job #{running.pk}.")
        return redirect("workers:job", pk=running.pk)
    job = enqueue(kinds.IMPORT, params, request.user)
    messages.success(request, f"Queued import job #{job.pk} of the development set ({folder}).")
    return redirect("workers:job", pk=job.pk)


# --- the catalog's bulk change and undo, as jobs -------------------------------------------------


class BulkLabelView(ml_views.BulkLabelView):
    """The bulk change of the catalog page (checks and the confirmation step in the request,
    as catalog.views.BulkLabelView does), run by a bulk_labels job: the page answers at once
    with the change set's page, which follows the job's batches."""

    def start(self, change_set, movies) -> str:
        return f" as job #{jobs.enqueue_change_set(change_set, self.request.user).pk}"


class UndoChangeSetView(ml_views.UndoChangeSetView):
    """One-click undo, run by a bulk_labels job like the bulk change."""

    def start(self, change_set, movies=None) -> str:
        return f" as job #{jobs.enqueue_change_set(change_set, self.request.user).pk}"
