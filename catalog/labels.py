"""The one way to change a movie's genre labels: atomically, versioned, with an audit entry per change.

Every write locks the movie row first, then reads the current labels, then writes (the
design rule): two people editing at once serialise, and neither works from a set the other
has already changed. ``Movie.label_version`` goes up by one in the same transaction as
every change, so a writer that started from an older version (a form opened earlier, an
API client's PUT) can be refused with the current labels instead of overwriting them.
Imports are refused under the same lock once a person has curated the set.

``write_labels_batch`` is the same write for many movies at once (bulk changes and their
undo, catalog.bulk); ``write_labels`` is a batch of one, so there is one code path.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from base import events

from .models import Genre, LabelChange, LabelOrigin, Movie, MovieGenre


@dataclass(frozen=True)
class LabelDiff:
    added: list[str]
    removed: list[str]
    version: int = 0  # the movie's label version after the write
    # The label rows after the write, as of that version (sorted by genre name).
    labels: list[MovieGenre] = field(default_factory=list)
    # An import found the set curated by a person (checked under the lock) and left it alone.
    kept_person_labels: bool = False
    # Genres left as they are because they changed after the change being reverted (LabelWrite.unchanged_since).
    stale: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.added or self.removed)


class StaleLabels(Exception):
    """The write started from an older label version; nothing was written.

    ``labels`` (rows, sorted by genre name) and ``version`` are the movie's current labels
    and version as read under the lock, so the caller can show them and let the person redo
    the change."""

    def __init__(self, movie: Movie, labels: list[MovieGenre], version: int, expected: int):
        self.movie, self.labels, self.version, self.expected = movie, labels, version, expected
        super().__init__(
            f"The labels changed since you loaded them (version {expected}); they are now "
            f"{', '.join(self.genre_names) or 'empty'} (version {version}). Nothing was saved."
        )

    @property
    def genres(self) -> list[Genre]:
        return [mg.genre for mg in self.labels]

    @property
    def genre_names(self) -> list[str]:
        return [mg.genre.name for mg in self.labels]


@dataclass(frozen=True)
class LabelWrite:
    """One movie's part of a ``write_labels_batch``: the same arguments as ``write_labels``.

    ``unchanged_since`` (genre id -> LabelChange id): the write reverts that change (an
    undo); a genre of this movie with a later change is left alone and named in
    ``LabelDiff.stale`` (a stale write is refused per genre, the rest still applies)."""

    movie_id: int
    replace: Iterable[Genre] | None = None
    add: Iterable[Genre] = ()
    remove: Iterable[Genre] = ()
    expected_version: int | None = None
    unchanged_since: Mapping[int, int] | None = None


def write_labels(
    movie: Movie,
    *,
    replace: Iterable[Genre] | None = None,
    add: Iterable[Genre] = (),
    remove: Iterable[Genre] = (),
    origin: str = LabelOrigin.PERSON,
    user=None,
    reason: str = "",
    expected_version: int | None = None,
    change_set=None,
) -> LabelDiff:
    """Change the movie's labels: ``replace`` gives the whole new set, else ``add``/``remove``
    apply to the current set. Everything is computed from the set read under the row lock.

    ``expected_version``: the label version the writer started from; if the movie is at
    another version, raise ``StaleLabels`` and write nothing. ``origin`` is ``imported`` for
    importers, ``person`` or ``suggestion`` for people; a person's real change marks the
    set as person-curated, and an import finding it so (under the lock) writes nothing.
    ``change_set``: the bulk change (catalog.bulk) this write is part of; its audit rows link to it.
    """
    write = LabelWrite(movie.pk, replace=replace, add=add, remove=remove, expected_version=expected_version)
    results = write_labels_batch([write], origin=origin, user=user, reason=reason, change_set=change_set)
    if movie.pk not in results:
        raise Movie.DoesNotExist(f"movie {movie.pk} does not exist")
    result, locked = results[movie.pk]
    if isinstance(result, StaleLabels):
        raise result
    _copy_label_state(locked, movie)
    if origin != LabelOrigin.IMPORTED and change_set is None and result.changed:
        # One event per person's change, sent once the outermost transaction commits
        # (base.events). A bulk change set raises one labels.bulk_changed when it ends instead.
        events.emit(
            events.LABELS_CHANGED,
            {
                "movie": locked.pk,
                "title": locked.title,
                "label_version": result.version,
                "added": result.added,
                "removed": result.removed,
                "genres": [mg.genre.name for mg in result.labels],
                "origin": origin,
                "user": events.username(user),
                "reason": reason,
            },
        )
    return result


def write_labels_batch(
    writes: Sequence[LabelWrite],
    *,
    origin: str = LabelOrigin.PERSON,
    user=None,
    reason: str = "",
    change_set=None,
) -> dict[int, tuple[LabelDiff | StaleLabels, Movie]]:
    """``write_labels`` for many movies in one transaction and a constant number of queries
    (bulk changes and their undo write a few hundred movies per call): every movie row is
    locked first (in id order, so two batches never deadlock), then its labels are read and
    written exactly as ``write_labels`` does for one. Returns ``{movie id: (LabelDiff or
    StaleLabels, the locked movie)}``; a movie that no longer exists is left out. A stale
    ``expected_version`` refuses that movie only."""
    if origin not in LabelOrigin.values:
        # A misspelt origin ("import") must not count as a person's change and claim the set.
        raise ValueError(f"unknown label origin {origin!r}; choose one of {', '.join(LabelOrigin.values)}")
    by_person = origin != LabelOrigin.IMPORTED
    label_source = LabelOrigin.PERSON if by_person else LabelOrigin.IMPORTED
    writes = {w.movie_id: w for w in writes}
    results: dict[int, tuple[LabelDiff | StaleLabels, Movie]] = {}
    with transaction.atomic():
        # Lock first, then read: whatever committed before the lock is what we change.
        locked = {m.pk: m for m in Movie.objects.select_for_update().filter(pk__in=list(writes)).order_by("pk")}
        current: dict[int, dict[int, MovieGenre]] = {pk: {} for pk in locked}
        for mg in MovieGenre.objects.filter(movie_id__in=list(locked)).select_related("genre", "set_by"):
            current[mg.movie_id][mg.genre_id] = mg
        changed_since = _changed_since({pk: writes[pk] for pk in locked})
        new_labels: list[MovieGenre] = []
        gone_labels: list[int] = []
        history: list[LabelChange] = []
        touched: list[tuple[Movie, bool]] = []  # (movie, labels changed)
        for pk, movie in locked.items():
            write, have = writes[pk], current[pk]
            if write.expected_version is not None and write.expected_version != movie.label_version:
                results[pk] = (
                    StaleLabels(movie, _by_name(have.values()), movie.label_version, write.expected_version),
                    movie,
                )
                continue
            if not by_person and movie.label_source == LabelOrigin.PERSON:
                diff = LabelDiff([], [], movie.label_version, _by_name(have.values()), kept_person_labels=True)
                results[pk] = (diff, movie)
                continue
            add = {g.pk: g for g in write.add}
            remove = {g.pk: g for g in write.remove}
            if write.replace is not None:
                wanted = {g.pk: g for g in write.replace}
            else:
                wanted = {gid: mg.genre for gid, mg in have.items() if gid not in remove}
                wanted.update((gid, g) for gid, g in add.items() if gid not in remove)
            stale_ids = changed_since.get(pk, set())
            stale: list[str] = []
            for gid in stale_ids:  # changed since the change this write reverts: keep as it is now
                if (gid in wanted) != (gid in have):
                    stale.append(have[gid].genre.name if gid in have else wanted[gid].name)
                    if gid in have:
                        wanted[gid] = have[gid].genre
                    else:
                        wanted.pop(gid)
            to_add = [wanted[gid] for gid in wanted.keys() - have.keys()]
            to_remove = [have[gid] for gid in have.keys() - wanted.keys()]
            has_genres = bool(wanted)
            if not to_add and not to_remove:
                if movie.missing_genres == has_genres:  # a flag out of step (e.g. a new movie, no genres)
                    movie.missing_genres = not has_genres
                    touched.append((movie, False))
                results[pk] = (
                    LabelDiff([], [], movie.label_version, _by_name(have.values()), stale=sorted(stale)),
                    movie,
                )
                continue
            added_rows = [MovieGenre(movie=movie, genre=g, source=label_source, set_by=user) for g in to_add]
            new_labels += added_rows
            gone_labels += [mg.pk for mg in to_remove]
            history += [
                LabelChange(
                    movie=movie,
                    genre=g,
                    action=LabelChange.Action.ADDED,
                    origin=origin,
                    user=user,
                    reason=reason,
                    change_set=change_set,
                )
                for g in to_add
            ] + [
                LabelChange(
                    movie=movie,
                    genre=mg.genre,
                    action=LabelChange.Action.REMOVED,
                    origin=origin,
                    user=user,
                    reason=reason,
                    change_set=change_set,
                )
                for mg in to_remove
            ]
            movie.label_version += 1
            # Only a real change makes the set person-curated: every provenance change has audit rows.
            if by_person:
                movie.label_source = LabelOrigin.PERSON
            movie.missing_genres = not has_genres
            touched.append((movie, True))
            diff = LabelDiff(
                added=sorted(g.name for g in to_add),
                removed=sorted(mg.genre.name for mg in to_remove),
                version=movie.label_version,
                labels=_by_name([mg for gid, mg in have.items() if gid in wanted] + added_rows),
                stale=sorted(stale),
            )
            results[pk] = (diff, movie)
        if new_labels:
            MovieGenre.objects.bulk_create(new_labels)
        if gone_labels:
            MovieGenre.objects.filter(pk__in=gone_labels).delete()
        if history:
            LabelChange.objects.bulk_create(history)
        _save_label_state(touched, by_person)
    return results


def _save_label_state(touched: list[tuple[Movie, bool]], by_person: bool) -> None:
    """Write the new label state of the locked movies: at most four UPDATEs whatever their
    number (grouped by changed or not, and the missing-genres flag), not one per movie. The
    version goes up in SQL, from the value under our lock: the same as the instances hold."""
    now = timezone.now()
    groups: dict[tuple[bool, bool], list[int]] = {}
    for movie, changed in touched:
        movie.updated_at = now
        groups.setdefault((changed, movie.missing_genres), []).append(movie.pk)
    for (changed, missing), ids in groups.items():
        fields = {"missing_genres": missing, "updated_at": now}
        if changed:
            fields["label_version"] = F("label_version") + 1
            if by_person:
                fields["label_source"] = LabelOrigin.PERSON
        Movie.objects.filter(pk__in=ids).update(**fields)


def _changed_since(writes: Mapping[int, LabelWrite]) -> dict[int, set[int]]:
    """{movie id: genre ids changed after the LabelChange the write gives for them}. Ids of
    one movie's changes grow in the order of its row lock, so "a later id" is "changed since"."""
    guarded = {pk: w.unchanged_since for pk, w in writes.items() if w.unchanged_since}
    if not guarded:
        return {}
    oldest = min(min(since.values()) for since in guarded.values())
    found: dict[int, set[int]] = {}
    later = LabelChange.objects.filter(movie_id__in=list(guarded), id__gt=oldest).values_list(
        "movie_id", "genre_id", "id"
    )
    for movie_id, genre_id, change_id in later:
        since = guarded[movie_id].get(genre_id)
        if since is not None and change_id > since:
            found.setdefault(movie_id, set()).add(genre_id)
    return found


