"""Shared fixtures and the service-marker rules.

Tests marked ``postgres``, ``redis``, ``worker`` or ``browser`` skip with a clear reason
when the service is not configured. With GENREWEB_REQUIRE_SERVICES=1 (set by .ci/run)
any such skip fails the run, so CI always exercises the real services.
"""

from __future__ import annotations

import os

import pytest
from django.conf import settings

# Fixtures every app's tests share: users per role, clients, the small ``world`` catalog with a
# promoted model (tests/fixtures.py); the headless Chromium ``page`` (tests/browser.py).
pytest_plugins = ["tests.fixtures", "tests.browser"]

REQUIRE_SERVICES = os.environ.get("GENREWEB_REQUIRE_SERVICES") == "1"

# Test runs that share one Redis server each get their own database number, so their
# workers never consume each other's messages. Runs before the Celery app reads settings.
if settings.CELERY_BROKER_URL.startswith("redis") and not os.environ.get("GENREWEB_TEST_KEEP_REDIS_DB"):
    _redis_db = 1 + os.getpid() % 15
    settings.CELERY_BROKER_URL = settings.CELERY_BROKER_URL.rsplit("/", 1)[0] + f"/{_redis_db}"
    settings.CELERY_RESULT_BACKEND = settings.CELERY_BROKER_URL
    # Celery lets these environment variables win over settings.
    os.environ["CELERY_BROKER_URL"] = os.environ["CELERY_RESULT_BACKEND"] = settings.CELERY_BROKER_URL
    # Two runs can still draw the same database number (or find a stale worker on it): a key
    # prefix per run keeps their queues apart. Worker processes inherit it from the environment.
    os.environ["GENREWEB_REDIS_KEY_PREFIX"] = f"genreweb-test-{os.getpid()}:"
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {
        **settings.CELERY_BROKER_TRANSPORT_OPTIONS,
        "global_keyprefix": os.environ["GENREWEB_REDIS_KEY_PREFIX"],
    }
    settings.CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS = settings.CELERY_BROKER_TRANSPORT_OPTIONS
# Throttle counters: one in-memory cache per test process (cleared before every test) unless a
# run asks for a real one; tests of the shared cache start their own server processes.
if not os.environ.get("GENREWEB_CACHE_URL"):
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
_service_skips: list[str] = []


def service_skip_reason(marker: str) -> str | None:
    if marker == "postgres" and settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
        return "needs PostgreSQL: set DATABASE_URL=postgres://..."
    if marker in {"redis", "worker"} and not settings.CELERY_BROKER_URL.startswith("redis"):
        return "needs Redis: set CELERY_BROKER_URL=redis://..."
    from tests.browser import chromium_executable  # a plugin module: imported once pytest loads it

    if marker == "browser" and not chromium_executable():
        return "needs Debian chromium (apt-get install chromium)"
    return None


# Tests that start a Chromium or a Celery worker process take seconds each: they are ``slow`` by
# definition, so the quick lane (-m "not slow") leaves them out without each test saying so.
SLOW_BY_NATURE = ("browser", "worker")


@pytest.hookimpl(tryfirst=True)  # before -m selects on the markers
def pytest_collection_modifyitems(config, items):
    for item in items:
        if any(item.get_closest_marker(name) for name in SLOW_BY_NATURE) and not item.get_closest_marker("slow"):
            item.add_marker(pytest.mark.slow)
        for marker in ("postgres", "redis", "worker", "browser"):
            if item.get_closest_marker(marker):
                reason = service_skip_reason(marker)
                if reason:
                    item.add_marker(pytest.mark.skip(reason=f"[service] {reason}"))
                    break


def pytest_runtest_logreport(report):
    if report.skipped and isinstance(report.longrepr, tuple) and "[service]" in str(report.longrepr[2]):
        _service_skips.append(report.nodeid)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if REQUIRE_SERVICES and _service_skips:
        terminalreporter.write_line(
            f"FAILED: GENREWEB_REQUIRE_SERVICES=1 but {len(_service_skips)} service test(s) skipped: "
            + ", ".join(_service_skips[:10]),
            red=True,
        )


def pytest_sessionfinish(session, exitstatus):
    if REQUIRE_SERVICES and _service_skips:
        session.exitstatus = 1


@pytest.fixture(autouse=True)
def _redis_restart_guard(request, tmp_path_factory):
    """A test marked ``restarts_redis`` restarts this machine's Redis server. Under pytest-xdist
    the other test processes must not use Redis meanwhile: every test holds a shared lock, that
    test an exclusive one (a file lock in the run's temp root, common to all its processes)."""
    if not os.environ.get("PYTEST_XDIST_WORKER") or not settings.CELERY_BROKER_URL.startswith("redis"):
        yield
        return
    import fcntl

    exclusive = request.node.get_closest_marker("restarts_redis") is not None
    with open(tmp_path_factory.getbasetemp().parent / "redis-restart.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@pytest.fixture(scope="session", autouse=True)
def _import_roots_include_tmp(tmp_path_factory):
    """Imports given through jobs/API may read pytest's temp folders (tests build their files
    there); worker processes started by tests inherit the same roots from the environment.
    Tests of the root check itself override settings.GENREWEB_IMPORT_ROOTS."""
    from pathlib import Path

    base = tmp_path_factory.getbasetemp().resolve()
    roots = [*settings.GENREWEB_IMPORT_ROOTS, base]
    settings.GENREWEB_IMPORT_ROOTS = roots
    os.environ["GENREWEB_IMPORT_ROOTS"] = ":".join(str(Path(r)) for r in roots)


@pytest.fixture(autouse=True)
def _fresh_cache():
    from django.core.cache import cache

    if settings.CACHES["default"]["BACKEND"].endswith("LocMemCache"):
        cache.clear()


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path):
    """Every test writes media to its own temp folder."""
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.MEDIA_ROOT.mkdir()
    return settings.MEDIA_ROOT
