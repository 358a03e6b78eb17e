"""Faults the fleet must survive, with a real Redis, a real worker process and Postgres.

Each test starts its own worker (tests/celery_worker.py) on this run's Redis database and
the pytest-django test database; jobs go through workers.jobs exactly as the UI sends them.
Slow or failing work is injected into the worker from the test side (tests/workers/faults.py,
loaded by the workers' test-only settings), never through job parameters.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest

from catalog.models import ImportRun, Movie, MovieGenre, Poster
from ml.models import Prediction
from tests.celery_worker import WorkerProcess
from tests.factories import build_tiny_model_version, make_movies
from workers.broker import broker_message_ids
from workers.jobs import cancel, enqueue, retry
from workers.models import Job, JobShard
from workers.sweep import requeue_stale_jobs

from .faults import FAULTS_FILE_ENV, set_faults

pytestmark = [
    pytest.mark.redis,
    pytest.mark.worker,
    pytest.mark.postgres,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
]


def wait_for(predicate, timeout: float, what: str, worker: WorkerProcess | None = None, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    log = worker.read_log() if worker else ""
    raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{log}")


def finished(job_id: int) -> Job | None:
    job = Job.objects.get(pk=job_id)
    return job if job.is_finished else None


@pytest.fixture
def faults(tmp_path):
    """``faults(shard_delay_s=1.5)``: what the workers this test starts inject from now on."""
    path = tmp_path / "faults.json"
    set_faults(path)
    return lambda **injected: set_faults(path, **injected)


@pytest.fixture
def start_worker(tmp_path, faults):
    workers: list[WorkerProcess] = []
    fault_env = {
        "DJANGO_SETTINGS_MODULE": "tests.workers.worker_settings",
        FAULTS_FILE_ENV: str(tmp_path / "faults.json"),
    }

    def start(name: str = "w", **env) -> WorkerProcess:
        folder = tmp_path / f"worker-{name}-{len(workers)}"
        folder.mkdir()
        worker = WorkerProcess(folder, use_redis=True, extra_env={**fault_env, **env})
        workers.append(worker)
        return worker.start(timeout=90)

    yield start
    for worker in workers:
        # The test is over: SIGKILL (a warm shutdown waits for a task that may sleep on a fault).
        worker.kill()
        worker.stop()  # closes the log


# Fault tests keep Redis's production visibility timeout (8 h): lost work must come back
# through heartbeats and the sweep, not through Redis redelivery. The worker beats every
# second; the test sets the heartbeat limit to a few seconds and calls the sweep itself
# instead of waiting for its interval (production defaults: test_recovery_time_with_...).
FAST_BEAT = {"GENREWEB_HEARTBEAT_INTERVAL_S": "1"}
LOST_AFTER_S = 3


def _assert_production_visibility_timeout():
    from django.conf import settings

    assert settings.CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"] == 8 * 3600
    assert "GENREWEB_VISIBILITY_TIMEOUT_S" not in os.environ


def _kill_mid_batch_predict(start_worker, faults, n_movies=40):
    movie_ids = make_movies(n_movies)
    version_id = build_tiny_model_version()
    faults(shard_delay_s=1.5)
    first = start_worker("a", **FAST_BEAT)
    job = enqueue("predict", {"model_version_id": version_id, "shard_size": 8})

    def a_shard_running_after_one_done():
        shards = JobShard.objects.filter(job=job)
        return shards.filter(status="succeeded").exists() and shards.filter(status="running").first()

    victim = wait_for(a_shard_running_after_one_done, 120, "a shard in flight", first)
    first.kill()  # SIGKILL the whole worker: main process and pool child (os.killpg)
    assert JobShard.objects.get(pk=victim.pk).status == "running"
    assert Job.objects.get(pk=job.pk).status == "running"
    return job, victim, version_id, movie_ids


def _sweep_when_silent(settings, what):
    settings.GENREWEB_HEARTBEAT_TIMEOUT_S = LOST_AFTER_S
    time.sleep(LOST_AFTER_S + 0.5)
    report = requeue_stale_jobs()
    assert getattr(report, what), report
    return report


def test_worker_killed_as_a_whole_mid_batch_predict_gets_its_shard_re_sent_and_the_count_is_exact(
    start_worker, faults, settings
):
    _assert_production_visibility_timeout()
    job, victim, version_id, movie_ids = _kill_mid_batch_predict(start_worker, faults)
    second = start_worker("b", **FAST_BEAT)
    report = _sweep_when_silent(settings, "requeued_shards")
    assert victim.pk in report.requeued_shards
    done = wait_for(lambda: finished(job.pk), 150, "the job to finish after the re-send", second)
    assert done.status == "succeeded", (done.error, done.log, second.read_log())
    victim.refresh_from_db()
    assert victim.status == "succeeded" and victim.attempts >= 2  # it ran again on the new worker
    assert done.result["redelivered_shards"] >= 1
    assert Prediction.objects.filter(model_version_id=version_id).count() == len(movie_ids)
    assert done.result["predictions_written"] == len(movie_ids)
    assert sorted(Prediction.objects.filter(model_version_id=version_id).values_list("movie_id", flat=True)) == sorted(
        movie_ids
    )


def test_cancel_works_on_a_batch_predict_whose_worker_was_killed_and_retry_completes_it(start_worker, faults, settings):
    _assert_production_visibility_timeout()
    job, victim, version_id, movie_ids = _kill_mid_batch_predict(start_worker, faults)
    settings.GENREWEB_HEARTBEAT_TIMEOUT_S = LOST_AFTER_S
    time.sleep(LOST_AFTER_S + 0.5)
    cancelled = cancel(job)  # nobody runs it any more: it ends now, not in 8 h
    assert cancelled.status == "cancelled", (cancelled.step, cancelled.log)
    assert not JobShard.objects.filter(job=job, status__in=["queued", "running"]).exists()
    again = retry(cancelled)  # today: 409, the job is still "running"
    faults()  # the retry runs at full speed
    worker = start_worker("b", **FAST_BEAT)
    done = wait_for(lambda: finished(again.pk), 150, "the retry to finish", worker)
    assert done.status == "succeeded", (done.error, done.log)
    assert done.result["shards_reused"] >= 1
    assert sorted(Prediction.objects.filter(model_version_id=version_id).values_list("movie_id", flat=True)) == sorted(
        movie_ids
    )


def test_a_killed_import_job_fails_with_its_import_run_and_a_retry_imports_everything(
    start_worker, faults, settings, csv_folder
):
    _assert_production_visibility_timeout()
    folder = str(csv_folder(400, posters=False))
    faults(import_progress_delay_s=1.0)
    first = start_worker("a", **FAST_BEAT)
    job = enqueue("import", {"source": "csv", "path": folder})
    wait_for(lambda: Movie.objects.count() >= 100, 120, "the import to be under way", first)
    first.kill()
    assert Job.objects.get(pk=job.pk).status == "running"
    run = ImportRun.objects.get(pk=Job.objects.get(pk=job.pk).result["import_run_id"])
    assert run.status == "running"
    report = _sweep_when_silent(settings, "failed_lost_jobs")
    assert report.failed_lost_jobs == [job.pk]
    lost = Job.objects.get(pk=job.pk)
    run.refresh_from_db()
    assert lost.status == "failed" and "lost" in lost.error
    assert run.status == "failed" and run.finished_at
    again = retry(lost)
    faults()  # the retry runs at full speed
    worker = start_worker("b", **FAST_BEAT)
    done = wait_for(lambda: finished(again.pk), 150, "the retry to finish", worker)
    assert done.status == "succeeded", (done.error, done.log)
    assert Movie.objects.count() == 400 and Movie.objects.values("source_id").distinct().count() == 400


@pytest.mark.skipif(
    os.environ.get("GENREWEB_MEASURE_RECOVERY") != "1",
    reason="measurement (about 3 min a trial): set GENREWEB_MEASURE_RECOVERY=1",
)
def test_recovery_time_with_production_defaults(start_worker, faults):
    """Kill a worker mid-shard with every production default (heartbeat 15 s, limit 120 s, sweep
    every 60 s, visibility 8 h) while another worker runs; time until the shard ran again."""
    _assert_production_visibility_timeout()
    from django.conf import settings as live

    assert (
        live.GENREWEB_HEARTBEAT_INTERVAL_S,
        live.GENREWEB_HEARTBEAT_TIMEOUT_S,
        live.GENREWEB_REQUEUE_INTERVAL_S,
    ) == (15, 120, 60)
    make_movies(16)
    version_id = build_tiny_model_version()
    faults(shard_delay_s=20)
    first = start_worker("a")
    job = enqueue("predict", {"model_version_id": version_id, "shard_size": 8})
    victim = wait_for(lambda: JobShard.objects.filter(job=job, status="running").first(), 120, "a shard", first)
    second = start_worker("b")  # the survivor: its own sweep must find the lost shard
    killed_at = time.monotonic()
    first.kill()
    done = wait_for(lambda: finished(job.pk), 600, "the job to finish", second, interval=1)
    back_s = time.monotonic() - killed_at
    victim.refresh_from_db()
    print(f"RECOVERY kill -> job {done.status} in {back_s:.1f} s (shard attempts {victim.attempts})")
    assert done.status == "succeeded" and victim.attempts >= 2
    assert back_s < 300


@pytest.mark.skipif(
    os.environ.get("GENREWEB_MEASURE_RECOVERY") != "1",
    reason="measurement (about 3 min a trial): set GENREWEB_MEASURE_RECOVERY=1",
)
def test_killed_import_ends_with_production_defaults(start_worker, faults, csv_folder):
    """Kill a worker mid-import (production defaults, another worker alive); time until the job
    and its ImportRun have ended as failed, ready to retry."""
    _assert_production_visibility_timeout()
    folder = str(csv_folder(400, posters=False))
    # Both start first: a worker busy with an early-acked job may hold one more message (a
    # later worker's readiness ping) until it is done.
    faults(import_progress_delay_s=20.0)
    pair = [start_worker("a"), start_worker("b")]
    job = enqueue("import", {"source": "csv", "path": folder})
    wait_for(lambda: Movie.objects.count() >= 100, 120, "the import to be under way", pair[0])
    started_on = next(line for line in Job.objects.get(pk=job.pk).log if "started on" in line)
    first, second = pair if pair[0].name in started_on else pair[::-1]
    killed_at = time.monotonic()
    first.kill()
    done = wait_for(lambda: finished(job.pk), 600, "the job to end", second, interval=1)
    back_s = time.monotonic() - killed_at
    run = ImportRun.objects.get(pk=done.result["import_run_id"])
    print(f"RECOVERY kill -> import job {done.status}, ImportRun {run.status} in {back_s:.1f} s")
    assert done.status == "failed" and run.status == "failed"
    assert back_s < 300


def test_a_shard_that_raises_fails_the_job_and_a_retry_completes_it(start_worker, faults):
    movie_ids = make_movies(24)
    version_id = build_tiny_model_version()
    faults(fail_movie_id=sorted(movie_ids)[8])  # the first movie of shard 1 (8 movies a shard)
    worker = start_worker()
    job = enqueue("predict", {"model_version_id": version_id, "shard_size": 8})
    failed = wait_for(lambda: finished(job.pk), 120, "the job to finish", worker)
    assert failed.status == "failed"
    assert "shard 1" in failed.error and "injected failure" in failed.error
    assert [s["index"] for s in failed.result["shards_failed"]] == [1]
    assert Prediction.objects.filter(model_version_id=version_id).count() == 16  # shards 0 and 2 kept theirs

    faults()  # the cause is gone: the retry runs shard 1 again and succeeds
    again = retry(failed)
    done = wait_for(lambda: finished(again.pk), 120, "the retry to finish", worker)
    assert done.status == "succeeded", (done.error, done.log)
    assert done.result["shards_reused"] == 2
    assert Prediction.objects.filter(model_version_id=version_id).count() == len(movie_ids)


def _restart_redis() -> float:
    """Restart this machine's Redis (it keeps nothing on disk); returns the downtime in seconds."""
    started = time.monotonic()
    subprocess.run(["redis-cli", "-p", "6379", "shutdown", "nosave"], capture_output=True, timeout=10)
    wait_for(
        lambda: subprocess.run(["redis-cli", "-p", "6379", "ping"], capture_output=True).returncode != 0,
        10,
        "redis to stop",
        interval=0.05,
    )
    subprocess.run(
        [
            "redis-server",
            "--daemonize",
            "yes",
            "--bind",
            "127.0.0.1",
            "-::1",
            "--port",
            "6379",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            "/var/lib/redis",
            "--logfile",
            "/var/log/redis/ci.log",
        ],
        check=True,
        timeout=10,
    )
    wait_for(
        lambda: subprocess.run(["redis-cli", "-p", "6379", "ping"], capture_output=True).stdout.strip() == b"PONG",
        10,
        "redis to come back",
        interval=0.05,
    )
    return time.monotonic() - started


