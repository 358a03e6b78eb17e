"""Catalog importers: TMDB API, Kaggle "The Movies Dataset", MM-IMDb, plain CSV + posters.

The one entry point for jobs, commands and tests is ``run_import(kind, params, progress=...)``.
Params are JSON-serialisable (paths, credentials, date range, poster size, limit); secrets
are masked in the stored ImportRun.params.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import PurePath

from ..models import ImportRun
from .base import ImporterError, Progress, Source, execute_import, summary

__all__ = ["IMPORT_KINDS", "IMPORT_PARAMS", "ImporterError", "run_import", "summary"]


def _csv(params: dict) -> Source:
    from .plain_csv import PlainCsvSource

    return PlainCsvSource(params)


def _kaggle(params: dict) -> Source:
    from .kaggle import KaggleSource

    return KaggleSource(params)


def _mmimdb(params: dict) -> Source:
    from .mmimdb import MmImdbSource

    return MmImdbSource(params)


def _tmdb(params: dict) -> Source:
    from .tmdb import TmdbSource

    return TmdbSource(params)


IMPORT_KINDS: dict[str, Callable[[dict], Source]] = {"csv": _csv, "kaggle": _kaggle, "mmimdb": _mmimdb, "tmdb": _tmdb}

# The params each kind understands; anything else is refused, so a misspelt option
# (e.g. "start_date" for "date_from") fails loudly instead of being ignored.
IMPORT_PARAMS: dict[str, set[str]] = {
    "csv": {"path", "posters", "encoding", "limit"},
    "kaggle": {"path", "posters", "poster_url_base", "encoding", "limit", "backoff_base"},
    "mmimdb": {"path", "limit"},
    "tmdb": {
        "api_key",
        "bearer_token",
        "date_from",
        "date_to",
        "poster_size",
        "language",
        "details",
        "limit",
        "base_url",
        "max_pages",
        "max_retries",
        "backoff_base",
        "timeout",
    },
}


def run_import(kind: str, params: dict, *, progress: Progress | None = None,
               on_run: Callable[[ImportRun], None] | None = None) -> ImportRun:
    """Import movies; return the finished ImportRun (created/updated/unchanged/skipped counts).

    kind: "tmdb", "kaggle", "mmimdb" or "csv". Bad rows are skipped and listed in
    ``run.skipped_rows``; an import that cannot run at all (missing file, refused API key)
    raises ``ImporterError`` whose ``.run`` is the ImportRun marked failed. Whatever
    ``progress`` raises (a cancelled job) propagates after the run is marked failed; every
    batch committed before that is complete.
    """
    if kind not in IMPORT_KINDS:
        raise ImporterError(f"unknown import kind {kind!r}; choose one of {', '.join(sorted(IMPORT_KINDS))}")
    if not isinstance(params, dict):
        raise ImporterError("import params must be a dict")
    # Paths from Python callers are fine too; the stored params must stay JSON.
    params = {k: str(v) if isinstance(v, PurePath) else v for k, v in params.items()}
    unknown = sorted(set(params) - IMPORT_PARAMS[kind])
    if unknown:
        raise ImporterError(
            f"unknown {kind} import parameter(s) {', '.join(unknown)}; known: {', '.join(sorted(IMPORT_PARAMS[kind]))}"
        )
    limit = params.get("limit")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ImporterError(f"limit must be a positive whole number, not {limit!r}")
    return execute_import(kind, params, IMPORT_KINDS[kind], progress=progress, on_run=on_run)