def _by_name(labels: Iterable[MovieGenre]) -> list[MovieGenre]:
    return sorted(labels, key=lambda mg: mg.genre.name)


def _copy_label_state(source: Movie, target: Movie) -> None:
    """Keep the caller's instance in step with the row (a later save() of it writes no stale state)."""
    target.label_source, target.label_version = source.label_source, source.label_version
    target.missing_genres = source.missing_genres


def set_labels(
    movie: Movie,
    genres: Iterable[Genre],
    *,
    origin: str = LabelOrigin.PERSON,
    user=None,
    reason: str = "",
    expected_version: int | None = None,
) -> LabelDiff:
    """Make ``genres`` the movie's label set (``write_labels`` with ``replace``)."""
    return write_labels(
        movie, replace=genres, origin=origin, user=user, reason=reason, expected_version=expected_version
    )


def change_labels(
    movie: Movie,
    *,
    add: Iterable[Genre] = (),
    remove: Iterable[Genre] = (),
    origin: str = LabelOrigin.PERSON,
    user=None,
    reason: str = "",
    expected_version: int | None = None,
) -> LabelDiff:
    """Add and/or remove some genres, keeping the rest as they are under the lock (e.g.
    accepting one suggestion)."""
    return write_labels(
        movie, add=add, remove=remove, origin=origin, user=user, reason=reason, expected_version=expected_version
    )
