"""The embedded default (SQLite file + filesystem broker, as ./scripts/run-platform runs it):
a real worker process runs a sharded batch-predict job end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from tests.celery_worker import ROOT

CLIENT = textwrap.dedent(
    """
    import json, os, time
    import django
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "genreweb.settings")
    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    assert settings.CELERY_BROKER_URL == "filesystem://", settings.CELERY_BROKER_URL
    call_command("migrate", verbosity=0)
    from tests.factories import build_tiny_model_version, make_movies
    from workers.jobs import enqueue
    from workers.models import Job
    movie_ids = make_movies(30)
    version_id = build_tiny_model_version()
    job = enqueue("predict", {"model_version_id": version_id, "shard_size": 7})
    deadline = time.monotonic() + 150
    while time.monotonic() < deadline:
        job.refresh_from_db()
        if job.is_finished:
            break
        time.sleep(0.3)
    from ml.models import Prediction
    print(json.dumps({"status": job.status, "error": job.error, "result": job.result, "log": job.log,
                      "predictions": Prediction.objects.filter(model_version_id=version_id).count()}))
    """
)


@pytest.mark.slow
def test_batch_predict_on_the_embedded_filesystem_broker_and_sqlite(tmp_path):
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"CELERY_BROKER_URL", "DATABASE_URL", "CELERY_RESULT_BACKEND", "GENREWEB_TEST_DB_NAME"}
    }
    env.update(GENREWEB_DATA_DIR=str(tmp_path), MEDIA_ROOT=str(tmp_path / "media"))
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "genreweb",
            "worker",
            "-Q",
            "default,gpu",
            "--concurrency",
            "2",
            "--without-gossip",
            "--without-mingle",
            "--loglevel",
            "INFO",
        ],
        cwd=ROOT,
        env=env,
        stdout=open(tmp_path / "worker.log", "wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        run = subprocess.run(
            [sys.executable, "-c", CLIENT], cwd=ROOT, env=env, capture_output=True, text=True, timeout=240
        )
        assert run.returncode == 0, run.stderr[-3000:] + (tmp_path / "worker.log").read_text()[-3000:]
        outcome = json.loads(run.stdout.strip().splitlines()[-1])
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    assert outcome["status"] == "succeeded", (outcome, (tmp_path / "worker.log").read_text()[-3000:])
    assert outcome["predictions"] == 30
    assert outcome["result"]["shards_total"] == 5 and outcome["result"]["predictions_written"] == 30
