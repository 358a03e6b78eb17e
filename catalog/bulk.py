"""Bulk label changes and their undo, each one audited ChangeSet.

- ``apply_bulk(movies, add=..., remove=...)``: add and/or remove genres on every movie of a
  queryset (checked boxes, or "all matching this filter"), in batches of ``BATCH_SIZE``
  movies through ``catalog.labels.write_labels_batch`` (each movie row locked, one audit row
  per label change, linked to the change set). Movies whose labels already match count as
  unchanged. The selection is walked by id (keyset), so 100k movies never sit in memory and
  each batch holds its row locks for a fraction of a second.
- ``undo_change_set(change_set)``: reverts exactly the label changes that change set made,
  as a new change set (kind undo, ``undoes`` = the one reverted). A genre of a movie that
  changed again after the change set (someone relabelled it, another bulk change) is left as
  it is now and reported (``skipped`` / ``skipped_detail``): a stale write is refused, per
  genre. A change set is undone at most once (the second try is refused: ``NotUndoable``), and
  not while it is queued or runs (one whose process died, no batch for ``INTERRUPTED_AFTER``,
  ends failed at the undo and is undone);
  an undo may itself be undone, which re-applies what it reverted (a redo), under the same rule.

Each batch commits with the change set's counts, so a change set that fails half-way says
how far it got (status failed) and can still be undone: its audit rows are what it changed.

Both come in two steps, so a web request can answer at once and a job do the work:
``new_bulk`` / ``new_undo`` check the request and create the change set, queued (a bad one is
refused before anything exists); ``run_change_set`` runs a queued one to its end (it claims it
first: a change set runs once). ``apply_bulk`` and ``undo_change_set`` are both steps in one
call. A queued or running change set whose runner ended without finishing it (a job cancelled,
a worker lost) is ended failed by ``end_unfinished``, with what it had committed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import timedelta

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from base import events
from base.params import Param, ParamSchema
from base.progress import Progress, report
from base.runs import RUN_OPEN, storable_text

from .labels import LabelWrite, write_labels_batch
from .models import ChangeSet, Genre, LabelChange, Movie

BATCH_SIZE = 500
# Most movies a bulk change may name one by one (a page checks at most a page of them; the
# API takes this many); more go by filter.
MAX_IDS = 5000

# A running change set that committed no batch for this long lost its process (a batch of
# BATCH_SIZE movies takes well under a second): it counts as failed, and may be undone.
INTERRUPTED_AFTER = timedelta(minutes=10)

OnChanged = Callable[[list[int]], None]


class BulkError(ValueError):
    """The bulk change itself is wrong (nothing to do, a genre both added and removed)."""


class NotUndoable(Exception):
    """This change set cannot be undone now (already undone, or still queued or running)."""


class NotQueued(BulkError):
    """``run_change_set`` was given a change set that is not queued (it ran, or is running)."""


def id_batches(movies: QuerySet[Movie], size: int = BATCH_SIZE) -> Iterator[list[int]]:
    """The ids of ``movies`` in ascending batches of ``size`` (keyset: ``id > last``), each
    batch one query on the filter, so memory stays bounded whatever the selection."""
    selection = Movie.objects.filter(pk__in=movies.order_by().values("pk"))
    last = 0
    while True:
        ids = list(selection.filter(pk__gt=last).order_by("pk").values_list("pk", flat=True)[:size])
        if not ids:
            return
        yield ids
        last = ids[-1]


def apply_bulk(
    movies: QuerySet[Movie],
    *,
    add: Iterable[Genre] = (),
    remove: Iterable[Genre] = (),
    user=None,
    description: str = "",
    selection: dict | None = None,
    on_changed: OnChanged | None = None,
    batch_size: int = BATCH_SIZE,
) -> ChangeSet:
    """Add/remove genres on every movie of ``movies``: one ChangeSet, finished when this returns.

    ``selection`` records what the movies were ({"filter": params} or {"ids": [...]});
    ``on_changed(ids)`` is called after each batch commits with the movies it changed (the
    layers above refresh what depends on labels, e.g. ml's review queues)."""
    change_set = new_bulk(add=add, remove=remove, user=user, description=description, selection=selection)
    return run_change_set(change_set, movies, on_changed=on_changed, batch_size=batch_size)


def new_bulk(
    *, add: Iterable[Genre] = (), remove: Iterable[Genre] = (), user=None, description: str = "", selection=None
) -> ChangeSet:
    """A queued bulk change set (``run_change_set`` runs it); BulkError when there is nothing to
    do or a genre is both added and removed."""
    add, remove = list(add), list(remove)
    if not add and not remove:
        raise BulkError("Choose a genre to add or to remove.")
    both = {g.pk for g in add} & {g.pk for g in remove}
    if both:
        names = sorted(g.name for g in add if g.pk in both)
        raise BulkError(f"Cannot both add and remove {', '.join(names)}.")
    return ChangeSet.objects.create(
        kind=ChangeSet.Kind.BULK,
        status=ChangeSet.Status.QUEUED,
        user=user,
        description=description,
        selection=selection or {},
        add=sorted(g.name for g in add),
        remove=sorted(g.name for g in remove),
    )


def undo_change_set(
    target: ChangeSet,
    *,
    user=None,
    description: str = "",
    on_changed: OnChanged | None = None,
    batch_size: int = BATCH_SIZE,
) -> ChangeSet:
    """Revert what ``target`` changed, as a new change set of kind undo (see the module doc)."""
    undo = new_undo(target, user=user, description=description)
    return run_change_set(undo, on_changed=on_changed, batch_size=batch_size)


def new_undo(target: ChangeSet, *, user=None, description: str = "") -> ChangeSet:
    """The queued undo of ``target``; NotUndoable when it was undone already (by an undo not
    failed, queued ones included) or is still queued or running."""
    with transaction.atomic():
        # The lock makes two undo clicks at once serialise: the second sees the first's undo.
        target = ChangeSet.objects.select_for_update().get(pk=target.pk)
        if target.status == ChangeSet.Status.QUEUED:
            raise NotUndoable(f"{target} has not started yet; undo it when it has finished.")
        if target.status == ChangeSet.Status.RUNNING:
            if timezone.now() - target.updated_at < INTERRUPTED_AFTER:
                raise NotUndoable(f"{target} is still running; undo it when it has finished.")
            _end_failed(
                target,
                f"interrupted: no batch committed for {INTERRUPTED_AFTER.total_seconds() / 60:.0f} minutes",
            )
        earlier = target.undone_by.exclude(status=ChangeSet.Status.FAILED).order_by("pk").first()
        if earlier is not None:
            raise NotUndoable(f"{target} was already undone by {earlier}.")
        return ChangeSet.objects.create(
            kind=ChangeSet.Kind.UNDO,
            status=ChangeSet.Status.QUEUED,
            user=user,
            description=description,
            selection={"change_set": target.pk},
            undoes=target,
        )


def run_change_set(
    change_set: ChangeSet,
    movies: QuerySet[Movie] | None = None,
    *,
    on_changed: OnChanged | None = None,
    progress: Progress | None = None,
    batch_size: int | None = None,
) -> ChangeSet:
    """Run a queued change set to its end: a bulk change over ``movies`` (what its selection
    names), an undo over what its target changed. ``progress(message, fraction)`` is told
    after each batch (and may raise to stop it: the change set then ends failed, undoable).
    NotQueued if it is not queued (a change set runs once). ``batch_size``: BATCH_SIZE."""
    batch_size = batch_size or BATCH_SIZE
    claimed = ChangeSet.objects.filter(pk=change_set.pk, status=ChangeSet.Status.QUEUED).update(
        status=ChangeSet.Status.RUNNING, updated_at=timezone.now()
    )
    change_set.refresh_from_db()
    if not claimed:
        raise NotQueued(f"{change_set} is {change_set.get_status_display().lower()}, not queued; it runs once.")
    user = change_set.user
    if change_set.kind == ChangeSet.Kind.UNDO:
        target = change_set.undoes
        reason = change_set.description or f"undo of {target.get_kind_display().lower()} #{target.pk}"
        total = None if progress is None else _changed_movies(target).count()

        def writes(ids: list[int]) -> list[LabelWrite]:
            by_movie: dict[int, list[LabelChange]] = {}
            for change in LabelChange.objects.filter(change_set=target, movie_id__in=ids).select_related("genre"):
                by_movie.setdefault(change.movie_id, []).append(change)
            return [
                LabelWrite(
                    pk,
                    add=[c.genre for c in changes if c.action == LabelChange.Action.REMOVED],
                    remove=[c.genre for c in changes if c.action == LabelChange.Action.ADDED],
                    unchanged_since={c.genre_id: c.pk for c in changes},
                )
                for pk, changes in by_movie.items()
            ]

        batches = _changed_movie_batches(target, batch_size)
    else:
        if movies is None:
            _end_failed(change_set, "no movies were given to run it over")
            raise BulkError(f"{change_set} needs the movies of its selection.")
        add = list(Genre.objects.filter(name__in=change_set.add))
        remove = list(Genre.objects.filter(name__in=change_set.remove))
        gone = sorted(set(change_set.add + change_set.remove) - {g.name for g in add + remove})
        if gone:
            _end_failed(change_set, f"genre {', '.join(gone)} no longer exists")
            raise BulkError(f"{change_set}: genre {', '.join(gone)} no longer exists.")
        reason = change_set.description or f"bulk change #{change_set.pk}"
        total = None if progress is None else movies.order_by().count()

        def writes(ids: list[int]) -> list[LabelWrite]:
            return [LabelWrite(pk, add=add, remove=remove) for pk in ids]

        batches = id_batches(movies, batch_size)
    return _run(change_set, batches, writes, user, reason, on_changed, progress, total)


def end_unfinished(change_set_id: int, error: str) -> bool:
    """End a queued or running change set failed (its runner ended without finishing it: a job
    cancelled or failed, a worker lost), keeping what it committed (it can be undone).
    False when it had already ended."""
    with transaction.atomic():
        change_set = ChangeSet.objects.select_for_update().filter(pk=change_set_id, status__in=RUN_OPEN).first()
        if change_set is None:
            return False
        _end_failed(change_set, error)
    return True


# The job that runs a change set (workers' bulk_labels kind) takes its id; only a queued one.
def _queued(params: dict, errors: dict) -> None:
    status = ChangeSet.objects.filter(pk=params["change_set"]).values_list("status", flat=True).first()
    if status != ChangeSet.Status.QUEUED:
        errors["change_set"] = f"Change set #{params['change_set']} is {status}; only a queued one runs (once)."


RUN_PARAMS = ParamSchema(
    (
        Param(
            "change_set",
            "ref",
            model="catalog.ChangeSet",
            required=True,
            help="The queued bulk change or undo to run (the catalog page and the API queue it).",
        ),
    ),
    check=_queued,
)


def _end_failed(change_set: ChangeSet, error: str) -> None:
    """A change set that ends without finishing (its process died between batches, its job
    ended): failed, with what it had committed, so it can be undone."""
    change_set.status = ChangeSet.Status.FAILED
    change_set.error = storable_text(error)
    change_set.finished_at = timezone.now()
    change_set.save(update_fields=["status", "error", "finished_at", "updated_at"])
    _emit_ended(change_set)


def _changed_movies(change_set: ChangeSet):
    """The ids of the movies ``change_set`` changed (each once)."""
    return LabelChange.objects.filter(change_set=change_set).order_by().values_list("movie_id", flat=True).distinct()


def _changed_movie_batches(change_set: ChangeSet, size: int) -> Iterator[list[int]]:
    """The movies ``change_set`` changed, ascending, ``size`` at a time (keyset on the
    (change_set, movie) index)."""
    last = 0
    while True:
        ids = list(_changed_movies(change_set).filter(movie_id__gt=last).order_by("movie_id")[:size])
        if not ids:
            return
        yield ids
        last = ids[-1]


def _run(
    change_set: ChangeSet,
    batches: Iterator[list[int]],
    writes: Callable[[list[int]], Sequence[LabelWrite]],
    user,
    reason: str,
    on_changed: OnChanged | None,
    progress: Progress | None = None,
    total: int | None = None,
) -> ChangeSet:
    skipped_detail: list[dict] = []
    try:
        for ids in batches:
            with transaction.atomic():
                results = write_labels_batch(writes(ids), user=user, reason=reason, change_set=change_set)
                changed_ids = _count(change_set, ids, results, skipped_detail)
                change_set.skipped_detail = skipped_detail
                change_set.save(update_fields=[*COUNT_FIELDS, "skipped_detail", "updated_at"])
            if changed_ids and on_changed is not None:
                on_changed(changed_ids)
            if total:
                report(
                    progress,
                    f"{change_set.matched:,} of {total:,} movies, {change_set.changed:,} changed",
                    min(change_set.matched / total, 0.99),
                )
    except Exception as exc:
        _end_failed(change_set, f"{type(exc).__name__}: {exc}")
        raise
    change_set.status = ChangeSet.Status.SUCCEEDED
    change_set.finished_at = timezone.now()
    change_set.save(update_fields=["status", "finished_at", "updated_at"])
    _emit_ended(change_set)
    return change_set


def _emit_ended(change_set: ChangeSet) -> None:
    """One ``labels.bulk_changed`` per change set (its movies raise no per-movie events)."""
    events.emit(
        events.LABELS_BULK_CHANGED,
        {
            "change_set": change_set.pk,
            "kind": change_set.kind,
            "status": change_set.status,
            "undoes": change_set.undoes_id,
            "add": change_set.add,
            "remove": change_set.remove,
            **{name: getattr(change_set, name) for name in COUNT_FIELDS},
            "user": events.username(change_set.user),
        },
    )


COUNT_FIELDS = ["matched", "changed", "unchanged", "skipped", "labels_added", "labels_removed"]


def _count(change_set: ChangeSet, ids: list[int], results: dict, skipped_detail: list[dict]) -> list[int]:
    """Add one batch's outcome to the change set's counts; returns the movies it changed."""
    changed_ids = []

    def skip(movie_id: int, title: str, genres: list[str], reason: str) -> None:
        change_set.skipped += 1
        if len(skipped_detail) < ChangeSet.SKIPPED_DETAIL_LIMIT:
            skipped_detail.append({"movie": movie_id, "title": title, "genres": genres, "reason": reason})

    for pk in ids:
        change_set.matched += 1
        if pk not in results:
            skip(pk, "", [], "the movie no longer exists")
            continue
        diff, movie = results[pk]  # never StaleLabels: these writes give no expected_version
        if diff.changed:
            change_set.changed += 1
            change_set.labels_added += len(diff.added)
            change_set.labels_removed += len(diff.removed)
            changed_ids.append(pk)
        elif not diff.stale:
            change_set.unchanged += 1
        if diff.stale:
            skip(pk, movie.title, diff.stale, "changed again since; left as it is now")
    return changed_ids
