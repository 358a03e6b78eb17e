"""Catalog pages: roles, catalog filters and query counts, the movie page and relabel, insight
(model pages: tests/ml/test_pages.py; jobs pages: tests/workers/test_pages.py)."""

from __future__ import annotations

import pytest
from django.urls import reverse

from catalog.models import Genre, LabelChange, LabelOrigin, Movie, MovieGenre
from ml.models import ModelAlias, Prediction

pytestmark = pytest.mark.django_db

READ_PAGES = ["/", "/?view=list", "/insight/", "/models/", "/models/review/errors/", "/models/predict/", "/jobs/"]


@pytest.mark.parametrize("url", READ_PAGES)
def test_anonymous_sees_only_the_login_page(client, world, url):
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))
    assert client.get(reverse("login")).status_code == 200


@pytest.mark.parametrize("url", READ_PAGES)
def test_anonymous_read_when_switched_on(client, world, settings, url):
    settings.GENREWEB_ANONYMOUS_READ = True
    assert client.get(url).status_code == 200


def test_anonymous_read_still_forbids_writes(client, world, settings):
    settings.GENREWEB_ANONYMOUS_READ = True
    movie = world["movies"]["Long Road"]
    response = client.post(reverse("relabel", args=[movie.pk]), {"genres": []})
    assert response.status_code == 302 and reverse("login") in response["Location"]
    assert MovieGenre.objects.filter(movie=movie).count() == 1


def test_catalog_grid_lists_movies_with_posters_and_badges(labeler_client, world):
    response = labeler_client.get("/")
    html = response.content.decode()
    assert response.status_code == 200
    for title in ("Laugh Track", "Night Shift", "Long Road", "Edge Case", "Quiet Years"):
        assert title in html
    assert html.count('<img src="/media/posters/') == 5
    assert "disagrees</span>" in html  # the production model's prediction differs from the labels


@pytest.mark.parametrize(
    "query, expected",
    [
        ("q=laugh", {"Laugh Track"}),
        ("q=story+of+long", {"Long Road"}),
        ("genre=drama", {"Long Road", "Quiet Years"}),
        ("year_min=2000&year_max=2015", {"Night Shift", "Long Road"}),
        ("audit=errors", set()),  # no label audit yet
        ("poster=ok", {"Laugh Track", "Night Shift", "Long Road", "Edge Case", "Quiet Years"}),
        ("poster=corrupt", set()),
    ],
)
def test_catalog_filters(labeler_client, world, query, expected):
    response = labeler_client.get(f"/?view=list&{query}")
    shown = {m.title for m in response.context["movies"]}
    assert shown == expected


def test_label_source_filter_after_a_person_relabels(labeler_client, world):
    movie = world["movies"]["Long Road"]
    assert not {m.title for m in labeler_client.get("/?label_source=person").context["movies"]}
    labeler_client.post(
        reverse("relabel", args=[movie.pk]),
        {"genres": [world["genres"]["Romance"].pk], "label_version": movie.label_version},
    )
    assert {m.title for m in labeler_client.get("/?label_source=person").context["movies"]} == {"Long Road"}


def test_bad_filter_values_show_errors_not_500(labeler_client, world):
    response = labeler_client.get("/?year_min=abc&genre=nope&year_max=1900&poster=weird")
    assert response.status_code == 200
    errors = response.context["form"].errors
    assert {"year_min", "genre", "poster"} <= set(errors)


def test_catalog_query_count_does_not_grow_with_movies(labeler_client, world, django_assert_max_num_queries):
    from catalog.models import Poster

    labeler_client.get("/")  # warm: session, content types
    # session + user, count, movies(+poster), labels(+genre), genre choices, production alias,
    # the page's predictions
    with django_assert_max_num_queries(9) as captured:
        labeler_client.get("/?view=list")
    baseline = len(captured)
    for i in range(30):
        movie = Movie.objects.create(title=f"Extra {i}", source="csv", source_id=f"x{i}")
        Poster.objects.create(movie=movie, status=Poster.Status.OK)
        MovieGenre.objects.create(movie=movie, genre=world["genres"]["Drama"])
    with django_assert_max_num_queries(baseline):
        response = labeler_client.get("/?view=list")
    assert len(response.context["movies"]) == 35


def test_movie_page_shows_labels_scores_and_history(labeler_client, world):
    movie = world["movies"]["Laugh Track"]
    response = labeler_client.get(reverse("movie", args=[movie.pk]))
    html = response.content.decode()
    assert response.status_code == 200
    assert "The story of laugh track." in html
    rows = {row["genre"]: row for row in response.context["scores"]}
    assert rows["Comedy"]["predicted"] and rows["Comedy"]["labelled"]
    assert rows["Romance"]["predicted"] and not rows["Romance"]["labelled"]
    assert rows["Comedy"]["pct"] == 92.0
    assert "Imported" in html and "+ Comedy" in html  # provenance + history
    assert 'id="relabel"' in html


def test_movie_page_without_production_model(labeler_client, world):
    ModelAlias.objects.all().delete()
    response = labeler_client.get(reverse("movie", args=[world["movies"]["Long Road"].pk]))
    assert "No production model yet" in response.content.decode()


