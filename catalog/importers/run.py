"""The run loop: one ImportRun per import, batches from the source to the writer, progress.

``progress(message, fraction)`` is called between batches; if it raises (a cancelled job),
every committed batch is whole and the ImportRun is marked cancelled (``base.runs.Cancelled``)
or failed; its error is always storable (no NUL bytes, capped).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from django.conf import settings
from django.utils import timezone

from base.runs import Cancelled, mask_secrets, storable_text

from ..models import ImportRun
from .records import ImporterError, MovieRecord, Progress, Source
from .writer import GenreResolver, MovieWriter

MAX_WARNINGS_KEPT = 200


def _batches(items: Iterable, size: int) -> Iterator[list]:
    batch: list = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


SUMMARY_FIELDS = ["created", "updated", "unchanged", "skipped", "posters_stored", "skipped_rows", "warnings"]


def execute_import(
    kind: str,
    params: dict,
    make_source: Callable[[dict], Source],
    *,
    progress: Progress | None = None,
    on_run: Callable[[ImportRun], None] | None = None,
) -> ImportRun:
    """Run one import and return its ImportRun (status succeeded, or failed with the error).

    Raises ``ImporterError`` (with ``.run``) when the import cannot run at all, and re-raises
    whatever ``progress`` raises after marking the run cancelled (``Cancelled``) or failed.
    ``on_run(run)`` is called once the run row exists (a job records it, so a sweep that
    finds the job's worker dead can end the run too).
    """
    run = ImportRun.objects.create(kind=kind, params=mask_secrets(params), status=ImportRun.Status.RUNNING)
    if on_run:
        on_run(run)
    processed = 0
    source: Source | None = None
    writer: MovieWriter | None = None
    source_rows = None
    try:
        source = make_source(params)
        genres = GenreResolver(
            allow_new=bool(params.get("allow_new_genres")),
            max_new=settings.GENREWEB_MAX_NEW_GENRES,
            extra=source.extra_genres,
            warn=source.warnings.append,
        )
        writer = MovieWriter(run, genres)
        limit = params.get("limit")
        source_rows = source.rows()
        rows: Iterable = _limited(source_rows, int(limit)) if limit else source_rows
        if progress:
            progress(f"{kind} import #{run.pk}: reading", 0.0)
        for batch in _batches(rows, source.batch_size):
            writer.write_batch(batch)
            processed += len(batch)
            run.warnings = _capped(source.warnings + (writer.warnings if writer else []))
            run.save(update_fields=SUMMARY_FIELDS)
            if progress:
                total = source.total if source.total is not None else None
                if limit:
                    total = min(total, int(limit)) if total is not None else int(limit)
                fraction = min(processed / total, 0.99) if total else 0.0
                progress(f"{kind} import #{run.pk}: {processed} rows, {_counts(run)}", fraction)
        # Let the source finish up (close connections, add its last warnings) before the summary.
        source_rows.close()
    except BaseException as exc:
        run.status = ImportRun.Status.CANCELLED if isinstance(exc, Cancelled) else ImportRun.Status.FAILED
        run.error = storable_text(str(exc) if isinstance(exc, ImporterError) else f"{type(exc).__name__}: {exc}")
        run.finished_at = timezone.now()
        if source_rows is not None:
            try:
                source_rows.close()
            except Exception:  # noqa: BLE001 - the original error is the one to report
                pass
        if source is not None:
            run.warnings = _capped(source.warnings + (writer.warnings if writer else []))
        run.save()
        if isinstance(exc, ImporterError):
            exc.run = run
        raise
    run.status = ImportRun.Status.SUCCEEDED
    run.finished_at = timezone.now()
    run.warnings = _capped(source.warnings + (writer.warnings if writer else []))
    run.save()
    if progress:
        progress(f"{kind} import #{run.pk} done: {processed} rows, {_counts(run)}", 1.0)
    return run


def _limited(rows: Iterable, limit: int) -> Iterator:
    # Counts movies, not reported skips, so "limit 10" means ten movies looked at.
    seen = 0
    for item in rows:
        if seen >= limit:
            return
        yield item
        if isinstance(item, MovieRecord):
            seen += 1


def _capped(warnings: list[str]) -> list[str]:
    if len(warnings) <= MAX_WARNINGS_KEPT:
        return list(warnings)
    return warnings[:MAX_WARNINGS_KEPT] + [f"... and {len(warnings) - MAX_WARNINGS_KEPT} more warnings"]


def _counts(run: ImportRun) -> str:
    return (
        f"{run.created} created, {run.updated} updated, {run.unchanged} unchanged, "
        f"{run.skipped} skipped, {run.posters_stored} posters stored"
    )


def summary(run: ImportRun) -> str:
    return f"{run.kind_label} import #{run.pk} {run.status}: {_counts(run)}"
