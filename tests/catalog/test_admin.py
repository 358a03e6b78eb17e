import pytest
from django.urls import reverse

from catalog.labels import set_labels
from catalog.models import Genre, ImportRun, LabelChange, LabelOrigin, Movie, MovieGenre, Poster
from catalog.preprocessing import preprocess_posters

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client_logged_in(client, django_user_model):
    user = django_user_model.objects.create_superuser("boss", "boss@example.com", "pw-long-enough-123")
    client.force_login(user)
    client.user = user
    return client


@pytest.fixture
def catalog_with_posters(movie_with_poster, make_image):
    drama, comedy = Genre.objects.create(name="Drama"), Genre.objects.create(name="Comedy")
    movies = []
    for n in range(6):
        movie, _ = movie_with_poster(make_image(100, 150, seed=n, gray=n == 0), title=f"Film {n}", year=1990 + n)
        set_labels(movie, [drama, comedy] if n % 2 else [drama], origin=LabelOrigin.IMPORTED)
        movies.append(movie)
    movie_with_poster(None, title="No picture")
    Movie.objects.create(title="No poster row", source="manual")
    preprocess_posters()
    return movies


def test_movie_changelist_shows_thumbnails_without_n_plus_one(
    admin_client_logged_in, catalog_with_posters, django_assert_max_num_queries, movie_with_poster, make_image
):
    url = reverse("admin:catalog_movie_changelist")
    with django_assert_max_num_queries(12) as captured:
        response = admin_client_logged_in.get(url)
    assert response.status_code == 200
    html = response.content.decode()
    derivative = Poster.objects.get(movie=catalog_with_posters[0]).derivative.url
    assert f'src="{derivative}"' in html
    assert html.count('alt="poster"') == 6  # the two movies without a poster file show a dash
    assert "Drama, Comedy" in html or "Comedy, Drama" in html
    baseline = len(captured)
    # Twice the rows, same number of queries: nothing is fetched per row.
    drama = Genre.objects.get(name="Drama")
    for n in range(8):
        movie, _ = movie_with_poster(make_image(seed=20 + n), title=f"More {n}")
        set_labels(movie, [drama], origin=LabelOrigin.IMPORTED)
    with django_assert_max_num_queries(baseline):
        assert admin_client_logged_in.get(url).status_code == 200


@pytest.mark.parametrize(
    "query, expected, absent",
    [
        ("q=Film+3", ["Film 3"], ["Film 4"]),
        ("grayscale=yes", ["Film 0"], ["Film 1"]),
        ("poster_status=missing", ["No picture"], ["Film 1"]),
        ("poster_status=none", ["No poster row"], ["Film 1"]),
        ("decade=1990", ["Film 5"], ["No poster row"]),
        ("missing_genres__exact=1", ["No picture"], ["Film 2"]),
        ("source__exact=manual", ["No poster row"], ["Film 2"]),
        ("label_source__exact=imported", ["Film 2"], []),
    ],
)
def test_movie_changelist_search_and_filters(admin_client_logged_in, catalog_with_posters, query, expected, absent):
    response = admin_client_logged_in.get(reverse("admin:catalog_movie_changelist") + "?" + query)
    assert response.status_code == 200
    html = response.content.decode()
    for title in expected:
        assert f">{title}<" in html
    for title in absent:
        assert f">{title}<" not in html


def test_movie_change_page_shows_poster_labels_and_history(admin_client_logged_in, catalog_with_posters):
    movie = catalog_with_posters[1]
    response = admin_client_logged_in.get(reverse("admin:catalog_movie_change", args=[movie.pk]))
    assert response.status_code == 200
    html = response.content.decode()
    assert Poster.objects.get(movie=movie).derivative.url in html
    assert "Label history (append-only)" in html
    assert "Current labels" in html
    assert "Imported" in html