@pytest.mark.skipif(not shutil.which("redis-server"), reason="needs this machine's redis-server to restart it")
@pytest.mark.restarts_redis  # other test processes keep off Redis meanwhile (tests/conftest.py)
def test_redis_restarted_while_jobs_are_queued(start_worker, csv_folder):
    folder = str(csv_folder(5))
    # The sweep runs every 2 s in the worker and treats messages missing for 3 s as lost.
    worker = start_worker(GENREWEB_REQUEUE_INTERVAL_S="2", GENREWEB_REQUEUE_GRACE_S="3")
    worker.pause()  # jobs stay queued in Redis while the worker is frozen
    try:
        before = [enqueue("import", {"source": "csv", "path": folder}) for _ in range(3)]
        # The frozen worker's pending BRPOP may already have taken one message off Redis (it
        # sits in that socket); the others wait in Redis.
        held = broker_message_ids()
        assert held is not None, "the Redis broker must be inspectable"
        in_redis = [job for job in before if job.celery_task_id in held]
        assert len(in_redis) >= 2
        downtime = _restart_redis()
        assert downtime < 10
        # Redis kept nothing: the queued messages are really gone.
        held = broker_message_ids()
        assert held is not None, "the Redis broker must be inspectable after its restart"
        assert not {job.celery_task_id for job in before} & held
    finally:
        worker.resume()
    after = enqueue("import", {"source": "csv", "path": folder})
    for job in [*before, after]:
        done = wait_for(lambda job=job: finished(job.pk), 120, f"job #{job.pk} to run after the restart", worker)
        assert done.status == "succeeded", (done.error, done.log, worker.read_log())
    for job in in_redis:  # their messages died with Redis; the sweep sent them again
        assert any("re-sent by the stale-job sweep" in line for line in Job.objects.get(pk=job.pk).log)
    assert Movie.objects.count() == 5


def test_two_identical_imports_at_once_leave_each_movie_once(tmp_path, csv_folder):
    folder = str(csv_folder(30))
    worker = WorkerProcess(tmp_path / "w2", use_redis=True, concurrency=2)
    (tmp_path / "w2").mkdir()
    worker.start(timeout=90)
    try:
        jobs = [enqueue("import", {"source": "csv", "path": folder}) for _ in range(2)]
        results = [wait_for(lambda j=job: finished(j.pk), 120, "both imports", worker) for job in jobs]
    finally:
        worker.stop()
    # The advisory lock serialises them: both succeed, the second finds everything there.
    for job in results:
        assert job.status == "succeeded", (job.status, job.error, job.log)
    assert Movie.objects.count() == 30
    assert Movie.objects.values("source_id").distinct().count() == 30
    assert Poster.objects.count() == 30
    assert MovieGenre.objects.count() == MovieGenre.objects.values("movie", "genre").distinct().count()
    created = sorted(job.result.get("created", 0) for job in results)
    assert created == [0, 30]  # one import created them all, the other found them there
    assert sorted(job.result.get("unchanged", 0) for job in results) == [0, 30]
