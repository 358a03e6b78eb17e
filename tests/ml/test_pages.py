"""Model pages: model reports and plots, comparing and promoting versions, the predict page
(the review queues: tests/ml/test_audit_review.py and tests/ml/test_removed_queues.py)."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.urls import reverse

pytestmark = pytest.mark.django_db


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


def test_compare_two_versions(labeler_client, world, candidate_version):
    a, b = world["version"], candidate_version
    response = labeler_client.get(reverse("ml:compare") + f"?a={a.pk}&b={b.pk}")
    assert response.status_code == 200
    assert response.context["headline"][0]["a"] == 0.7 and response.context["headline"][0]["b"] is None
    assert labeler_client.get(reverse("ml:compare") + "?a=x").status_code == 302


def test_promote_is_staff_only(labeler_client, client, staff, world, candidate_version):
    from ml.services.registry import production_version

    a, b = world["version"], candidate_version
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