def test_movie_change_page_relabels_through_set_labels(admin_client_logged_in, catalog_with_posters):
    movie = catalog_with_posters[0]
    drama, comedy = Genre.objects.get(name="Drama"), Genre.objects.get(name="Comedy")
    url = reverse("admin:catalog_movie_change", args=[movie.pk])
    form = admin_client_logged_in.get(url).context["adminform"].form
    data = {name: value for name, value in form.initial.items() if value is not None and name in form.fields}
    data.update(
        {
            "title": movie.title,
            "overview": movie.overview,
            "year": movie.year,
            "source": movie.source,
            "source_id": movie.source_id,
            "genre_labels": [comedy.pk],
            "label_reason": "it is funny",
            "labels-TOTAL_FORMS": "1",
            "labels-INITIAL_FORMS": "1",
            "labels-MIN_NUM_FORMS": "0",
            "labels-MAX_NUM_FORMS": "1000",
            "label_history-TOTAL_FORMS": "1",
            "label_history-INITIAL_FORMS": "1",
            "label_history-MIN_NUM_FORMS": "0",
            "label_history-MAX_NUM_FORMS": "1000",
        }
    )
    data = {k: v for k, v in data.items() if v is not None}
    response = admin_client_logged_in.post(url, data)
    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else response
    movie.refresh_from_db()
    assert list(movie.genres.values_list("name", flat=True)) == ["Comedy"]
    assert movie.label_source == LabelOrigin.PERSON
    entries = set(
        LabelChange.objects.filter(movie=movie, origin=LabelOrigin.PERSON).values_list(
            "genre__name", "action", "user__username", "reason"
        )
    )
    assert entries == {("Comedy", "added", "boss", "it is funny"), ("Drama", "removed", "boss", "it is funny")}
    assert drama.pk not in set(MovieGenre.objects.filter(movie=movie).values_list("genre_id", flat=True))


def test_movie_change_page_from_an_older_label_version_keeps_the_newer_labels(
    admin_client_logged_in, catalog_with_posters, django_user_model
):
    movie = catalog_with_posters[0]
    comedy, horror = Genre.objects.get(name="Comedy"), Genre.objects.create(name="Horror")
    url = reverse("admin:catalog_movie_change", args=[movie.pk])
    form = admin_client_logged_in.get(url).context["adminform"].form
    assert form.fields["labels_from_version"].initial == movie.label_version
    # A labeler adds Horror while the admin form is open.
    set_labels(movie, [*movie.genres.all(), horror], user=django_user_model.objects.create_user("lena"))
    response = admin_client_logged_in.post(
        url,
        {
            "title": "Renamed",
            "overview": movie.overview,
            "year": movie.year,
            "source": movie.source,
            "source_id": movie.source_id,
            "genre_labels": [comedy.pk],
            "labels_from_version": form.fields["labels_from_version"].initial,
            "labels-TOTAL_FORMS": "0",
            "labels-INITIAL_FORMS": "0",
            "labels-MIN_NUM_FORMS": "0",
            "labels-MAX_NUM_FORMS": "1000",
            "label_history-TOTAL_FORMS": "0",
            "label_history-INITIAL_FORMS": "0",
            "label_history-MIN_NUM_FORMS": "0",
            "label_history-MAX_NUM_FORMS": "1000",
        },
        follow=True,
    )
    assert "Labels not saved" in response.content.decode()
    movie.refresh_from_db()
    assert movie.title == "Renamed"  # the other fields are saved
    assert set(movie.genres.values_list("name", flat=True)) == {"Drama", "Horror"}
    assert movie.label_source == LabelOrigin.PERSON and movie.label_version == 2
    assert not LabelChange.objects.filter(movie=movie, user__username="boss").exists()


def test_saving_a_movie_without_label_change_keeps_provenance(admin_client_logged_in, catalog_with_posters):
    movie = catalog_with_posters[2]
    url = reverse("admin:catalog_movie_change", args=[movie.pk])
    drama = Genre.objects.get(name="Drama")
    response = admin_client_logged_in.post(
        url,
        {
            "title": "Renamed",
            "overview": movie.overview,
            "year": movie.year,
            "source": movie.source,
            "source_id": movie.source_id,
            "genre_labels": [drama.pk],
            "labels-TOTAL_FORMS": "1",
            "labels-INITIAL_FORMS": "1",
            "labels-MIN_NUM_FORMS": "0",
            "labels-MAX_NUM_FORMS": "1000",
            "label_history-TOTAL_FORMS": "1",
            "label_history-INITIAL_FORMS": "1",
            "label_history-MIN_NUM_FORMS": "0",
            "label_history-MAX_NUM_FORMS": "1000",
        },
    )
    assert response.status_code == 302
    movie.refresh_from_db()
    assert movie.title == "Renamed"
    assert movie.label_source == LabelOrigin.IMPORTED
    assert not LabelChange.objects.filter(movie=movie, origin=LabelOrigin.PERSON).exists()


def test_poster_admin_list_and_detail(admin_client_logged_in, catalog_with_posters, django_assert_max_num_queries):
    with django_assert_max_num_queries(8):
        response = admin_client_logged_in.get(reverse("admin:catalog_poster_changelist") + "?status__exact=ok")
    assert response.status_code == 200
    assert response.content.decode().count('alt="poster"') == 6
    poster = Poster.objects.get(movie=catalog_with_posters[0])
    response = admin_client_logged_in.get(reverse("admin:catalog_poster_change", args=[poster.pk]))
    assert response.status_code == 200
    html = response.content.decode()
    assert poster.derivative.url in html and poster.checksum in html
    assert admin_client_logged_in.get(reverse("admin:catalog_poster_add")).status_code == 403


