"""One entry per import source: its kind, label, parameters (and their checks) and command.

Everything that lists import sources is derived from here: the kinds ``run_import`` accepts,
the ``source`` of an import job and its parameter validation (workers.jobs), the queue-job
form's choices and the parameters it sends (workers.views), the values ``Movie.source`` and
``ImportRun.kind`` may hold, and the ``import_<kind>`` / ``import_movies <kind>`` commands.

A new source is one module with a ``Source`` subclass decorated with ``@register(...)``,
imported from ``catalog/importers/__init__.py``.

Paths (``path``, ``posters``) must lie under settings.GENREWEB_IMPORT_ROOTS, checked after
resolving symlinks and "..": an import asked for through the web UI, the API or a job can
never read /etc/shadow or a private key. Management commands run by an operator on the shell
skip that check (the operator can read those files anyway).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any

from django.conf import settings

from ..models import MANUAL_SOURCE
from .records import ImporterError, Source

# Every kind understands these (catalog.importers.run): at most ``limit`` movies;
# allow_new_genres (true: create genre names outside the vocabulary of catalog.genres, at most
# settings.GENREWEB_MAX_NEW_GENRES per import; default false).
COMMON_PARAMS = frozenset({"limit", "allow_new_genres"})
# Params that name a file or folder on the machine running the import.
PATH_PARAMS = ("path", "posters")
# The one Movie.source that is not an importer: movies entered by hand (the admin, seed data).
MANUAL_LABEL = "Entered by hand"


@dataclass(frozen=True)
class Argument:
    """One command-line option of an import command; its ``dest`` is the import parameter."""

    flags: tuple[str, ...]
    options: dict[str, Any] = field(default_factory=dict)
    group: str = ""  # arguments sharing a group are mutually exclusive
    form_type: str = ""  # the job form's field type (base.params.TYPES) when not text or a flag

    @property
    def dest(self) -> str:
        return self.options.get("dest") or self.flags[0].lstrip("-").replace("-", "_")


def argument(*flags: str, group: str = "", form_type: str = "", **options: Any) -> Argument:
    return Argument(flags, options, group, form_type)


@dataclass(frozen=True)
class Importer:
    kind: str  # stored in Movie.source and ImportRun.kind (at most 16 characters)
    label: str  # for forms, summaries and the movie page
    source: type[Source]
    params: frozenset[str]  # the source's own parameters; COMMON_PARAMS are added
    # Extra checks of the parameter values: {param name: message} for what is wrong.
    check: Callable[[dict], dict[str, str]] | None = None
    help: str = ""  # the command's help text
    arguments: tuple[Argument, ...] = ()

    @property
    def all_params(self) -> frozenset[str]:
        return self.params | COMMON_PARAMS

    @property
    def needs_path(self) -> bool:
        return "path" in self.params


_REGISTRY: dict[str, Importer] = {}


def register(
    kind: str,
    label: str,
    *,
    params: set[str] | frozenset[str],
    check: Callable[[dict], dict[str, str]] | None = None,
    help: str = "",  # noqa: A002 - the command's help, as Django calls it
    arguments: tuple[Argument, ...] | list[Argument] = (),
) -> Callable[[type[Source]], type[Source]]:
    """Class decorator: register ``cls`` as the source of ``kind`` (and set ``cls.kind``)."""
    if not kind or len(kind) > 16 or kind == MANUAL_SOURCE:
        raise ValueError(f"import kind {kind!r} must be 1-16 characters and not {MANUAL_SOURCE!r}")

    def decorate(cls: type[Source]) -> type[Source]:
        if kind in _REGISTRY and _REGISTRY[kind].source is not cls:
            raise ValueError(f"import kind {kind!r} is already registered by {_REGISTRY[kind].source.__name__}")
        cls.kind = kind
        _REGISTRY[kind] = Importer(kind, label, cls, frozenset(params), check, help, tuple(arguments))
        return cls

    return decorate


def unregister(kind: str) -> None:
    _REGISTRY.pop(kind, None)


def importers() -> list[Importer]:
    """The registered sources, by kind."""
    return [_REGISTRY[kind] for kind in sorted(_REGISTRY)]


def get(kind: str) -> Importer:
    try:
        return _REGISTRY[kind]
    except (KeyError, TypeError):
        raise ImporterError(f"unknown import kind {kind!r}; choose one of {', '.join(sorted(_REGISTRY))}") from None


def choices() -> list[tuple[str, str]]:
    """(kind, label) of every source, for forms."""
    return [(entry.kind, entry.label) for entry in importers()]


def source_label(kind: str) -> str:
    """The label of a Movie.source / ImportRun.kind value (the value itself when unknown)."""
    if kind == MANUAL_SOURCE:
        return MANUAL_LABEL
    entry = _REGISTRY.get(kind)
    return entry.label if entry else kind


def is_movie_source(kind: str) -> bool:
    return kind == MANUAL_SOURCE or kind in _REGISTRY


# --- parameters ------------------------------------------------------------------------------


def devset_dir() -> Path | None:
    """The development set beside the project (settings.GENREWEB_DEVSET_DIR), if it is there:
    a folder with a movies.csv. None otherwise."""
    folder = getattr(settings, "GENREWEB_DEVSET_DIR", None)
    if not folder:
        return None
    folder = Path(folder).expanduser().resolve()
    return folder if (folder / "movies.csv").is_file() else None


def import_roots() -> list[Path]:
    """settings.GENREWEB_IMPORT_ROOTS, plus the devset folder when it exists (so its one-click
    import works without the operator setting the roots)."""
    roots = [Path(root).resolve() for root in settings.GENREWEB_IMPORT_ROOTS]
    devset = devset_dir()
    if devset is not None and devset not in roots:
        roots.append(devset)
    return roots


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


def param_errors(kind: str, params: dict, *, check_paths: bool = True, also: frozenset[str] = frozenset()) -> dict:
    """What is wrong with these import params, by param name ({} when nothing).

    Normalises ``params`` in place: paths become their resolved form (``check_paths``: they
    must lie under the import roots and exist; off for an operator's command), a whole-number
    ``limit`` given as text becomes a number. ``also``: names the caller carries for itself
    (a job's ``source``). Used by run_import and by job validation (workers.jobs)."""
    try:
        entry = get(kind)
    except ImporterError as exc:
        return {"source": str(exc)}
    known = entry.all_params
    errors: dict[str, str] = {}
    for name in sorted(set(params) - known - also):
        hint = "; the TMDB API address is the TMDB_API_BASE setting" if name == "base_url" else ""
        errors[name] = f"unknown {kind} import parameter {name}{hint}; known: {', '.join(sorted(known))}"
    if check_paths and entry.needs_path and not params.get("path"):
        errors["path"] = f"a {kind} import needs the path of its file or folder"
    for name in PATH_PARAMS:
        if not check_paths or name in errors or name not in known or params.get(name) in (None, ""):
            continue
        value = str(params[name]) if isinstance(params[name], PurePath) else params[name]
        try:
            params[name] = allowed_import_path(value, name)
        except ImporterError as exc:
            errors[name] = str(exc)
    limit = params.get("limit")
    if isinstance(limit, str) and limit.strip().isdigit():
        limit = params["limit"] = int(limit)
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        errors["limit"] = f"limit must be a positive whole number, not {limit!r}"
    if not isinstance(params.get("allow_new_genres", False), bool):
        errors["allow_new_genres"] = f"allow_new_genres must be true or false, not {params['allow_new_genres']!r}"
    if entry.check is not None:
        errors.update({name: message for name, message in entry.check(params).items() if name not in errors})
    return errors


def job_param_errors(params: dict, carried: Iterable[str] = ()) -> dict[str, str]:
    """Errors of an import job's params: ``source`` names the kind, the rest are its params.
    ``carried``: names the job keeps for itself and strips before importing (test hooks)."""
    source = params.get("source")
    if source not in _REGISTRY:
        return {"source": f"Must be one of {', '.join(sorted(_REGISTRY))}; got {source!r}."}
    return param_errors(source, params, also=frozenset({"source", *carried}))


# --- the import job's parameters as a schema (base.params): what the job form is built from -------


def _form_param(dest: str, arguments: list[tuple[str, Argument]]):
    """One form field for a parameter several sources may take (``path``: csv, kaggle, mmimdb)."""
    from base.params import Param
    from base.runs import SECRET_PARAMS

    sources = tuple(kind for kind, _ in arguments)
    first = arguments[0][1]
    helps = [(kind, arg.options.get("help", "")) for kind, arg in arguments]
    if len({text for _, text in helps}) == 1:
        help_text = helps[0][1]
    else:
        help_text = "; ".join(f"{_REGISTRY[kind].label}: {text}" for kind, text in helps if text)
    action = first.options.get("action")
    if action in ("store_true", "store_false"):
        kind, default = "bool", action == "store_false"  # --no-details: the parameter is true by default
        if action == "store_false" and help_text:
            help_text = f"Untick to {help_text}"  # the flag's help says what turning it off does
    else:
        kind = first.form_type or ("secret" if dest in SECRET_PARAMS else "text")
        default = first.options.get("default")
    return Param(dest, kind, help=help_text, default=default, when=("source", sources))


def job_params() -> list:
    """``source``, each source's command options, then ``limit`` and ``allow_new_genres``."""
    from base.params import Param

    by_dest: dict[str, list[tuple[str, Argument]]] = {}
    for entry in importers():
        for arg in entry.arguments:
            by_dest.setdefault(arg.dest, []).append((entry.kind, arg))
    return [
        Param("source", "choice", label="import source", choices=choices, required=True),
        *(_form_param(dest, arguments) for dest, arguments in by_dest.items()),
        Param("limit", "int", label="at most this many movies", minimum=1, help="Empty: every movie."),
        Param(
            "allow_new_genres",
            "bool",
            default=False,
            help="Create genres outside the controlled vocabulary (at most GENREWEB_MAX_NEW_GENRES); "
            "otherwise unknown names are reported on their row.",
        ),
    ]


def _job_check(params: dict, errors: dict) -> None:
    errors.update(job_param_errors(params))


def job_param_schema():
    """The import job's ParamSchema: fields from the registry, checked by ``job_param_errors``
    (which also refuses what the chosen source does not take)."""
    from base.params import ParamSchema

    return ParamSchema(job_params, check=_job_check, strict=False)
