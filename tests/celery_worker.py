"""Start a real Celery worker process for integration tests.

The worker gets its own data folder and the same broker as this test process (on Redis,
the per-run database number chosen in conftest). It talks to the same database the test
uses (the pytest-django test database on Postgres).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent


def database_url_for_worker() -> str | None:
    db = settings.DATABASES["default"]
    if db["ENGINE"] != "django.db.backends.postgresql":
        return None
    user = db.get("USER") or "postgres"
    host = db.get("HOST") or "127.0.0.1"
    port = db.get("PORT") or 5432
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return f"postgres://{user}{password}@{host}:{port}/{connection.settings_dict['NAME']}"


class WorkerProcess:
    def __init__(
        self,
        data_dir: Path,
        use_redis: bool,
        queues: str = "default,gpu",
        concurrency: int = 1,
        pool: str = "prefork",
        extra_env: dict | None = None,
        include: str | None = None,
    ):
        self.data_dir = data_dir
        self.use_redis = use_redis
        self.queues = queues
        self.concurrency = concurrency
        self.pool = pool
        self.extra_env = extra_env or {}
        self.include = include  # extra task modules for the worker to load, e.g. "tests.worker_probes"
        self.proc: subprocess.Popen | None = None
        self.log_path = data_dir / "worker.log"
        self.name = f"test-{os.getpid()}-{id(self)}"  # the job log says "started on <name>@host"

    def env(self) -> dict:
        env = {k: v for k, v in os.environ.items() if k not in {"CELERY_BROKER_URL", "DATABASE_URL"}}
        env["GENREWEB_DATA_DIR"] = str(self.data_dir)
        env["MEDIA_ROOT"] = str(settings.MEDIA_ROOT)
        if self.use_redis:
            env["CELERY_BROKER_URL"] = settings.CELERY_BROKER_URL
        db_url = database_url_for_worker()
        if db_url:
            env["DATABASE_URL"] = db_url
        env.update(self.extra_env)
        return env

    def start(self, timeout: float = 60) -> WorkerProcess:
        cmd = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "genreweb",
            "worker",
            "-Q",
            self.queues,
            "--concurrency",
            str(self.concurrency),
            "--pool",
            self.pool,
            "--loglevel",
            "INFO",
            "--without-gossip",
            "--without-mingle",
            "-n",
            f"{self.name}@%h",
        ]
        if self.include:
            cmd += ["--include", self.include]
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            cmd, cwd=ROOT, env=self.env(), stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float) -> None:
        from workers.tasks import ping

        deadline = time.monotonic() + timeout
        result = ping.apply_async(args=["ready"], queue=self.queues.split(",")[0])
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited early:\n{self.read_log()}")
            if result.ready():
                assert result.get(timeout=1) == "ready"
                return
            time.sleep(0.2)
        raise RuntimeError(f"worker not ready after {timeout}s:\n{self.read_log()}")

    def read_log(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:] if self.log_path.exists() else ""

    def kill(self, sig=signal.SIGKILL) -> None:
        """Kill the whole worker process group (main process and its pool children)."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            self.proc.wait(timeout=30)

    def pause(self) -> None:
        """Freeze the worker (SIGSTOP to its process group): it holds its connections but reads nothing."""
        os.killpg(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.killpg(self.proc.pid, signal.SIGCONT)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            os.killpg(self.proc.pid, signal.SIGCONT)  # a paused worker must wake up to exit
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()
        if getattr(self, "log", None):
            self.log.close()
