"""The import commands, built from the registry: ``import_<kind>`` and ``import_movies <kind>``.

Each entry's ``arguments`` become the command's options (their ``dest`` is the import
parameter); run, print progress and summary are shared.
"""

from __future__ import annotations

import time

from django.core.management.base import BaseCommand, CommandError

from . import ImporterError, registry, run_import, summary

# Options of every import command that are not import parameters.
COMMAND_OPTIONS = ("limit", "allow_new_genres", "progress_every")


def add_source_arguments(parser, entry: registry.Importer) -> None:
    groups: dict[str, object] = {}
    for arg in entry.arguments:
        target = parser
        if arg.group:
            if arg.group not in groups:
                groups[arg.group] = parser.add_mutually_exclusive_group()
            target = groups[arg.group]
        target.add_argument(*arg.flags, **arg.options)
    add_common_arguments(parser)


def source_params(entry: registry.Importer, options: dict) -> dict:
    """The import params given on the command line (options left unset are left out)."""
    params = {}
    for action_dest in _dests(entry):
        value = options.get(action_dest)
        if value not in (None, ""):
            params[action_dest] = value
    return params


def _dests(entry: registry.Importer) -> list[str]:
    return [arg.dest for arg in entry.arguments]


def import_command(kind: str) -> type[BaseCommand]:
    """The management command of one registered source (an ``import_<kind>.py`` is this one line)."""
    entry = registry.get(kind)

    class Command(BaseCommand):
        help = entry.help or f"Import movies from {entry.label}."

        def add_arguments(self, parser):
            add_source_arguments(parser, entry)

        def handle(self, *args, **options):
            run_and_report(self, kind, source_params(entry, options), options)

    return Command


def add_common_arguments(parser) -> None:
    parser.add_argument("--limit", type=int, help="import at most this many movies")
    parser.add_argument(
        "--allow-new-genres",
        action="store_true",
        help="create genre names outside the TMDB vocabulary (catalog/genres.py), at most "
        "GENREWEB_MAX_NEW_GENRES per import; without it they are reported and left out",
    )
    parser.add_argument(
        "--progress-every", type=int, default=250, metavar="N", help="print a progress line every N rows (default 250)"
    )


def run_and_report(command: BaseCommand, kind: str, params: dict, options: dict) -> None:
    every = max(int(options.get("progress_every") or 250), 1)
    if options.get("limit"):
        params["limit"] = options["limit"]
    if options.get("allow_new_genres"):
        params["allow_new_genres"] = True
    started = time.monotonic()
    state = {"next_row": every}

    def progress(message: str, fraction: float) -> None:
        # Batches are ~100 rows; print when a batch crosses the next multiple of N.
        rows = _rows_in(message)
        if fraction >= 1.0 or rows is None or rows >= state["next_row"]:
            if rows is not None:
                state["next_row"] = (rows // every + 1) * every
            command.stdout.write(f"[{time.monotonic() - started:6.1f}s] {message}")

    try:
        # An operator on the shell may import from any path (no GENREWEB_IMPORT_ROOTS check):
        # they can read those files anyway. The roots guard what the web UI, API and jobs ask for.
        run = run_import(kind, params, progress=progress, any_path=True)
    except ImporterError as exc:
        raise CommandError(f"import failed: {exc}") from exc
    command.stdout.write(command.style.SUCCESS(summary(run)) + f" in {time.monotonic() - started:.1f}s")
    for warning in run.warnings:
        command.stdout.write(command.style.WARNING(f"warning: {warning}"))
    if run.skipped_rows:
        command.stdout.write(f"skipped rows ({run.skipped}):")
        for skip in run.skipped_rows[:50]:
            where = ", ".join(f"{k} {v}" for k, v in skip.items() if k not in ("row", "reason"))
            command.stdout.write(f"  row {skip['row']}{f' ({where})' if where else ''}: {skip['reason']}")
        if run.skipped > 50:
            command.stdout.write(f"  ... {run.skipped - 50} more in ImportRun #{run.pk}")


def _rows_in(message: str) -> int | None:
    # Messages read "<kind> import #<id>: <n> rows, ..."
    try:
        return int(message.split(": ", 1)[1].split(" rows", 1)[0])
    except (IndexError, ValueError):
        return None
