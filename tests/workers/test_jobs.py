"""workers.jobs and the job tasks, in-process (eager Celery, SQLite or Postgres)."""

from __future__ import annotations

from datetime import timedelta
from unittest import mock

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from base.progress import scaled
from catalog.models import ImportRun, Movie
from workers import broker, lifecycle
from workers.jobs import JobError, cancel, enqueue, retry
from workers.kinds import InvalidJobParams, validate_params
from workers.lifecycle import JobCancelled, ProgressReporter, claim_job
from workers.models import MAX_LOG_LINES, Job
from workers.sweep import requeue_stale_jobs

pytestmark = pytest.mark.django_db


# --- validation ----------------------------------------------------------------------------


def test_unknown_kind_is_refused_with_the_known_kinds():
    with pytest.raises(InvalidJobParams) as err:
        validate_params("frobnicate", {})
    assert "kind" in err.value.errors and "import" in err.value.errors["kind"]


@pytest.mark.parametrize(
    "kind, params, field",
    [
        ("import", {}, "source"),
        ("import", {"source": "csv"}, "path"),
        ("import", {"source": "csv", "path": "/nonexistent/folder"}, "path"),
        ("import", {"source": "tmdb", "limit": "many"}, "limit"),
        ("preprocess", {"movie_ids": [1, "x"]}, "movie_ids"),
        ("preprocess", {"min_year": 2000, "max_year": 1990}, "min_year"),
        ("preprocess", {"grayscale_policy": "sepia"}, "grayscale_policy"),
        ("snapshot", {"fractions": [0.5, 0.5]}, "fractions"),
        ("train", {"config": "tfidf-linear"}, "snapshot_id"),
        ("train", {"snapshot_id": 999999, "config": "tfidf-linear"}, "snapshot_id"),
        ("evaluate", {}, "model_version_id"),
        ("predict", {"model_version_id": 999999}, "model_version_id"),
        ("predict", {"model_version_id": "abc"}, "model_version_id"),
        ("predict", {"model_version_id": 1, "shard_size": 0}, "shard_size"),
        ("predict", {"model_version_id": 1, "movie_ids": []}, "movie_ids"),
        ("retrain", {"config": "no-such-preset"}, "config"),
        ("retrain", {"config": {"preset": "tfidf-linear", "epochs": "many"}}, "config"),
        ("retrain", {"config": "tfidf-linear", "snapshot": {"seed": -1}}, "snapshot.seed"),
    ],
)
def test_bad_params_name_the_field(kind, params, field):
    with pytest.raises(InvalidJobParams) as err:
        validate_params(kind, params)
    assert field in err.value.errors, err.value.errors
    assert field in str(err.value)


def test_params_must_be_an_object_of_json_values():
    with pytest.raises(InvalidJobParams, match="params"):
        validate_params("snapshot", ["seed", 1])
    with pytest.raises(InvalidJobParams, match="JSON"):
        validate_params("snapshot", {"name": object()})


def test_valid_params_are_cleaned(tmp_path):
    (tmp_path / "movies.csv").write_text("id,title\n")
    cleaned = validate_params("import", {"source": "csv", "path": str(tmp_path), "limit": "5"})
    assert cleaned == {"source": "csv", "path": str(tmp_path.resolve()), "limit": 5}
    assert validate_params("preprocess", {"movie_ids": [3, 1, 3]}) == {"movie_ids": [1, 3]}


# --- enqueue / send ----------------------------------------------------------------------


def test_enqueue_creates_a_queued_job_and_sends_only_after_commit(django_capture_on_commit_callbacks):
    user = get_user_model().objects.create_user("staff", password="x")
    with mock.patch("workers.jobs.send_job_message") as send:
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            job = enqueue("snapshot", {"seed": 3}, user)
        assert send.call_count == 0  # nothing sent before the transaction commits
        assert len(callbacks) == 1
        callbacks[0]()
    send.assert_called_once_with(job.pk, "workers.run_snapshot", job.celery_task_id)
    job.refresh_from_db()
    assert (job.status, job.kind, job.queue, job.requested_by) == ("queued", "snapshot", "default", user)
    assert job.params == {"seed": 3} and job.celery_task_id and job.enqueued_at
    assert Job.objects.get(pk=job.pk).log[0].endswith("queued on default")


