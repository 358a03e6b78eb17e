"""Faults that tests inject into a real worker process (never loaded in production).

A worker started with ``DJANGO_SETTINGS_MODULE=tests.workers.worker_settings`` installs this
app; its ``ready()`` wraps two public service calls (``ml.services.inference.predict_movies``,
``catalog.importers.run_import``) so that a test can make them slow or fail, on
command, through a JSON file (``GENREWEB_TEST_FAULTS_FILE``) the test rewrites while the
worker runs (``set_faults``). Read at every call:

- ``shard_delay_s``: each batch-predict shard sleeps this long before it predicts;
- ``fail_movie_id``: a shard holding this movie raises ``RuntimeError("injected failure ...")``;
- ``import_progress_delay_s``: an import sleeps this long after each progress report.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from django.apps import AppConfig

FAULTS_FILE_ENV = "GENREWEB_TEST_FAULTS_FILE"


def set_faults(path: Path, **faults) -> None:
    """Replace the faults the workers reading ``path`` inject (atomically: a worker never reads half)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(faults))
    tmp.replace(path)


def current_faults() -> dict:
    path = os.environ.get(FAULTS_FILE_ENV)
    try:
        return json.loads(Path(path).read_text()) if path else {}
    except (OSError, ValueError):
        return {}


class FaultsConfig(AppConfig):
    name = "tests.workers.faults"
    label = "test_faults"

    def ready(self) -> None:
        import catalog.importers
        from ml.services import inference

        predictions = inference.predict_movies
        run_import = catalog.importers.run_import

        def faulty_predictions(model_version_id, movie_ids, **kwargs):
            faults = current_faults()
            if faults.get("shard_delay_s"):
                time.sleep(float(faults["shard_delay_s"]))
            if faults.get("fail_movie_id") in movie_ids:
                raise RuntimeError(f"injected failure (test fault: a shard with movie {faults['fail_movie_id']})")
            return predictions(model_version_id, movie_ids, **kwargs)

        def slow_import(source, params, *, progress=None, **kwargs):
            delay = float(current_faults().get("import_progress_delay_s") or 0)
            if delay and progress is not None:
                report = progress

                def progress(message, fraction):
                    report(message, fraction)
                    time.sleep(delay)  # a slow import, so its worker can be killed mid-way

            return run_import(source, params, progress=progress, **kwargs)

        inference.predict_movies = faulty_predictions  # the shard task looks it up at each call
        catalog.importers.run_import = slow_import
