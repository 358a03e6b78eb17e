"""The platform as one runs it on a single machine: the embedded SQLite default, and the
project's own error pages with DEBUG off."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

from tests.celery_worker import ROOT

EMBEDDED_ENV_DROP = {"CELERY_BROKER_URL", "DATABASE_URL", "CELERY_RESULT_BACKEND", "GENREWEB_TEST_DB_NAME",
                     "GENREWEB_SQLITE_JOURNAL_MODE"}

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


def test_embedded_sqlite_uses_wal_and_a_busy_timeout(tmp_path):
    """The default database (no DATABASE_URL), opened as the web server and worker open it."""
    env = {k: v for k, v in os.environ.items() if k not in EMBEDDED_ENV_DROP}
    env["GENREWEB_DATA_DIR"] = str(tmp_path)
    run = subprocess.run([sys.executable, "-c", SQLITE_PRAGMAS], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    pragmas = json.loads(run.stdout.strip().splitlines()[-1])
    assert pragmas["vendor"] == "sqlite" and pragmas["name"].startswith(str(tmp_path))
    assert pragmas["journal_mode"] == "wal"
    assert pragmas["busy_timeout"] == 30_000  # ms: a request waits for the worker's write instead of failing
    assert pragmas["synchronous"] == 1  # NORMAL: safe with WAL, no fsync per commit
