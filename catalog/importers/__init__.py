"""Catalog importers: TMDB API, Kaggle "The Movies Dataset", MM-IMDb, plain CSV + posters.

The one entry point for jobs, commands and tests is ``run_import(kind, params, progress=...)``.
Params are JSON-serialisable (paths, credentials, date range, poster size, limit); secrets
are masked in the stored ImportRun.params.

Paths (``path``, ``posters``) must lie under settings.GENREWEB_IMPORT_ROOTS, checked after
resolving symlinks and "..": an import asked for through the web UI, the API or a job can
never read /etc/shadow or a private key. Management commands run by an operator on the shell
pass ``any_path=True`` (the operator can read those files anyway). Remote URLs come from
settings (TMDB_API_BASE), never from params: a job must not send the server's TMDB key to a
host of its choosing.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path, PurePath

from django.conf import settings

from ..models import ImportRun
from .base import ImporterError, Progress, Source, execute_import, summary

__all__ = ["IMPORT_KINDS", "IMPORT_PARAMS", "ImporterError", "import_param_errors", "run_import", "summary"]


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
# Every kind: allow_new_genres (true: create genre names outside the vocabulary of
# catalog.genres, at most settings.GENREWEB_MAX_NEW_GENRES per import; default false).
IMPORT_PARAMS: dict[str, set[str]] = {
    "csv": {"path", "posters", "encoding", "limit", "allow_new_genres"},
    "kaggle": {"path", "posters", "poster_url_base", "encoding", "limit", "backoff_base", "allow_new_genres"},
    "mmimdb": {"path", "limit", "allow_new_genres"},
    "tmdb": {
        "allow_new_genres",
        "api_key",
        "bearer_token",
        "date_from",
        "date_to",
        "poster_size",
        "language",
        "details",
        "limit",
        "max_pages",
        "max_retries",
        "backoff_base",
        "timeout",
    },
}


# Params that name a file or folder on the machine running the import.
PATH_PARAMS = ("path", "posters")
# Params a job carries for itself, next to the importer's own (workers.jobs).
JOB_PARAMS = {"source"}


def import_roots() -> list[Path]:
    return [Path(root).resolve() for root in settings.GENREWEB_IMPORT_ROOTS]


def allowed_import_path(value: object, name: str = "path") -> str:
    """``value`` resolved (symlinks, "..", "~"), if it lies under an import root; else ImporterError.

    The error never says whether the file exists outside the roots (no probing the server)."""
    if not isinstance(value, str) or not value.strip() or "\x00" in value:
        raise ImporterError(f"{name} must be the path of a file or folder")
    resolved = Path(value.strip()).expanduser().resolve()
    roots = import_roots()
    if not any(resolved == root or resolved.is_relative_to(root) for root in roots):
        raise ImporterError(
            f"{name} {value.strip()} is outside the import folders ({':'.join(map(str, roots))}); "
            "put the files there or add their folder to GENREWEB_IMPORT_ROOTS"
        )
    if not resolved.exists():
        raise ImporterError(f"{name} {resolved} does not exist")
    return str(resolved)


def import_param_errors(kind: str, params: dict) -> dict[str, str]:
    """What is wrong with these import params, by param name ({} when nothing). Paths are
    replaced in ``params`` by their resolved form. Used by run_import and by job validation."""
    if kind not in IMPORT_KINDS:
        return {"source": f"unknown import kind {kind!r}; choose one of {', '.join(sorted(IMPORT_KINDS))}"}
    errors: dict[str, str] = {}
    for name in sorted(set(params) - IMPORT_PARAMS[kind] - JOB_PARAMS):
        hint = "; the TMDB API address is the TMDB_API_BASE setting" if name == "base_url" else ""
        errors[name] = f"unknown {kind} import parameter {name}{hint}; known: {', '.join(sorted(IMPORT_PARAMS[kind]))}"
    if kind != "tmdb" and not params.get("path"):
        errors["path"] = f"a {kind} import needs the path of its file or folder"
    for name in PATH_PARAMS:
        if name in errors or params.get(name) in (None, ""):
            continue
        value = str(params[name]) if isinstance(params[name], PurePath) else params[name]
        try:
            params[name] = allowed_import_path(value, name)
        except ImporterError as exc:
            errors[name] = str(exc)
    return errors


def run_import(
    kind: str,
    params: dict,
    *,
    progress: Progress | None = None,
    any_path: bool = False,
    on_run: Callable[[ImportRun], None] | None = None,
) -> ImportRun:
    """Import movies; return the finished ImportRun (created/updated/unchanged/skipped counts).

    kind: "tmdb", "kaggle", "mmimdb" or "csv". Paths must lie under the import roots unless
    ``any_path`` (management commands run by an operator). Bad rows are skipped and listed in
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
    if not any_path:
        errors = import_param_errors(kind, params)
        if errors:
            raise ImporterError("; ".join(errors.values()))
    limit = params.get("limit")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ImporterError(f"limit must be a positive whole number, not {limit!r}")
    if not isinstance(params.get("allow_new_genres", False), bool):
        raise ImporterError(f"allow_new_genres must be true or false, not {params['allow_new_genres']!r}")
    return execute_import(kind, params, IMPORT_KINDS[kind], progress=progress, on_run=on_run)
