"""The one way to change a movie's genre labels: atomically, with an audit entry per change."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from django.db import transaction

from .models import Genre, LabelChange, Movie, MovieGenre


@dataclass(frozen=True)
class LabelDiff:
    added: list[str]
    removed: list[str]

    @property
    def changed(self) -> bool:
        return bool(self.added or self.removed)


def set_labels(
    movie: Movie,
    genres: Iterable[Genre],
    *,
    origin: str = LabelChange.Origin.PERSON,
    user=None,
    reason: str = "",
) -> LabelDiff:
    """Make ``genres`` the movie's label set and record each addition/removal.

    ``origin`` is ``import`` for importers, ``person`` or ``suggestion`` for people.
    A person's change marks the whole label set as person-curated, so later imports
    leave it alone.
    """
    wanted = {g.pk: g for g in genres}
    by_person = origin != LabelChange.Origin.IMPORT
    with transaction.atomic():
        # Lock the movie row so two people relabelling at once serialise.
        locked = Movie.objects.select_for_update().get(pk=movie.pk)
        current = {mg.genre_id: mg for mg in MovieGenre.objects.filter(movie=locked).select_related("genre")}
        to_add = [wanted[gid] for gid in wanted.keys() - current.keys()]
        to_remove = [current[gid] for gid in current.keys() - wanted.keys()]
        label_source = MovieGenre.Source.PERSON if by_person else MovieGenre.Source.IMPORTED
        MovieGenre.objects.bulk_create(
            [MovieGenre(movie=locked, genre=g, source=label_source, set_by=user) for g in to_add]
        )
        if to_remove:
            MovieGenre.objects.filter(pk__in=[mg.pk for mg in to_remove]).delete()
        history = [
            LabelChange(movie=locked, genre=g, action=LabelChange.Action.ADDED, origin=origin, user=user, reason=reason)
            for g in to_add
        ] + [
            LabelChange(
                movie=locked, genre=mg.genre, action=LabelChange.Action.REMOVED, origin=origin, user=user, reason=reason
            )
            for mg in to_remove
        ]
        LabelChange.objects.bulk_create(history)
        update_fields = []
        # Only a real change makes the set person-curated: every provenance change has audit rows.
        if by_person and history and locked.label_source != Movie.LabelSource.PERSON:
            locked.label_source = Movie.LabelSource.PERSON
            update_fields.append("label_source")
        has_genres = bool(wanted)
        if locked.missing_genres == has_genres:
            locked.missing_genres = not has_genres
            update_fields.append("missing_genres")
        if update_fields:
            locked.save(update_fields=update_fields + ["updated_at"])
            movie.label_source, movie.missing_genres = locked.label_source, locked.missing_genres
    return LabelDiff(
        added=sorted(g.name for g in to_add), removed=sorted(mg.genre.name for mg in to_remove)
    )


def change_labels(
    movie: Movie,
    *,
    add: Iterable[Genre] = (),
    remove: Iterable[Genre] = (),
    origin: str = LabelChange.Origin.PERSON,
    user=None,
    reason: str = "",
) -> LabelDiff:
    """Add and/or remove some genres, keeping the rest (e.g. accepting one suggestion)."""
    with transaction.atomic():
        current = set(Genre.objects.filter(labels__movie=movie))
        wanted = (current | set(add)) - set(remove)
        return set_labels(movie, wanted, origin=origin, user=user, reason=reason)
