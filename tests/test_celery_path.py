"""A real worker process consumes real messages, on the embedded broker and on Redis."""

import os
import subprocess
import sys
import textwrap

import pytest

from tests.celery_worker import ROOT, WorkerProcess
from workers.tasks import ping


@pytest.mark.slow
def test_embedded_filesystem_broker_reaches_a_real_worker(tmp_path):
    """The platform's default: no CELERY_BROKER_URL, a filesystem broker, a separate worker."""
    env = {
        k: v for k, v in os.environ.items() if k not in {"CELERY_BROKER_URL", "DATABASE_URL", "CELERY_RESULT_BACKEND"}
    }
    env["GENREWEB_DATA_DIR"] = str(tmp_path)
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "genreweb",
            "worker",
            "-Q",
            "default",
            "--concurrency",
            "1",
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
    client = textwrap.dedent(
        """
        import django, os
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "genreweb.settings")
        django.setup()
        from django.conf import settings
        assert settings.CELERY_BROKER_URL == "filesystem://", settings.CELERY_BROKER_URL
        from workers.tasks import ping
        print(ping.delay("through the filesystem").get(timeout=60))
        """
    )
    try:
        result = subprocess.run(
            [sys.executable, "-c", client], cwd=ROOT, env=env, capture_output=True, text=True, timeout=90
        )
        assert result.returncode == 0, result.stderr + (tmp_path / "worker.log").read_text()
        assert result.stdout.strip() == "through the filesystem"
    finally:
        worker.terminate()
        worker.wait(timeout=30)


@pytest.mark.redis
@pytest.mark.worker
def test_redis_broker_reaches_a_real_worker(tmp_path):
    worker = WorkerProcess(tmp_path, use_redis=True).start()
    try:
        assert ping.delay("over redis").get(timeout=30) == "over redis"
    finally:
        worker.stop()
