"""One run-status enum (base.runs.RunStatus) for jobs, shards, imports and training runs, and
one progress type with one way to scale a sub-step (base.progress)."""

from __future__ import annotations

import importlib

import pytest
from django.apps import apps

from base.progress import report, scaled
from base.runs import RUN_FINISHED, RunStatus
from catalog.models import ImportRun
from ml.models import TrainingRun
from workers.models import Job, JobShard


def test_jobs_shards_imports_and_training_runs_share_one_status_enum():
    assert Job.Status is JobShard.Status is ImportRun.Status is TrainingRun.Status is RunStatus
    assert RunStatus.values == ["queued", "running", "succeeded", "failed", "cancelled"]
    assert Job.FINISHED == RUN_FINISHED
    for model in (Job, JobShard, ImportRun, TrainingRun):
        assert model._meta.get_field("status").choices == RunStatus.choices, model
    assert JobShard._meta.get_field("status").default == "queued"  # was "pending"


@pytest.mark.django_db
def test_the_migration_renames_stored_pending_shards_to_queued():
    migration = importlib.import_module("workers.migrations.0003_job_kinds_table_and_run_status")
    job = Job.objects.create(kind="predict", params={"model_version_id": 1})
    old = JobShard.objects.create(job=job, index=0, movie_ids=[1])
    done = JobShard.objects.create(job=job, index=1, movie_ids=[2], status="succeeded")
    JobShard.objects.filter(pk=old.pk).update(status="pending")  # as 0002 stored it
    migration.shards_pending_to_queued(apps, None)
    assert JobShard.objects.get(pk=old.pk).status == "queued"
    assert JobShard.objects.get(pk=done.pk).status == "succeeded"
    migration.shards_queued_to_pending(apps, None)
    assert JobShard.objects.get(pk=old.pk).status == "pending"


def test_scaled_maps_a_sub_step_onto_its_share_and_clamps():
    seen = []

    def outer(message, fraction):
        seen.append((message, round(fraction, 6)))

    first, second = scaled(outer, 0.0, 0.25), scaled(outer, 0.25, 1.0)
    for fraction in (0.0, 0.5, 1.0, 7.0):
        first("a", fraction)
    for fraction in (-1.0, 0.0, 0.5, 1.0):
        second("b", fraction)
    fractions = [f for _, f in seen]
    assert fractions == [0.0, 0.125, 0.25, 0.25, 0.25, 0.25, 0.625, 1.0]
    assert fractions == sorted(fractions)  # never backwards across sub-steps
    assert scaled(None, 0.0, 1.0) is None
    report(None, "nobody listens", 0.5)  # no callback: nothing happens
    report(outer, "clamped", 3.0)
    assert seen[-1] == ("clamped", 1.0)
