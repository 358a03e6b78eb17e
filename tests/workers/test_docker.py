"""docker/: the compose file's structure and the image's basics (no Docker engine needed)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest
import yaml
from django.conf import settings

from tests.celery_worker import ROOT
from workers.kinds import task_routes
from workers.queues import QUEUES

DOCKER = ROOT / "docker"


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())  # resolves the x-app anchors/merges


def _command(service: dict) -> str:
    command = service["command"]
    return command if isinstance(command, str) else " ".join(command)


def test_compose_has_every_service_with_health_checks(compose):
    services = compose["services"]
    assert {"postgres", "redis", "minio", "minio-init", "migrate", "web", "worker-cpu", "worker-gpu"} <= set(services)
    for name in ("postgres", "redis", "minio", "web", "worker-cpu", "worker-gpu"):
        assert services[name]["healthcheck"]["test"], name
    for name in ("web", "worker-cpu", "worker-gpu"):
        deps = services[name]["depends_on"]
        assert deps["postgres"]["condition"] == deps["redis"]["condition"] == "service_healthy"
        assert deps["migrate"]["condition"] == "service_completed_successfully"
        env = services[name]["environment"]
        assert env["CELERY_BROKER_URL"].startswith("redis://redis:")
        assert env["DATABASE_URL"].startswith("postgres://") and env["AWS_S3_ENDPOINT_URL"] == "http://minio:9000"
        assert env["GENREWEB_PRODUCTION"] == "1" and "${SECRET_KEY:?" in env["SECRET_KEY"]


def test_web_runs_gunicorn_and_workers_take_their_queues(compose):
    services = compose["services"]
    assert _command(services["web"]).startswith("gunicorn genreweb.wsgi:application")
    cpu, gpu = _command(services["worker-cpu"]), _command(services["worker-gpu"])
    assert "-Q ${GENREWEB_CPU_QUEUES:-default}" in cpu and "--prefetch-multiplier 1" in cpu
    assert re.search(r"-Q gpu --concurrency 1 --pool solo", gpu)
    devices = services["worker-gpu"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    assert services["worker-gpu"]["build"]["args"]["TORCH_INDEX_URL"].startswith("https://pypi.org")


def consumed_queues(services: dict) -> dict[str, set[str]]:
    """{service: queues its ``celery worker -Q`` consumes}, a ``${VAR:-default}`` read as its default."""
    out = {}
    for name, service in services.items():
        command = _command(service) if "command" in service else ""
        if not re.search(r"\bcelery\b.*\bworker\b", command):
            continue
        match = re.search(r"(?:-Q|--queues)[ =](\S+)", command)
        value = re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", match.group(1)) if match else "celery"
        out[name] = set(value.split(","))
    return out


def test_every_queue_is_consumed_by_a_worker_service(compose):
    workers = consumed_queues(compose["services"])
    assert workers, "no celery worker service in compose.yaml"
    consumed = set().union(*workers.values())
    assert set(QUEUES) <= consumed, f"queues no worker service takes: {set(QUEUES) - consumed}"
    assert {route["queue"] for route in task_routes().values()} <= set(QUEUES)


def test_every_app_is_copied_into_the_image():
    dockerfile = (DOCKER / "Dockerfile").read_text()
    copied = set(re.findall(r"^COPY (\S+) \./", dockerfile, re.MULTILINE))
    apps = [app for app in settings.INSTALLED_APPS if (ROOT / app / "apps.py").exists()]
    assert apps and not set(apps) - copied, f"INSTALLED_APPS the image lacks: {sorted(set(apps) - copied)}"


def test_dockerfile_is_slim_non_root_with_static_files_collected():
    dockerfile = (DOCKER / "Dockerfile").read_text()
    assert dockerfile.startswith("#") and "FROM python:3.11-slim" in dockerfile
    users = re.findall(r"^USER (\S+)", dockerfile, re.MULTILINE)
    assert users and users[-1] not in ("root", "0")
    assert 'pip install -c requirements-constraints.txt ".[s3]"' in dockerfile
    assert "collectstatic --noinput" in dockerfile and "HEALTHCHECK" in dockerfile
    for copied in re.findall(r"^COPY (\S+)", dockerfile, re.MULTILINE):
        assert (ROOT / copied).exists(), f"Dockerfile copies {copied}, which is not in the repository"


def _compose_cli() -> list[str] | None:
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


@pytest.mark.skipif(_compose_cli() is None, reason="no docker compose client installed")
def test_docker_compose_config_validates():
    env = {**os.environ, "SECRET_KEY": "a-long-random-secret-key-for-the-config-check-only"}
    result = subprocess.run(
        [*_compose_cli(), "-f", str(DOCKER / "compose.yaml"), "config", "--quiet"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    missing = subprocess.run(
        [*_compose_cli(), "-f", str(DOCKER / "compose.yaml"), "config", "--quiet"],
        capture_output=True,
        text=True,
        env={**env, "SECRET_KEY": ""},
        timeout=60,
    )
    assert missing.returncode != 0 and "SECRET_KEY" in missing.stderr
