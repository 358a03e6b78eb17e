"""A job always ends: one way to a terminal state, credentials scrubbed on every end, text that
can always be stored, bounded enqueue, and work whose worker went silent brought back.

In-process (eager Celery or direct calls); the real kill -9 of a worker is in test_faults.py.
"""

from __future__ import annotations

import os
import socket
import time
from datetime import timedelta
from unittest import mock

import pytest
from django.utils import timezone

from base.runs import mask_secrets, storable_text
from catalog.importers import run as importer_run
from catalog.importers import run_import
from catalog.models import ImportRun
from workers.broker import broker_message_ids
from workers.jobs import cancel, enqueue, retry
from workers.lifecycle import JobCancelled, claim_job, finish_job
from workers.models import Job, JobShard, masked_params
from workers.sweep import requeue_stale_jobs

pytestmark = pytest.mark.django_db


def _running(kind="snapshot", params=None, *, silent_for_s: float = 0, **fields) -> Job:
    job = Job.objects.create(
        kind=kind,
        params=params or {},
        status=Job.Status.QUEUED,
        enqueued_at=timezone.now(),
        celery_task_id="t-" + str(time.monotonic_ns()),
    )
    claim_job(job.pk)
    past = timezone.now() - timedelta(seconds=silent_for_s)
    Job.objects.filter(pk=job.pk).update(heartbeat_at=past, started_at=past, **fields)
    return Job.objects.get(pk=job.pk)


# --- one secrets list, scrubbed on every end ---------------------------------------------------


def test_one_secrets_list_and_one_masking_function():
    params = {"api_key": "k", "bearer_token": "b", "token": "t", "password": "p", "path": "/x"}
    assert masked_params(params) == mask_secrets(params) == importer_run.mask_secrets(params)
    assert masked_params(params) == {
        "api_key": "***",
        "bearer_token": "***",
        "token": "***",
        "password": "***",
        "path": "/x",
    }


def test_a_job_cancelled_while_queued_keeps_no_credentials(django_capture_on_commit_callbacks):
    with mock.patch("workers.jobs.send_job_message"):
        with django_capture_on_commit_callbacks(execute=True):
            job = enqueue("import", {"source": "tmdb", "api_key": "SECRET-TMDB-KEY", "limit": 5})
    assert Job.objects.get(pk=job.pk).params["api_key"] == "SECRET-TMDB-KEY"  # needed while queued
    cancelled = cancel(job)
    assert cancelled.status == "cancelled"
    assert "SECRET-TMDB-KEY" not in str(Job.objects.filter(pk=job.pk).values().get())
    assert "api_key" not in cancelled.params


@pytest.mark.parametrize("end", ["failed", "cancelled"])
def test_the_sweep_scrubs_credentials_when_it_ends_a_lost_job(settings, end):
    job = _running(
        "import",
        {"source": "tmdb", "api_key": "SECRET-TMDB-KEY"},
        silent_for_s=3600,
        cancel_requested=(end == "cancelled"),
    )
    with mock.patch("workers.broker.broker_message_ids", return_value=set()):
        requeue_stale_jobs()
    job.refresh_from_db()
    assert job.status == end
    assert "SECRET-TMDB-KEY" not in str(Job.objects.filter(pk=job.pk).values().get())


# --- finishing can never fail on its content -----------------------------------------------------


def test_storable_text_removes_nul_and_lone_surrogates_and_caps_size():
    text = storable_text("a\x00b\ud800c" + "x" * 50_000, 1000)
    assert "\x00" not in text and len(text) <= 1000
    text.encode("utf-8")  # no lone surrogate left
    tail = storable_text("start" + "y" * 5000 + "END", 100, keep="tail")
    assert tail.endswith("END") and len(tail) <= 100


@pytest.mark.postgres
def test_finish_job_stores_nul_bytes_surrogates_and_huge_tracebacks():
    """PostgreSQL refuses NUL in text and jsonb: the job must still end, readable."""
    job = _running()
    assert finish_job(
        job.pk,
        Job.Status.FAILED,
        error="bad\x00byte \ud800 here",
        tb="T" * 200_000 + "\x00end",
        result={"note": "x\x00y", "k\x00": ["\ud83d"]},
        step="step\x00",
    )
    job.refresh_from_db()
    assert job.status == "failed" and job.finished_at
    assert "\x00" not in job.error + job.traceback + str(job.result) + job.step + "".join(job.log)
    assert job.error.startswith("bad\\x00byte") and job.traceback.endswith("\\x00end")
    assert len(job.traceback) <= 20_000


def _binary_csv(folder, kind: str):
    folder.mkdir(parents=True, exist_ok=True)
    text = "id,title,year,overview,genres\n" + "".join(f"{i},Movie {i},2001,plot {i},Drama\n" for i in range(50))
    data = text.encode("utf-16-le") if kind == "utf16-no-bom" else os.urandom(8192)
    (folder / "movies.csv").write_bytes(data)
    return folder


