"""Catalog importers: TMDB API, Kaggle "The Movies Dataset", MM-IMDb, plain CSV + posters.

The one entry point for jobs, commands and tests is ``run_import(kind, params, progress=...)``.
Params are JSON-serialisable (paths, credentials, date range, poster size, limit); secrets
are masked in the stored ImportRun.params. Which kinds exist and which params each takes is
``catalog.importers.registry`` (one entry per source, registered by its module below).

Remote URLs come from settings (TMDB_API_BASE), never from params: a job must not send the
server's TMDB key to a host of its choosing.

Modules: ``records`` (what a source yields), ``parsing`` (row validation helpers), ``writer``
(upserts movies, labels, posters), ``run`` (the run loop and ImportRun bookkeeping).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import PurePath

from ..models import ImportRun

# The built-in sources register themselves (catalog.importers.registry.register).
from . import kaggle, mmimdb, plain_csv, registry, tmdb  # noqa: F401
from .records import ImporterError, Progress
from .run import execute_import, summary

__all__ = ["ImporterError", "registry", "run_import", "summary"]


def run_import(
    kind: str,
    params: dict,
    *,
    progress: Progress | None = None,
    any_path: bool = False,
    on_run: Callable[[ImportRun], None] | None = None,
) -> ImportRun:
    """Import movies; return the finished ImportRun (created/updated/unchanged/skipped counts).

    kind: a registered kind ("tmdb", "kaggle", "mmimdb", "csv", ...). Paths must lie under the
    import roots unless ``any_path`` (management commands run by an operator). Bad rows are
    skipped and listed in ``run.skipped_rows``; an import that cannot run at all (missing
    file, refused API key) raises ``ImporterError`` whose ``.run`` is the ImportRun marked
    failed. Whatever ``progress`` raises (a cancelled job) propagates after the run is marked
    failed; every batch committed before that is complete.
    """
    entry = registry.get(kind)
    if not isinstance(params, dict):
        raise ImporterError("import params must be a dict")
    # Paths from Python callers are fine too; the stored params must stay JSON.
    params = {k: str(v) if isinstance(v, PurePath) else v for k, v in params.items()}
    errors = registry.param_errors(kind, params, check_paths=not any_path)
    if errors:
        raise ImporterError("; ".join(errors.values()))
    return execute_import(kind, params, entry.source, progress=progress, on_run=on_run)
