# ruff: noqa: F811  (pytest fixtures imported from tests/ml/test_audit_review.py)
"""The audit_labels job kind end to end (eager Celery): staff enqueue it, it runs the audit
service with per-fold progress and ends through finish_job naming the AuditRun it stored."""

from __future__ import annotations

import pytest

from ml.models import AuditRun
from tests.factories import make_user
from tests.ml.test_audit_review import catalog, fake_features  # noqa: F401
from workers.jobs import enqueue
from workers.kinds import InvalidJobParams

pytestmark = pytest.mark.slow


def test_audit_labels_job_runs_and_records_the_audit(
    catalog, fake_features, eager_celery, django_capture_on_commit_callbacks
):  # noqa: F811
    staff = make_user("sam", staff=True)
    with pytest.raises(InvalidJobParams) as bad:
        enqueue("audit_labels", {"folds": 1}, staff)
    assert "folds" in bad.value.errors
    with django_capture_on_commit_callbacks(execute=True):
        job = enqueue("audit_labels", {"folds": 4}, staff)
    job.refresh_from_db()
    assert job.status == "succeeded", (job.error, job.log)
    run = AuditRun.objects.get(pk=job.result["audit_id"])
    assert run.status == AuditRun.Status.SUCCEEDED and run.folds == 4 and run.created_by == staff
    assert job.result["counts"]["queued_movies"] == run.counts["queued_movies"] >= 3
    assert job.progress == 100.0
