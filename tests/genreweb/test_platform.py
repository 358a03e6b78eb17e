"""The platform as one runs it on a single machine: the embedded SQLite default, and the
project's own error pages with DEBUG off."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request

import pytest

from tests.celery_worker import ROOT

EMBEDDED_ENV_DROP = {
    "CELERY_BROKER_URL",
    "DATABASE_URL",
    "CELERY_RESULT_BACKEND",
    "GENREWEB_TEST_DB_NAME",
    "GENREWEB_SQLITE_JOURNAL_MODE",
}

SQLITE_PRAGMAS = textwrap.dedent(
    """
    import json, os
    import django
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "genreweb.settings")
    django.setup()
    from django.db import connection
    with connection.cursor() as cursor:
        pragmas = {name: cursor.execute(f"PRAGMA {name}").fetchone()[0]
                   for name in ("journal_mode", "busy_timeout", "synchronous")}
    print(json.dumps({"vendor": connection.vendor, "name": str(connection.settings_dict["NAME"]), **pragmas}))
    """
)


@pytest.mark.slow  # a fresh Django process
def test_embedded_sqlite_uses_wal_and_a_busy_timeout(tmp_path):
    """The default database (no DATABASE_URL), opened as the web server and worker open it."""
    env = {k: v for k, v in os.environ.items() if k not in EMBEDDED_ENV_DROP}
    env["GENREWEB_DATA_DIR"] = str(tmp_path)
    run = subprocess.run(
        [sys.executable, "-c", SQLITE_PRAGMAS],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    pragmas = json.loads(run.stdout.strip().splitlines()[-1])
    assert pragmas["vendor"] == "sqlite" and pragmas["name"].startswith(str(tmp_path))
    assert pragmas["journal_mode"] == "wal"
    assert pragmas["busy_timeout"] == 30_000  # ms: a request waits for the worker's write instead of failing
    assert pragmas["synchronous"] == 1  # NORMAL: safe with WAL, no fsync per commit


def test_unknown_url_shows_the_projects_404_page_not_a_route_list(labeler_client, settings):
    settings.DEBUG = False
    response = labeler_client.get("/no-such-page/<b>x</b>")
    assert response.status_code == 404
    html = response.content.decode()
    assert "Page not found" in html and 'class="brand"' in html  # the site's own layout
    assert "/no-such-page/&lt;b&gt;x&lt;/b&gt;" in html  # the path, escaped
    assert "URLconf" not in html and "api/schema/" not in html  # no debug route list


def test_server_error_page_is_the_projects_own(rf):
    from django.views.defaults import server_error

    response = server_error(rf.get("/"))
    assert response.status_code == 500
    html = response.content.decode()
    assert "Something went wrong" in html and 'class="brand"' in html


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_gunicorn_with_debug_off_serves_pages_static_files_and_the_404(tmp_path):
    """The server part of scripts/run-platform: migrate, collectstatic, gunicorn, DEBUG off."""
    env = {k: v for k, v in os.environ.items() if k not in EMBEDDED_ENV_DROP | {"DEBUG"}}
    env.update(GENREWEB_DATA_DIR=str(tmp_path), DEBUG="0")
    for command in (["migrate", "--noinput"], ["collectstatic", "--noinput"]):
        done = subprocess.run(
            [sys.executable, "manage.py", *command],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr[-3000:]
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "genreweb.wsgi:application",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "1",
            "--error-logfile",
            str(tmp_path / "web.log"),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                assert urllib.request.urlopen(f"{base}/healthz", timeout=10).status == 200
                break
            except OSError:  # not listening yet, or the first request still loading Django
                assert time.monotonic() < deadline and server.poll() is None, (tmp_path / "web.log").read_text()
                time.sleep(0.5)
        css = urllib.request.urlopen(f"{base}/static/css/genreweb.css", timeout=10)
        assert css.status == 200 and "text/css" in css.headers["Content-Type"]
        swagger = urllib.request.urlopen(
            f"{base}/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js", timeout=10
        )
        assert swagger.status == 200
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(f"{base}/no-such-page/", timeout=10)
        assert missing.value.code == 404
        html = missing.value.read().decode()
        assert "Page not found" in html and "URLconf" not in html
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
