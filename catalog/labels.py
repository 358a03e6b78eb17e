"""The one way to change a movie's genre labels: atomically, versioned, with an audit entry per change.

Every write locks the movie row first, then reads the current labels, then writes (the
design rule): two people editing at once serialise, and neither works from a set the other
has already changed. ``Movie.label_version`` goes up by one in the same transaction as
every change, so a writer that started from an older version (a form opened earlier, an
API client's PUT) can be refused with the current labels instead of overwriting them.
Imports are refused under the same lock once a person has curated the set.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from django.db import transaction

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
) -> LabelDiff:
    """Change the movie's labels: ``replace`` gives the whole new set, else ``add``/``remove``
    apply to the current set. Everything is computed from the set read under the row lock.

    ``expected_version``: the label version the writer started from; if the movie is at
    another version, raise ``StaleLabels`` and write nothing. ``origin`` is ``imported`` for
    importers, ``person`` or ``suggestion`` for people; a person's real change marks the
    set as person-curated, and an import finding it so (under the lock) writes nothing.
    """
    if origin not in LabelOrigin.values:
        # A misspelt origin ("import") must not count as a person's change and claim the set.
        raise ValueError(f"unknown label origin {origin!r}; choose one of {', '.join(LabelOrigin.values)}")
    by_person = origin != LabelOrigin.IMPORTED
    replace = None if replace is None else {g.pk: g for g in replace}
    add, remove = {g.pk: g for g in add}, {g.pk: g for g in remove}
    with transaction.atomic():
        # Lock first, then read: whatever committed before the lock is what we change.
        locked = Movie.objects.select_for_update().get(pk=movie.pk)
        current = {mg.genre_id: mg for mg in MovieGenre.objects.filter(movie=locked).select_related("genre", "set_by")}
        if expected_version is not None and expected_version != locked.label_version:
            raise StaleLabels(locked, _by_name(current.values()), locked.label_version, expected_version)
        _copy_label_state(locked, movie)
        if not by_person and locked.label_source == LabelOrigin.PERSON:
            return LabelDiff(
                added=[],
                removed=[],
                version=locked.label_version,
                labels=_by_name(current.values()),
                kept_person_labels=True,
            )
        if replace is not None:
            wanted = replace
        else:
            wanted = {gid: mg.genre for gid, mg in current.items() if gid not in remove}
            wanted.update((gid, g) for gid, g in add.items() if gid not in remove)
        to_add = [wanted[gid] for gid in wanted.keys() - current.keys()]
        to_remove = [current[gid] for gid in current.keys() - wanted.keys()]
        has_genres = bool(wanted)
        if not to_add and not to_remove:
            if locked.missing_genres == has_genres:  # a flag out of step (e.g. a new movie, no genres)
                locked.missing_genres = not has_genres
                locked.save(update_fields=["missing_genres", "updated_at"])
                _copy_label_state(locked, movie)
            return LabelDiff(added=[], removed=[], version=locked.label_version, labels=_by_name(current.values()))
        label_source = LabelOrigin.PERSON if by_person else LabelOrigin.IMPORTED
        added_rows = MovieGenre.objects.bulk_create(
            [MovieGenre(movie=locked, genre=g, source=label_source, set_by=user) for g in to_add]
        )
        if to_remove:
            MovieGenre.objects.filter(pk__in=[mg.pk for mg in to_remove]).delete()
        LabelChange.objects.bulk_create(
            [
                LabelChange(
                    movie=locked, genre=g, action=LabelChange.Action.ADDED, origin=origin, user=user, reason=reason
                )
                for g in to_add
            ]
            + [
                LabelChange(
                    movie=locked,
                    genre=mg.genre,
                    action=LabelChange.Action.REMOVED,
                    origin=origin,
                    user=user,
                    reason=reason,
                )
                for mg in to_remove
            ]
        )
        locked.label_version += 1
        update_fields = ["label_version"]
        # Only a real change makes the set person-curated: every provenance change has audit rows.
        if by_person and locked.label_source != LabelOrigin.PERSON:
            locked.label_source = LabelOrigin.PERSON
            update_fields.append("label_source")
        if locked.missing_genres == has_genres:
            locked.missing_genres = not has_genres
            update_fields.append("missing_genres")
        locked.save(update_fields=update_fields + ["updated_at"])
        _copy_label_state(locked, movie)
        diff = LabelDiff(
            added=sorted(g.name for g in to_add),
            removed=sorted(mg.genre.name for mg in to_remove),
            version=locked.label_version,
            labels=_by_name([mg for gid, mg in current.items() if gid in wanted] + added_rows),
        )
        if by_person:  # sent once the outermost transaction commits (base.events)
            events.emit(
                events.LABELS_CHANGED,
                {
                    "movie": locked.pk,
                    "title": locked.title,
                    "label_version": diff.version,
                    "added": diff.added,
                    "removed": diff.removed,
                    "genres": [mg.genre.name for mg in diff.labels],
                    "origin": origin,
                    "user": events.username(user),
                    "reason": reason,
                },
            )
    return diff


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
