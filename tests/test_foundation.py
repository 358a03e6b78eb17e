import subprocess
import sys

import pytest
from django.urls import reverse

from catalog.labels import change_labels, set_labels
from catalog.models import AppendOnlyError, Genre, LabelChange, LabelOrigin, Movie, MovieGenre


@pytest.mark.slow  # a fresh Django process
def test_production_refuses_development_secret():
    code = (
        "import os; os.environ['GENREWEB_PRODUCTION']='1'; os.environ.pop('SECRET_KEY', None);"
        "import django; os.environ['DJANGO_SETTINGS_MODULE']='genreweb.settings'; django.setup()"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr


@pytest.mark.django_db
def test_healthz(client):
    response = client.get(reverse("healthz"))
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_label_changes_are_audited_and_append_only(django_user_model):
    drama, comedy, horror = (Genre.objects.create(name=n) for n in ("Drama", "Comedy", "Horror"))
    movie = Movie.objects.create(title="Example", source="csv", source_id="1")
    set_labels(movie, [drama, comedy], origin=LabelOrigin.IMPORTED)
    assert movie.label_source == LabelOrigin.IMPORTED

    person = django_user_model.objects.create_user("labeler")
    diff = change_labels(movie, add=[horror], remove=[comedy], user=person, reason="poster is a slasher")
    assert diff.added == ["Horror"] and diff.removed == ["Comedy"]
    assert set(movie.genres.values_list("name", flat=True)) == {"Drama", "Horror"}
    movie.refresh_from_db()
    assert movie.label_source == LabelOrigin.PERSON
    assert MovieGenre.objects.get(movie=movie, genre=horror).source == LabelOrigin.PERSON

    history = sorted(movie.label_history.values_list("genre__name", "action", "origin", "user__username", "reason"))
    assert history == [
        ("Comedy", "added", "imported", None, ""),
        ("Comedy", "removed", "person", "labeler", "poster is a slasher"),
        ("Drama", "added", "imported", None, ""),
        ("Horror", "added", "person", "labeler", "poster is a slasher"),
    ]
    entry = movie.label_history.first()
    with pytest.raises(AppendOnlyError):
        entry.reason = "rewrite history"
        entry.save()
    with pytest.raises(AppendOnlyError):
        entry.delete()

    # A person saving an unchanged imported set neither records history nor claims the set.
    other = Movie.objects.create(title="Untouched", source="csv", source_id="2")
    set_labels(other, [drama], origin=LabelOrigin.IMPORTED)
    assert not set_labels(other, [drama], user=person).changed
    other.refresh_from_db()
    assert other.label_source == LabelOrigin.IMPORTED

    # Setting the same labels again records nothing.
    before = LabelChange.objects.count()
    assert not set_labels(movie, [drama, horror], user=person).changed
    assert LabelChange.objects.count() == before
