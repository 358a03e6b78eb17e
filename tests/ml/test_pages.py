"""Model pages: review queues and accepting suggestions, model reports and plots, comparing and
promoting versions, the predict page."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.urls import reverse

from catalog.models import LabelChange, LabelOrigin
from ml.models import Prediction

pytestmark = pytest.mark.django_db


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


@pytest.mark.parametrize("vs", ["abc", "1.5", "-1", "99999999999999999999", "١"])
def test_f1_plot_with_a_bad_vs_is_a_400(labeler_client, world, vs):
    version = world["version"]
    response = labeler_client.get(reverse("ml:plot", args=[version.pk, "f1"]), {"vs": vs})
    assert response.status_code == 400


def test_f1_plot_against_another_version_still_works(labeler_client, world):
    version = world["version"]
    response = labeler_client.get(reverse("ml:plot", args=[version.pk, "f1"]), {"vs": str(version.pk)})
    assert response.status_code == 200 and response["Content-Type"] == "image/png"