def test_gpu_kinds_go_to_the_gpu_queue(django_capture_on_commit_callbacks):
    with mock.patch("workers.jobs.send_job_message"):
        assert enqueue("retrain", {"config": "tfidf-linear"}).queue == "gpu"


def test_a_broker_that_is_down_leaves_the_job_queued_for_the_sweep(django_capture_on_commit_callbacks):
    from workers.jobs import task_named

    task = task_named("workers.run_snapshot")
    with mock.patch.object(task, "apply_async", side_effect=ConnectionError("broker down")):
        with django_capture_on_commit_callbacks(execute=True):
            job = enqueue("snapshot", {})
    job.refresh_from_db()
    assert job.status == "queued"
    assert "could not reach the broker" in job.log[-1]


def test_anonymous_user_is_recorded_as_nobody(django_capture_on_commit_callbacks):
    from django.contrib.auth.models import AnonymousUser

    with mock.patch("workers.jobs.send_job_message"):
        assert enqueue("snapshot", {}, AnonymousUser()).requested_by is None


# --- claim / cancel / retry --------------------------------------------------------------


def _queued(kind="snapshot", params=None) -> Job:
    with mock.patch("workers.jobs.send_job_message"):
        return enqueue(kind, params or {})


def test_a_job_is_claimed_once():
    job = _queued()
    assert claim_job(job.pk).status == "running"
    assert claim_job(job.pk) is None  # a duplicate message does not run it again


def test_cancel_a_queued_job_marks_it_and_the_task_refuses_it():
    job = _queued()
    with mock.patch("workers.jobs.revoke_tasks"):
        cancelled = cancel(job)
    assert cancelled.status == "cancelled" and cancelled.finished_at
    assert claim_job(job.pk) is None
    with pytest.raises(JobError, match="already cancelled"):
        cancel(job)


def test_cancel_a_running_job_makes_its_progress_callback_raise():
    job = _queued()
    claim_job(job.pk)
    progress = ProgressReporter(job.pk, min_interval=0)
    progress("step one", 0.2)
    assert cancel(job).status == "running"
    with pytest.raises(JobCancelled):
        progress("step two", 0.4)


def test_progress_is_throttled_logged_and_mapped_into_spans():
    job = _queued()
    claim_job(job.pk)
    progress = ProgressReporter(job.pk, min_interval=3600)
    progress("first", 0.0)
    progress("ignored: too soon", 0.5)
    job.refresh_from_db()
    assert job.step == "first"
    scaled(progress, 0.5, 1.0)("second half done", 1.0)  # the end of a job is always written
    job.refresh_from_db()
    assert job.step == "second half done" and job.progress == 100.0
    assert job.heartbeat_at is not None
    assert [line.split(" ", 1)[1] for line in job.log[-2:]] == ["first (0%)", "second half done (100%)"]


def test_log_is_bounded(monkeypatch):
    assert MAX_LOG_LINES == 500
    monkeypatch.setattr(lifecycle, "MAX_LOG_LINES", 10)  # same rule, fewer writes
    job = _queued()
    for i in range(30):
        lifecycle.append_log(job.pk, f"line {i}")
    log = Job.objects.get(pk=job.pk).log
    assert len(log) == 10
    assert "earlier lines dropped" in log[0] and log[-1].endswith("line 29") and log[1].endswith("line 21")


def test_retry_refuses_unfinished_jobs_and_copies_params():
    job = _queued("snapshot", {"seed": 5})
    with pytest.raises(JobError, match="Only failed or cancelled"):
        retry(job)
    Job.objects.filter(pk=job.pk).update(status="failed")
    job.refresh_from_db()
    with mock.patch("workers.jobs.send_job_message"):
        again = retry(job)
    assert again.pk != job.pk and again.retry_of == job
    assert again.params == {"seed": 5} and again.status == "queued"