def test_relabel_is_atomic_and_audited_and_refreshes_the_queue(labeler_client, labeler, world):
    movie = world["movies"]["Laugh Track"]
    genres = world["genres"]
    response = labeler_client.post(
        reverse("relabel", args=[movie.pk]),
        {"genres": [genres["Comedy"].pk, genres["Romance"].pk], "reason": "it is a romcom", "label_version": 1},
        follow=True,
    )
    assert response.status_code == 200
    assert set(movie.labels.values_list("genre__name", flat=True)) == {"Comedy", "Romance"}
    change = LabelChange.objects.filter(movie=movie, origin=LabelOrigin.PERSON).get()
    assert (change.genre.name, change.action, change.user, change.reason) == (
        "Romance",
        "added",
        labeler,
        "it is a romcom",
    )
    movie.refresh_from_db()
    assert movie.label_source == LabelOrigin.PERSON
    assert not Prediction.objects.get(movie=movie).disagrees  # the prediction reflects the new labels
    html = response.content.decode()
    assert "it is a romcom" in html and "lena" in html


def test_relabel_rejects_unknown_genre(labeler_client, world):
    movie = world["movies"]["Long Road"]
    response = labeler_client.post(
        reverse("relabel", args=[movie.pk]), {"genres": ["99999"], "label_version": 1}, follow=True
    )
    assert "Labels not saved" in response.content.decode()
    assert list(movie.labels.values_list("genre__name", flat=True)) == ["Drama"]


def test_relabel_without_a_label_version_saves_nothing(labeler_client, world):
    movie = world["movies"]["Long Road"]
    response = labeler_client.post(
        reverse("relabel", args=[movie.pk]), {"genres": [world["genres"]["Comedy"].pk]}, follow=True
    )
    assert "Labels not saved" in response.content.decode() and "reload" in response.content.decode()
    assert list(movie.labels.values_list("genre__name", flat=True)) == ["Drama"]


def test_relabel_from_an_older_page_is_refused_and_shows_the_current_labels(labeler_client, staff, world):
    from catalog.labels import change_labels

    movie, genres = world["movies"]["Laugh Track"], world["genres"]
    page = labeler_client.get(reverse("movie", args=[movie.pk]))
    html = page.content.decode()
    assert 'name="label_version" value="1"' in html and "version 1" in html
    # Someone else adds Drama while the form is open.
    change_labels(movie, add=[genres["Drama"]], user=staff)
    response = labeler_client.post(
        reverse("relabel", args=[movie.pk]),
        {
            "genres": [genres["Comedy"].pk, genres["Romance"].pk],
            "reason": "romcom",
            "label_version": 1,
            "next": "/?genre=comedy",
        },
    )
    assert response.status_code == 409
    assert set(movie.labels.values_list("genre__name", flat=True)) == {"Comedy", "Drama"}  # nothing overwritten
    assert not LabelChange.objects.filter(movie=movie, user__username="lena").exists()
    html = response.content.decode()
    assert 'id="label-conflict"' in html
    assert "They are now: Comedy, Drama." in html and "You asked for: Comedy, Romance." in html
    # The form starts from the current labels and version, keeps the reason and where to go back.
    assert 'name="label_version" value="2"' in html and 'value="romcom"' in html
    assert 'name="next" value="/?genre=comedy"' in html
    checked = {genre for genre in ("Comedy", "Drama", "Romance") if f'value="{genres[genre].pk}" checked' in html}
    assert checked == {"Comedy", "Drama"}
    # Redone from that page, it is saved.
    redo = labeler_client.post(
        reverse("relabel", args=[movie.pk]),
        {"genres": [genres["Comedy"].pk, genres["Romance"].pk], "reason": "romcom", "label_version": 2},
    )
    assert redo.status_code == 302
    assert set(movie.labels.values_list("genre__name", flat=True)) == {"Comedy", "Romance"}
    movie.refresh_from_db()
    assert movie.label_version == 3


def test_insight_page(labeler_client, world):
    response = labeler_client.get("/insight/")
    assert response.status_code == 200
    insight = response.context["insight"]
    counts = {row["genre"].name: row["count"] for row in insight["distribution"]}
    assert counts == {"Drama": 2, "Comedy": 2, "Action": 1, "Horror": 1, "Romance": 1}
    names = [label["name"] for label in insight["heatmap"]["labels"]]
    assert sorted(names) == sorted(counts)
    # Hierarchical ordering puts the co-occurring pair Drama/Romance side by side.
    assert abs(names.index("Drama") - names.index("Romance")) == 1
    assert [d["label"] for d in insight["decades"]] == ["1980s", "1990s", "2000s", "2010s"]
    assert sum(row["count"] for row in insight["length_hist"]) == 5


def test_insight_with_1500_genres_stays_bounded(labeler_client, world, settings, django_assert_max_num_queries):
    settings.GENREWEB_INSIGHT_MAX_GENRES = 30
    genres = Genre.objects.bulk_create([Genre(name=f"Garbage {i:04d}", slug=f"garbage-{i:04d}") for i in range(1500)])
    movies = list(Movie.objects.all())
    MovieGenre.objects.bulk_create(
        [MovieGenre(movie=movies[i % len(movies)], genre=genre) for i, genre in enumerate(genres)]
    )
    with django_assert_max_num_queries(25):
        response = labeler_client.get("/insight/")
    assert response.status_code == 200
    insight = response.context["insight"]
    assert insight["total_genres"] == 1505 and insight["shown_genres"] == 30
    assert len(insight["distribution"]) == 30
    assert len(insight["heatmap"]["labels"]) == 30 and len(insight["heatmap"]["cells"]) == 30 * 30
    assert len(insight["share_rows"]) == 30
    # The most used genres are the ones shown.
    assert {"Drama", "Comedy"} <= {row["genre"].name for row in insight["distribution"]}
    assert b"the 30 most used of 1,505 genres" in response.content