@pytest.mark.postgres
@pytest.mark.parametrize("kind", ["utf16-no-bom", "random-binary"])
def test_a_binary_movies_csv_fails_the_job_and_its_import_run_with_a_readable_reason(
    kind, eager_celery, tmp_path, django_capture_on_commit_callbacks
):
    folder = _binary_csv(tmp_path / "import", kind)
    with django_capture_on_commit_callbacks(execute=True):
        job = enqueue("import", {"source": "csv", "path": str(folder)})
    job.refresh_from_db()
    assert job.status == "failed", (job.status, job.log)
    assert "movies.csv is not a text CSV (binary data at byte" in job.error
    assert "\x00" not in job.error and "\\x00" not in job.error  # no raw bytes echoed
    run = ImportRun.objects.get(pk=job.result["import_run_id"])
    assert run.status == "failed" and "not a text CSV" in run.error


def test_a_cancelled_import_leaves_its_import_run_cancelled(csv_folder):
    folder = csv_folder(5, posters=False)

    def cancelled(message, fraction):
        raise JobCancelled("job was cancelled")

    with pytest.raises(JobCancelled):
        run_import("csv", {"path": str(folder)}, progress=cancelled)
    assert ImportRun.objects.get().status == "cancelled"


# --- enqueue with the broker down ----------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed again when we leave: nothing listens there


@pytest.mark.redis
def test_enqueue_while_redis_is_down_returns_fast_and_the_sweep_sends_the_job_later(
    monkeypatch, django_capture_on_commit_callbacks
):
    from celery import current_app

    down = f"redis://127.0.0.1:{_closed_port()}/0"
    with monkeypatch.context() as patch:
        patch.setenv("CELERY_BROKER_URL", down)  # Celery lets the environment win
        patch.setitem(current_app.conf, "broker_url", down)
        started = time.monotonic()
        with django_capture_on_commit_callbacks(execute=True):
            job = enqueue("snapshot", {})
        took = time.monotonic() - started
    print(f"enqueue with the broker down took {took:.2f} s")
    assert took < 2.0, f"enqueue blocked the request for {took:.1f} s"
    job.refresh_from_db()
    assert job.status == "queued" and "could not reach the broker" in job.log[-1]
    # The broker is back: the sweep sends it (grace 0: do not wait the production 2 minutes).
    report = requeue_stale_jobs(grace_s=0)
    job.refresh_from_db()
    assert report.requeued_jobs == [job.pk]
    in_broker = broker_message_ids()
    assert in_broker is not None and job.celery_task_id in in_broker


# --- silent workers ------------------------------------------------------------------------------


def test_cancel_ends_a_running_job_at_once_when_nobody_runs_it_and_retry_works_after(settings):
    settings.GENREWEB_HEARTBEAT_TIMEOUT_S = 60
    job = _running(silent_for_s=600)
    cancelled = cancel(job)
    assert cancelled.status == "cancelled" and cancelled.finished_at
    with mock.patch("workers.jobs.send_job_message"):
        again = retry(cancelled)
    assert again.status == "queued" and again.retry_of_id == job.pk


def test_cancel_of_a_running_job_with_a_live_worker_only_asks_it_to_stop(settings):
    settings.GENREWEB_HEARTBEAT_TIMEOUT_S = 60
    job = _running(silent_for_s=5)
    assert cancel(job).status == "running"
    assert Job.objects.get(pk=job.pk).cancel_requested


def test_the_sweep_fails_a_silent_import_job_and_its_import_run_within_the_heartbeat_limit(settings):
    settings.GENREWEB_HEARTBEAT_TIMEOUT_S = 120
    run = ImportRun.objects.create(kind="csv", status=ImportRun.Status.RUNNING)
    lost = _running("import", {"source": "csv", "path": "/x"}, silent_for_s=121, result={"import_run_id": run.pk})
    alive = _running("import", {"source": "csv", "path": "/y"}, silent_for_s=30)
    with mock.patch("workers.broker.broker_message_ids", return_value=set()):
        report = requeue_stale_jobs()
    assert report.failed_lost_jobs == [lost.pk]
    lost.refresh_from_db()
    run.refresh_from_db()
    assert lost.status == "failed" and "worker running this job was lost" in lost.error
    assert run.status == "failed" and run.finished_at
    assert Job.objects.get(pk=alive.pk).status == "running"


def test_the_sweep_resends_a_running_shard_whose_heartbeat_stopped(settings, eager_celery):
    settings.GENREWEB_HEARTBEAT_TIMEOUT_S = 120
    job = _running("predict", {"model_version_id": 1})
    old = timezone.now() - timedelta(seconds=600)
    lost = JobShard.objects.create(
        job=job,
        index=0,
        movie_ids=[1],
        status="running",
        celery_task_id="old",
        heartbeat_at=old,
        started_at=old,
        attempts=1,
    )
    live = JobShard.objects.create(
        job=job,
        index=1,
        movie_ids=[2],
        status="running",
        celery_task_id="live",
        heartbeat_at=timezone.now(),
        started_at=old,
        attempts=1,
    )
    with (
        mock.patch("workers.tasks.predict_shard.apply_async") as send,
        mock.patch("workers.broker.broker_message_ids", return_value={"old", "live"}),
    ):
        report = requeue_stale_jobs()
    assert report.requeued_shards == [lost.pk]
    lost.refresh_from_db()
    assert lost.status == "queued" and lost.celery_task_id != "old"
    assert send.call_args.kwargs["task_id"] == lost.celery_task_id
    assert JobShard.objects.get(pk=live.pk).celery_task_id == "live"
    assert Job.objects.get(pk=job.pk).status == "running"