# --- running real services in-process ------------------------------------------------------


def test_import_job_runs_the_csv_importer(eager_celery, csv_folder, django_capture_on_commit_callbacks):
    folder = csv_folder(6)
    with django_capture_on_commit_callbacks(execute=True):
        job = enqueue("import", {"source": "csv", "path": str(folder)})
    job.refresh_from_db()
    assert job.status == "succeeded", (job.error, job.log)
    assert job.result["created"] == 6 and job.progress == 100.0
    assert ImportRun.objects.get(pk=job.result["import_run_id"]).created == 6
    assert Movie.objects.count() == 6
    assert job.started_at <= job.finished_at


def test_a_failing_service_fails_the_job_with_error_and_traceback(
    eager_celery, tmp_path, django_capture_on_commit_callbacks
):
    (tmp_path / "movies.csv").write_bytes(b"")  # exists, so it passes validation, but is empty
    with django_capture_on_commit_callbacks(execute=True):
        job = enqueue("import", {"source": "csv", "path": str(tmp_path / "movies.csv")})
    job.refresh_from_db()
    assert job.status == "failed"
    assert job.error and "Traceback" in job.traceback
    assert job.finished_at is not None


def test_transient_database_errors_are_retried_with_backoff(eager_celery, django_capture_on_commit_callbacks):
    from django.db import OperationalError

    calls = []

    def flaky(**options):
        calls.append(1)
        raise OperationalError("server closed the connection unexpectedly")

    with mock.patch("ml.services.snapshots.build_snapshot", side_effect=flaky):
        with django_capture_on_commit_callbacks(execute=True):
            job = enqueue("snapshot", {})
    job.refresh_from_db()
    # eager mode runs the retries at once: first try + 3 bounded retries, then failed
    assert len(calls) == 4
    assert job.status == "failed" and "after 3 retries" in job.error
    assert sum("transient error" in line for line in job.log) == 3


# --- the stale-job sweep ------------------------------------------------------------------


def test_sweep_resends_queued_jobs_whose_message_vanished(settings):
    lost = _queued()
    in_broker = _queued()
    fresh = _queued()
    old = timezone.now() - timedelta(minutes=10)
    Job.objects.filter(pk__in=[lost.pk, in_broker.pk]).update(enqueued_at=old)
    in_broker.refresh_from_db()
    with (
        mock.patch("workers.broker.broker_message_ids", return_value={in_broker.celery_task_id}),
        mock.patch("workers.jobs.send_job_message") as send,
    ):
        assert requeue_stale_jobs(grace_s=60, dry_run=True).requeued_jobs == [lost.pk]
        send.assert_not_called()
        report = requeue_stale_jobs(grace_s=60)
    assert report.requeued_jobs == [lost.pk]
    lost.refresh_from_db()
    send.assert_called_once_with(lost.pk, "workers.run_snapshot", lost.celery_task_id)
    assert lost.enqueued_at > old and "re-sent by the stale-job sweep" in lost.log[-1]
    assert fresh.pk not in report.requeued_jobs


def test_sweep_fails_running_jobs_whose_worker_is_gone():
    job = _queued()
    claim_job(job.pk)
    Job.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now() - timedelta(days=1))
    with mock.patch("workers.broker.broker_message_ids", return_value=set()):
        report = requeue_stale_jobs(grace_s=60)
    assert report.failed_lost_jobs == [job.pk]
    job.refresh_from_db()
    assert job.status == "failed" and "worker" in job.error


def test_requeue_stale_jobs_command(capsys):
    from django.core.management import call_command

    job = _queued()
    Job.objects.filter(pk=job.pk).update(enqueued_at=timezone.now() - timedelta(hours=1))
    with (
        mock.patch("workers.broker.broker_message_ids", return_value=set()),
        mock.patch("workers.jobs.send_job_message"),
    ):
        call_command("requeue_stale_jobs", "--grace", "60", "--dry-run")
        assert Job.objects.get(pk=job.pk).enqueued_at < timezone.now() - timedelta(minutes=30)
        call_command("requeue_stale_jobs", "--grace", "60")
    out = capsys.readouterr().out
    assert f"[{job.pk}]" in out and "dry run" in out
    assert Job.objects.get(pk=job.pk).enqueued_at > timezone.now() - timedelta(minutes=1)


