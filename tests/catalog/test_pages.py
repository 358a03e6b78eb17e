"""Server-rendered pages: roles, catalog filters and query counts, movie page and relabel,
review queues, model reports, predict validation, jobs pages."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.urls import reverse

from catalog.models import LabelChange, LabelOrigin, Movie, MovieGenre
from ml.models import ModelAlias, Prediction
from workers.models import Job

pytestmark = pytest.mark.django_db

READ_PAGES = ["/", "/?view=list", "/insight/", "/models/", "/models/review/disagrees/", "/models/predict/", "/jobs/"]


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
    assert "disagrees</span>" in html and "unsure</span>" in html


@pytest.mark.parametrize(
    "query, expected",
    [
        ("q=laugh", {"Laugh Track"}),
        ("q=story+of+long", {"Long Road"}),
        ("genre=drama", {"Long Road", "Quiet Years"}),
        ("year_min=2000&year_max=2015", {"Night Shift", "Long Road"}),
        ("model=disagrees", {"Laugh Track", "Night Shift"}),
        ("model=unsure", {"Edge Case"}),
        ("genre=comedy&model=disagrees", {"Laugh Track", "Night Shift"}),
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
    assert not Prediction.objects.get(movie=movie).disagrees  # the queue reflects the new labels
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


def test_review_queue_ranked_with_counts(labeler_client, world):
    response = labeler_client.get(reverse("ml:review", args=["disagrees"]))
    titles = [p.movie.title for p in response.context["page"].object_list]
    assert titles == ["Laugh Track", "Night Shift"] or titles == ["Night Shift", "Laugh Track"]
    disagreements = [p.disagreement for p in response.context["page"].object_list]
    assert disagreements == sorted(disagreements, reverse=True)
    assert response.context["page"].paginator.count == 2
    unsure = labeler_client.get(reverse("ml:review", args=["unsure"]))
    assert [p.movie.title for p in unsure.context["page"].object_list] == ["Edge Case"]
    assert labeler_client.get(reverse("ml:review", args=["nonsense"])).status_code == 404


def test_accept_suggestion_in_one_action_keeps_the_place(labeler_client, labeler, world):
    first = labeler_client.get(reverse("ml:review_item", args=["disagrees", 1]))
    nav = first.context["queue_nav"]
    assert (nav["position"], nav["total"], nav["prev"]) == (1, 2, None)
    prediction = nav["prediction"]
    response = labeler_client.post(reverse("ml:accept", args=[prediction.pk]), {"next": nav["here"]})
    assert response.status_code == 302 and response["Location"] == nav["here"]
    movie = prediction.movie
    changes = LabelChange.objects.filter(movie=movie, origin=LabelOrigin.SUGGESTION)
    assert changes.count() == len(prediction.suggested_add) + len(prediction.suggested_remove)
    assert all(c.user == labeler for c in changes)
    # The same position now shows the other movie, one left.
    after = labeler_client.get(nav["here"])
    assert after.context["queue_nav"]["total"] == 1
    assert after.context["movie"].pk != movie.pk


def test_accepting_the_last_item_returns_to_the_empty_queue(labeler_client, world):
    for _ in range(2):
        nav = labeler_client.get(reverse("ml:review_item", args=["disagrees", 1])).context["queue_nav"]
        labeler_client.post(reverse("ml:accept", args=[nav["prediction"].pk]), {"next": nav["here"]})
    response = labeler_client.get(nav["here"], follow=True)
    assert response.redirect_chain[-1][0] == reverse("ml:review", args=["disagrees"])
    assert "Nothing left to review" in response.content.decode()


def test_accept_single_genre_of_a_suggestion(labeler_client, world):
    prediction = Prediction.objects.get(movie=world["movies"]["Night Shift"])
    assert prediction.suggested_remove == ["Comedy"]
    labeler_client.post(reverse("ml:accept", args=[prediction.pk]), {"genre": "Comedy"})
    assert list(prediction.movie.labels.values_list("genre__name", flat=True)) == ["Horror"]
    response = labeler_client.post(reverse("ml:accept", args=[prediction.pk]), {"genre": "Drama"}, follow=True)
    assert "not part of this suggestion" in response.content.decode()


def test_review_item_navigation(labeler_client, world):
    second = labeler_client.get(reverse("ml:review_item", args=["disagrees", 2]))
    nav = second.context["queue_nav"]
    assert nav["prev"].endswith("/1/") and nav["next"] is None
    # Past the end clamps to the last item instead of failing.
    assert labeler_client.get(reverse("ml:review_item", args=["disagrees", 9])).context["queue_nav"]["position"] == 2


def test_models_pages_and_plots(labeler_client, world):
    version = world["version"]
    listing = labeler_client.get(reverse("ml:models"))
    assert listing.status_code == 200 and "tiny v1" in listing.content.decode()
    detail = labeler_client.get(reverse("ml:model", args=[version.pk]))
    html = detail.content.decode()
    assert detail.status_code == 200 and "production" in html
    assert [r.genre for r in detail.context["genre_rows"]] == sorted(["Action", "Comedy", "Drama", "Horror", "Romance"])
    assert 'id="promote"' not in html  # labelers cannot promote
    for kind in ("f1", "pr", "confusion", "calibration", "training"):
        response = labeler_client.get(reverse("ml:plot", args=[version.pk, kind]))
        assert response.status_code == 200 and response["Content-Type"] == "image/png"
        assert response.content[:8] == b"\x89PNG\r\n\x1a\n"
    assert labeler_client.get(reverse("ml:plot", args=[version.pk, "nope"])).status_code == 404


def test_plots_follow_a_re_evaluation(labeler_client, world):
    version, evaluation = world["version"], world["evaluation"]
    url = reverse("ml:plot", args=[version.pk, "calibration"])
    first = labeler_client.get(url).content
    assert labeler_client.get(url).content == first  # cached
    evaluation.metrics = {**evaluation.metrics, "ece": 0.2}
    evaluation.curves = {**evaluation.curves, "calibration": {**evaluation.curves["calibration"], "ece": 0.2}}
    evaluation.save()  # re-evaluating updates the row in place
    assert labeler_client.get(url).content != first


def test_compare_two_versions(labeler_client, world):
    from ml.models import ModelVersion

    a = world["version"]
    b = ModelVersion.objects.create(
        name="tiny v2",
        snapshot=a.snapshot,
        genres=a.genres,
        thresholds=a.thresholds,
        artifact_path="models/none2",
        checksum="d" * 64,
    )
    response = labeler_client.get(reverse("ml:compare") + f"?a={a.pk}&b={b.pk}")
    assert response.status_code == 200
    assert response.context["headline"][0]["a"] == 0.7 and response.context["headline"][0]["b"] is None
    assert labeler_client.get(reverse("ml:compare") + "?a=x").status_code == 302


def test_promote_is_staff_only(labeler_client, client, staff, world):
    from ml.models import ModelVersion
    from ml.services.registry import production_version

    a = world["version"]
    b = ModelVersion.objects.create(
        name="tiny v2",
        snapshot=a.snapshot,
        genres=a.genres,
        thresholds=a.thresholds,
        artifact_path="models/none2",
        checksum="d" * 64,
    )
    assert labeler_client.post(reverse("ml:promote", args=[b.pk])).status_code == 403
    assert production_version() == a
    client.force_login(staff)
    assert client.post(reverse("ml:promote", args=[b.pk])).status_code == 302
    assert production_version() == b


def test_predict_page_rejects_non_images(labeler_client, world):
    from django.core.files.uploadedfile import SimpleUploadedFile

    response = labeler_client.post(
        reverse("ml:predict"),
        {
            "overview": "",
            "poster": SimpleUploadedFile("x.jpg", b"not an image at all", content_type="image/jpeg"),
        },
    )
    assert response.status_code == 200
    assert "Not a usable image" in str(response.context["form"].errors["poster"])
    empty = labeler_client.post(reverse("ml:predict"), {"overview": "  "})
    assert "Give an overview, a poster, or both." in str(empty.context["form"].non_field_errors())


def test_predict_page_with_a_missing_artifact_says_so(labeler_client, world):
    response = labeler_client.post(reverse("ml:predict"), {"overview": "a ghost story"}, follow=True)
    assert response.status_code == 200
    page = response.content.decode()
    assert "cannot be used" in page and str(settings.MEDIA_ROOT) not in page  # no server paths


def test_jobs_page_roles(labeler_client, world):
    response = labeler_client.get(reverse("workers:jobs"))
    assert response.status_code == 200 and response.context["form"] is None
    assert labeler_client.post(reverse("workers:jobs"), {"kind": "preprocess"}).status_code == 403
    assert not Job.objects.exists()


def test_staff_queues_a_job_and_sees_its_status(staff_client, django_capture_on_commit_callbacks, world, monkeypatch):
    sent = []
    monkeypatch.setattr("workers.jobs._send_job_message", lambda *args: sent.append(args))
    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(reverse("workers:jobs"), {"kind": "preprocess"})
    job = Job.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse("workers:job", args=[job.pk])
    assert sent and sent[0][0] == job.pk
    status = staff_client.get(reverse("workers:status", args=[job.pk])).json()
    assert (status["status"], status["progress"], status["finished"]) == ("queued", 0.0, False)
    detail = staff_client.get(reverse("workers:job", args=[job.pk]))
    assert 'id="job-progress"' in detail.content.decode()
    many = staff_client.get(reverse("workers:statuses") + f"?ids={job.pk},abc").json()
    assert [j["id"] for j in many["jobs"]] == [job.pk]


def test_queue_form_reports_parameter_errors(staff_client, world):
    response = staff_client.post(reverse("workers:jobs"), {"kind": "import", "source": "csv", "path": "/no/such/dir"})
    assert response.status_code == 200
    # Outside GENREWEB_IMPORT_ROOTS: refused without saying whether it exists.
    assert "outside the import folders" in str(response.context["form"].errors["path"])
    train = staff_client.post(reverse("workers:jobs"), {"kind": "train", "config": "tfidf-linear"})
    assert "snapshot_id" in train.context["form"].errors
    assert not Job.objects.exists()


def test_queue_evaluate_defaults_to_the_production_model(staff_client, world, monkeypatch):
    monkeypatch.setattr("workers.jobs._send_job_message", lambda *args: None)
    staff_client.post(reverse("workers:jobs"), {"kind": "evaluate"})
    assert Job.objects.get().params["model_version_id"] == world["version"].pk


def test_cancel_and_retry_from_the_page(staff_client, labeler_client, world, monkeypatch):
    monkeypatch.setattr("workers.jobs._send_job_message", lambda *args: None)
    monkeypatch.setattr("workers.jobs._revoke", lambda ids: None)
    from workers.jobs import enqueue

    job = enqueue("preprocess", {}, None)
    assert labeler_client.post(reverse("workers:cancel", args=[job.pk])).status_code == 403
    staff_client.post(reverse("workers:cancel", args=[job.pk]))
    job.refresh_from_db()
    assert job.status == Job.Status.CANCELLED
    response = staff_client.post(reverse("workers:retry", args=[job.pk]))
    retried = Job.objects.exclude(pk=job.pk).get()
    assert retried.retry_of == job and response["Location"] == reverse("workers:job", args=[retried.pk])
    # A queued job cannot be retried; the page says why.
    again = staff_client.post(reverse("workers:retry", args=[retried.pk]), follow=True)
    assert "can be retried" in again.content.decode()
