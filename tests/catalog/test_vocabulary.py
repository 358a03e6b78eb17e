"""One vocabulary on the catalog side: one label-origin enum, one meaning of a usable poster."""

from __future__ import annotations

import pytest
from django.core.files.base import ContentFile
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from catalog.labels import set_labels
from catalog.models import Genre, LabelChange, LabelOrigin, Movie, MovieGenre, Poster

pytestmark = pytest.mark.django_db


def make_genres() -> dict[str, Genre]:
    return {name: Genre.objects.get_or_create(name=name)[0] for name in ("Drama", "Comedy")}


def test_one_label_origin_for_history_labels_and_label_sets():
    genres = make_genres()
    movie = Movie.objects.create(title="Origins", source="csv", source_id="o1")
    set_labels(movie, [genres["Drama"]], origin=LabelOrigin.IMPORTED)
    # The same word in all three places, so "imported" means one thing when filtering.
    assert LabelChange.objects.get(movie=movie).origin == "imported"
    assert MovieGenre.objects.get(movie=movie).source == "imported"
    assert Movie.objects.get(pk=movie.pk).label_source == "imported"
    set_labels(movie, [genres["Comedy"]], origin=LabelOrigin.SUGGESTION)
    assert set(MovieGenre.objects.filter(movie=movie).values_list("source", flat=True)) == {"person"}
    assert Movie.objects.get(pk=movie.pk).label_source == "person"


def test_a_misspelt_origin_is_refused_instead_of_claiming_the_labels():
    genres = make_genres()
    movie = Movie.objects.create(title="Typo", source="csv", source_id="o2")
    with pytest.raises(ValueError, match="unknown label origin 'import'"):
        set_labels(movie, [genres["Drama"]], origin="import")  # the old history spelling
    movie.refresh_from_db()
    assert movie.label_source == "imported" and not movie.labels.exists()


@pytest.mark.django_db(transaction=True)
def test_migration_renames_the_old_history_spelling():
    executor = MigrationExecutor(connection)
    executor.migrate([("catalog", "0006_importrun_cancelled")])
    old = executor.loader.project_state([("catalog", "0006_importrun_cancelled")]).apps
    movie = old.get_model("catalog", "Movie").objects.create(title="Old", source="csv", source_id="m1")
    genre = old.get_model("catalog", "Genre").objects.create(name="Drama", slug="drama")
    old.get_model("catalog", "LabelChange").objects.create(movie=movie, genre=genre, action="added", origin="import")
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())
    assert list(LabelChange.objects.values_list("origin", flat=True)) == ["imported"]


def test_usable_posters_are_decoded_with_a_derivative():
    def poster(title: str, status: str, derivative: bool) -> Poster:
        movie = Movie.objects.create(title=title)
        made = Poster.objects.create(movie=movie, status=status)
        if derivative:
            made.derivative.save(f"{title}.jpg", ContentFile(b"jpeg"), save=True)
        return made

    usable = poster("ok", Poster.Status.OK, True)
    poster("ok-without-derivative", Poster.Status.OK, False)
    poster("corrupt-with-stale-derivative", Poster.Status.CORRUPT, True)
    poster("pending", Poster.Status.PENDING, False)
    assert list(Poster.objects.usable()) == [usable]
