"""Jobs API: staff-only creation, validation errors that name the field, cancel and retry."""

from __future__ import annotations

import pytest

from workers.models import Job

pytestmark = pytest.mark.django_db


def test_jobs_create_is_staff_only(api_clients, world, monkeypatch):
    monkeypatch.setattr("workers.jobs.send_job_message", lambda *args: None)
    payload = {"kind": "preprocess", "params": {}}
    assert api_clients["anonymous"].post("/api/jobs/", payload, format="json").status_code == 401
    assert api_clients["labeler"].post("/api/jobs/", payload, format="json").status_code == 403
    response = api_clients["staff"].post("/api/jobs/", payload, format="json")
    assert response.status_code == 201
    job = Job.objects.get()
    assert response.json()["id"] == job.pk and job.requested_by.username == "sam"
    detail = api_clients["labeler"].get(f"/api/jobs/{job.pk}/").json()
    assert detail["status"] == "queued" and detail["log"]


def test_jobs_validation_errors_name_the_field(api_clients, world):
    staff = api_clients["staff"]
    response = staff.post("/api/jobs/", {"kind": "train", "params": {"config": "tfidf-linear"}}, format="json")
    assert response.status_code == 400 and "snapshot_id" in response.json()["params"]
    response = staff.post("/api/jobs/", {"kind": "teleport"}, format="json")
    assert response.status_code == 400 and "kind" in response.json()
    response = staff.post("/api/jobs/", {"kind": "import", "params": {"source": "csv", "path": "/nope"}}, format="json")
    assert response.status_code == 400 and "path" in response.json()["params"]
    assert staff.get("/api/jobs/?status=bogus").status_code == 400
    assert not Job.objects.exists()


def test_job_cancel_and_retry(api_clients, world, monkeypatch):
    monkeypatch.setattr("workers.jobs.send_job_message", lambda *args: None)
    monkeypatch.setattr("workers.jobs.revoke_tasks", lambda ids: None)
    job_id = api_clients["staff"].post("/api/jobs/", {"kind": "preprocess"}, format="json").json()["id"]
    assert api_clients["labeler"].post(f"/api/jobs/{job_id}/cancel/").status_code == 403
    response = api_clients["staff"].post(f"/api/jobs/{job_id}/cancel/")
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    assert api_clients["staff"].post(f"/api/jobs/{job_id}/cancel/").status_code == 409
    assert api_clients["labeler"].post(f"/api/jobs/{job_id}/retry/").status_code == 403
    retried = api_clients["staff"].post(f"/api/jobs/{job_id}/retry/")
    assert retried.status_code == 201 and retried.json()["retry_of"] == job_id


def test_nul_in_job_params_is_a_400(api_clients, world):
    before = Job.objects.count()
    for body in (
        {"kind": "import", "params": {"source": "csv", "path": "/tmp/a\u0000b"}},
        {"kind": "snapshot", "params": {"name": "x\u0000"}},
        {"kind": "snapshot", "params": {"k\u0000": 1}},
    ):
        response = api_clients["staff"].post("/api/jobs/", body, format="json")
        assert response.status_code == 400, response.content[:300]
    # The same through a form field (the JSON arrives as text, not through the JSON parser).
    response = api_clients["staff"].post("/api/jobs/", {"kind": "snapshot", "params": '{"name": "x\\u0000"}'})
    assert response.status_code == 400 and "params" in response.json()
    assert Job.objects.count() == before