def test_poster_thumbnail_falls_back_to_original(admin_client_logged_in, movie_with_poster, make_image):
    _, poster = movie_with_poster(make_image())  # not preprocessed: no derivative yet
    response = admin_client_logged_in.get(reverse("admin:catalog_poster_changelist"))
    assert poster.original.url in response.content.decode()


def test_poster_reprocess_action(admin_client_logged_in, movie_with_poster, make_image):
    _, poster = movie_with_poster(make_image())
    response = admin_client_logged_in.post(
        reverse("admin:catalog_poster_changelist"),
        {"action": "reprocess", "_selected_action": [poster.pk]},
        follow=True,
    )
    assert response.status_code == 200
    poster.refresh_from_db()
    assert poster.status == Poster.Status.OK and poster.derivative
    assert "Re-processed 1 posters" in response.content.decode()


def test_label_history_is_read_only_even_for_superusers(admin_client_logged_in, catalog_with_posters):
    entry = LabelChange.objects.first()
    client = admin_client_logged_in
    assert client.get(reverse("admin:catalog_labelchange_changelist")).status_code == 200
    detail = client.get(reverse("admin:catalog_labelchange_change", args=[entry.pk]))
    assert detail.status_code == 200 and 'name="_save"' not in detail.content.decode()
    assert client.get(reverse("admin:catalog_labelchange_add")).status_code == 403
    assert client.get(reverse("admin:catalog_labelchange_delete", args=[entry.pk])).status_code == 403
    assert client.post(reverse("admin:catalog_labelchange_change", args=[entry.pk]), {"reason": "x"}).status_code == 403
    bulk = client.post(
        reverse("admin:catalog_labelchange_changelist"),
        {"action": "delete_selected", "_selected_action": [entry.pk], "post": "yes"},
    )
    assert bulk.status_code in (200, 302)
    assert LabelChange.objects.filter(pk=entry.pk).exists()


def test_current_labels_admin_is_read_only(admin_client_logged_in, catalog_with_posters):
    label = MovieGenre.objects.first()
    client = admin_client_logged_in
    assert client.get(reverse("admin:catalog_moviegenre_changelist")).status_code == 200
    assert client.get(reverse("admin:catalog_moviegenre_add")).status_code == 403
    assert client.get(reverse("admin:catalog_moviegenre_delete", args=[label.pk])).status_code == 403


def test_import_run_admin_is_read_only_and_shows_skipped_rows(admin_client_logged_in):
    run = ImportRun.objects.create(
        kind="csv",
        status=ImportRun.Status.SUCCEEDED,
        created=3,
        skipped=2,
        skipped_rows=[{"row": 4, "reason": "year is not a number: 'abc'"}, {"row": 9, "reason": "<b>no title</b>"}],
        warnings=["not UTF-8, decoded as cp1252"],
    )
    client = admin_client_logged_in
    assert client.get(reverse("admin:catalog_importrun_changelist")).status_code == 200
    response = client.get(reverse("admin:catalog_importrun_change", args=[run.pk]))
    html = response.content.decode()
    assert response.status_code == 200
    assert "<td>4</td><td>year is not a number: &#x27;abc&#x27;</td>" in html
    assert "&lt;b&gt;no title&lt;/b&gt;" in html  # row text is escaped
    assert "decoded as cp1252" in html
    assert 'name="_save"' not in html
    assert client.get(reverse("admin:catalog_importrun_add")).status_code == 403


def test_genre_admin_counts_movies(admin_client_logged_in, catalog_with_posters):
    response = admin_client_logged_in.get(reverse("admin:catalog_genre_changelist"))
    assert response.status_code == 200
    html = response.content.decode()
    assert 'class="field-movie_count">6<' in html and 'class="field-movie_count">3<' in html


def test_import_run_admin_caps_a_huge_skipped_list(admin_client_logged_in, monkeypatch):
    import catalog.admin

    monkeypatch.setattr(catalog.admin, "SKIPPED_ROWS_SHOWN", 3)
    rows = [{"row": n, "reason": f"bad row {n}"} for n in range(1, 11)]
    run = ImportRun.objects.create(kind="csv", skipped=10, skipped_rows=rows)
    html = admin_client_logged_in.get(reverse("admin:catalog_importrun_change", args=[run.pk])).content.decode()
    assert "bad row 3<" in html and "bad row 4<" not in html
    assert "… and 7 more rows not shown" in html
