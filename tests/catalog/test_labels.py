"""catalog.labels: the one way labels change (lock, read, write; versioned; imports yield to people)."""

from __future__ import annotations

import pytest

from catalog.labels import StaleLabels, change_labels, set_labels
from catalog.models import Genre, LabelChange, LabelOrigin, Movie

pytestmark = pytest.mark.django_db


@pytest.fixture
def genres():
    return {name: Genre.objects.create(name=name) for name in ("Comedy", "Drama", "Horror")}


@pytest.fixture
def movie(genres):
    movie = Movie.objects.create(title="Example", source="csv", source_id="1")
    set_labels(movie, [genres["Drama"]], origin=LabelOrigin.IMPORTED)
    return movie


def test_every_change_is_one_version_and_no_change_is_none(movie, genres):
    assert movie.label_version == 1
    diff = change_labels(movie, add=[genres["Comedy"]], remove=[genres["Drama"]])
    assert (diff.added, diff.removed, diff.version) == (["Comedy"], ["Drama"], 2)
    assert [mg.genre.name for mg in diff.labels] == ["Comedy"]
    assert not change_labels(movie, add=[genres["Comedy"]]).changed
    movie.refresh_from_db()
    assert movie.label_version == 2


def test_a_stale_version_writes_nothing_and_tells_the_current_labels(movie, genres):
    change_labels(movie, add=[genres["Comedy"]])  # version 2
    history = LabelChange.objects.count()
    with pytest.raises(StaleLabels) as refused:
        set_labels(movie, [genres["Horror"]], expected_version=1)
    assert (refused.value.genre_names, refused.value.version, refused.value.expected) == (["Comedy", "Drama"], 2, 1)
    with pytest.raises(StaleLabels):
        change_labels(movie, remove=[genres["Drama"]], expected_version=1)
    assert LabelChange.objects.count() == history
    assert set(movie.genres.values_list("name", flat=True)) == {"Comedy", "Drama"}
    assert set_labels(movie, [genres["Horror"]], expected_version=2).version == 3


def test_an_import_yields_to_a_person_even_from_a_stale_instance(movie, genres):
    stale = Movie.objects.get(pk=movie.pk)  # what an importer read before the person saved
    change_labels(movie, add=[genres["Comedy"]], user=None, origin=LabelOrigin.PERSON)
    assert stale.label_source == LabelOrigin.IMPORTED
    diff = set_labels(stale, [genres["Horror"]], origin=LabelOrigin.IMPORTED)
    assert diff.kept_person_labels and not diff.changed
    assert set(movie.genres.values_list("name", flat=True)) == {"Comedy", "Drama"}
    assert stale.label_source == LabelOrigin.PERSON  # the caller's instance is brought up to date


def test_a_plain_save_of_an_older_instance_keeps_the_label_state(movie, genres):
    """E.g. the admin saving a title: the label source and version are written only by catalog.labels."""
    earlier = Movie.objects.get(pk=movie.pk)
    change_labels(movie, add=[genres["Comedy"]])
    earlier.title = "Renamed"
    earlier.save()
    movie.refresh_from_db()
    assert movie.title == "Renamed"
    assert (movie.label_source, movie.label_version) == (LabelOrigin.PERSON, 2)
