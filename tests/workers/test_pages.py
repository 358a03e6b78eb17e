"""Jobs pages: who may queue, the queue form and its errors, status polling, cancel and retry."""

from __future__ import annotations

import pytest
from django.urls import reverse

from workers.models import Job

pytestmark = pytest.mark.django_db


def test_jobs_page_roles(labeler_client, world):
    response = labeler_client.get(reverse("workers:jobs"))
    assert response.status_code == 200 and response.context["form"] is None
    assert labeler_client.post(reverse("workers:jobs"), {"kind": "preprocess"}).status_code == 403
    assert not Job.objects.exists()


def test_staff_queues_a_job_and_sees_its_status(staff_client, django_capture_on_commit_callbacks, world, monkeypatch):
    sent = []
    monkeypatch.setattr("workers.jobs.send_job_message", lambda *args: sent.append(args))
    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(reverse("workers:jobs"), {"kind": "preprocess"})
    job = Job.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse("workers:job", args=[job.pk])
    assert sent and sent[0][0] == job.pk
    status = staff_client.get(reverse("workers:status", args=[job.pk])).json()
    assert (status["status"], status["progress"], status["finished"]) == ("queued", 0.0, False)
    detail = staff_client.get(reverse("workers:job", args=[job.pk]))
    assert 'id="job-progress"' in detail.content.decode()
    many = staff_client.get(reverse("workers:statuses") + f"?ids={job.pk},abc").json()
    assert [j["id"] for j in many["jobs"]] == [job.pk]


def test_queue_form_reports_parameter_errors(staff_client, world):
    response = staff_client.post(
        reverse("workers:jobs"), {"kind": "import", "import-source": "csv", "import-path": "/no/such/dir"}
    )
    assert response.status_code == 200
    # Outside GENREWEB_IMPORT_ROOTS: refused without saying whether it exists.
    assert "outside the import folders" in str(response.context["form"].errors["import-path"])
    train = staff_client.post(reverse("workers:jobs"), {"kind": "train", "train-config": "tfidf-linear"})
    assert train.context["form"].errors["train-snapshot_id"] == ["This field is required."]
    assert not Job.objects.exists()


def test_queue_evaluate_defaults_to_the_production_model(staff_client, world, monkeypatch):
    monkeypatch.setattr("workers.jobs.send_job_message", lambda *args: None)
    form = staff_client.get(reverse("workers:jobs")).context["form"]
    prefilled = form["evaluate-model_version_id"].value()
    assert prefilled == str(world["version"].pk)  # the production model, prefilled
    staff_client.post(reverse("workers:jobs"), {"kind": "evaluate", "evaluate-model_version_id": prefilled})
    assert Job.objects.get().params == {"model_version_id": world["version"].pk}


def test_cancel_and_retry_from_the_page(staff_client, labeler_client, world, monkeypatch):
    monkeypatch.setattr("workers.jobs.send_job_message", lambda *args: None)
    monkeypatch.setattr("workers.jobs.revoke_tasks", lambda ids: None)
    from workers.jobs import enqueue

    job = enqueue("preprocess", {}, None)
    assert labeler_client.post(reverse("workers:cancel", args=[job.pk])).status_code == 403
    staff_client.post(reverse("workers:cancel", args=[job.pk]))
    job.refresh_from_db()
    assert job.status == Job.Status.CANCELLED
    response = staff_client.post(reverse("workers:retry", args=[job.pk]))
    retried = Job.objects.exclude(pk=job.pk).get()
    assert retried.retry_of == job and response["Location"] == reverse("workers:job", args=[retried.pk])
    # A queued job cannot be retried; the page says why.
    again = staff_client.post(reverse("workers:retry", args=[retried.pk]), follow=True)
    assert "can be retried" in again.content.decode()


def test_job_list_says_just_now_not_0_minutes(staff_client, staff):
    from workers.models import Job

    Job.objects.create(kind="preprocess", requested_by=staff)
    html = staff_client.get("/jobs/").content.decode()
    assert "just now" in html and "0\xa0minutes ago" not in html and "0 minutes ago" not in html


def test_job_page_summarises_the_result_with_links(staff_client, labeler_client, staff, world):
    from catalog.models import ImportRun
    from workers.lifecycle import jsonable
    from workers.models import Job

    run = ImportRun.objects.create(kind="csv", status="succeeded", created=1234, skipped=2)
    imported = Job.objects.create(
        kind="import",
        status=Job.Status.SUCCEEDED,
        result={"import_run_id": run.pk, "source": "csv", "created": 1234, "updated": 0, "skipped": 2},
    )
    version, evaluation = world["version"], world["evaluation"]
    retrained = Job.objects.create(
        kind="retrain",
        status=Job.Status.SUCCEEDED,
        result={
            "snapshot_id": version.snapshot_id,
            "model_version_id": version.pk,
            "evaluation": jsonable(evaluation),
            "predict_job_id": imported.pk,
            "predict": {"predictions_written": 5, "movies_per_s": 12.34567},
        },
    )

    html = staff_client.get(f"/jobs/{imported.pk}/").content.decode()
    assert (
        f'<dt>Import run</dt><dd><a href="/admin/catalog/importrun/{run.pk}/change/">#{run.pk} {run}</a></dd>' in html
    )
    assert "<dt>Created</dt><dd>1,234</dd>" in html and "<dt>Skipped</dt><dd>2</dd>" in html
    assert "Raw result" in html  # the stored dict is still there, folded

    html = staff_client.get(f"/jobs/{retrained.pk}/").content.decode()
    assert f'<dt>Model version</dt><dd><a href="/models/{version.pk}/">#{version.pk} tiny v1</a></dd>' in html
    assert f'<a href="/admin/ml/datasetsnapshot/{version.snapshot_id}/change/">' in html
    assert f'<a href="/api/predictions/?model_version={version.pk}">' in html
    assert f'<dt>Evaluation</dt><dd><a href="/models/{version.pk}/">{evaluation}</a></dd>' in html
    assert f'<dt>Batch-predict job</dt><dd><a href="/jobs/{imported.pk}/">' in html
    assert "<dt>Predict · Movies per s</dt><dd>12.35</dd>" in html

    html = labeler_client.get(f"/jobs/{imported.pk}/").content.decode()  # admin pages: staff only
    assert f"<dt>Import run</dt><dd>#{run.pk} {run}</dd>" in html
    Job.objects.filter(pk=imported.pk).update(result={"import_run_id": run.pk + 1000})
    html = staff_client.get(f"/jobs/{imported.pk}/").content.decode()
    assert f"<dt>Import run</dt><dd>#{run.pk + 1000} (deleted)</dd>" in html