@pytest.mark.slow  # a fresh Django process
def test_a_fresh_process_can_send_every_kind_without_importing_the_tasks_first():
    """Regression: a web/command process had not imported workers.tasks, so sends failed."""
    import subprocess
    import sys

    from tests.celery_worker import ROOT

    code = (
        "import django; django.setup()\n"
        "from workers.jobs import task_named\n"
        "from workers.kinds import KINDS\n"
        "print(sorted(task_named(spec.task_name).name for spec in KINDS.values()))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**__import__("os").environ, "DJANGO_SETTINGS_MODULE": "genreweb.settings"},
    )
    assert out.returncode == 0, out.stderr
    assert "workers.start_batch_predict" in out.stdout and "workers.run_import" in out.stdout


def test_filesystem_broker_messages_are_found_by_task_id(tmp_path):
    import json

    (tmp_path / "1_a.default.msg").write_text(json.dumps({"headers": {"id": "task-1"}, "body": ""}))
    (tmp_path / "2_b.gpu.msg").write_text(json.dumps({"properties": {"correlation_id": "task-2"}}))
    (tmp_path / "3_c.gpu.msg").write_text("{not json")  # half-written or taken: ignored
    app = mock.Mock()
    app.conf.broker_transport_options = {"data_folder_in": str(tmp_path)}
    assert broker.filesystem_message_ids(app) == {"task-1", "task-2"}


def test_benchmark_command_refuses_unusable_setups(settings):
    from django.core.management import CommandError, call_command

    with pytest.raises(CommandError, match="No model version 424242"):
        call_command("benchmark_batch_inference", "--model-version", "424242")


def test_credentials_in_params_are_masked_when_shown_and_dropped_when_the_job_finishes(client, django_user_model):
    from workers.lifecycle import finish_job

    staff = django_user_model.objects.create_user("staff", password="pw", is_staff=True)
    job = Job.objects.create(
        kind="import", params={"source": "tmdb", "api_key": "s3cret-key", "limit": 5}, requested_by=staff
    )
    assert job.public_params == {"source": "tmdb", "api_key": "***", "limit": 5}

    client.force_login(staff)
    assert client.get(f"/api/jobs/{job.pk}/").json()["params"]["api_key"] == "***"
    page = client.get(f"/jobs/{job.pk}/").content.decode()
    assert "s3cret-key" not in page

    assert finish_job(job.pk, Job.Status.FAILED, error="401 from TMDB")
    job.refresh_from_db()
    assert job.params == {"source": "tmdb", "limit": 5}


def test_limit_torch_threads_sets_the_configured_count(settings):
    import torch

    from workers.tasks import limit_torch_threads

    before = torch.get_num_threads()
    try:
        settings.GENREWEB_TORCH_THREADS = before + 1  # not the current count: the call must change it
        limit_torch_threads()
        assert torch.get_num_threads() == before + 1
    finally:
        torch.set_num_threads(before)


@pytest.mark.redis
@pytest.mark.worker
def test_worker_pool_processes_run_with_the_configured_torch_threads(tmp_path):
    """Observed inside a real worker's pool process, through a test-only task."""
    from tests.celery_worker import WorkerProcess
    from tests.worker_probes import torch_threads

    # OMP_NUM_THREADS=1 makes PyTorch start with one thread there, so a 2 can only come from
    # the worker's GENREWEB_TORCH_THREADS hook.
    worker = WorkerProcess(
        tmp_path,
        use_redis=True,
        queues="default",
        include="tests.worker_probes",
        extra_env={"OMP_NUM_THREADS": "1", "GENREWEB_TORCH_THREADS": "2"},
    ).start()
    try:
        assert torch_threads.apply_async(queue="default").get(timeout=60) == 2
    finally:
        worker.stop()
