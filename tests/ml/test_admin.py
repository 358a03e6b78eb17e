"""Admin pages for ML records render, and model versions stay read-only there."""

import pytest
from django.urls import reverse

from ml.models import DatasetSnapshot, Evaluation, GenreMetric, ModelVersion, Prediction
from ml.services.registry import production_version

pytestmark = pytest.mark.django_db


@pytest.fixture
def records(make_movie):
    movie = make_movie(("Drama",))
    snapshot = DatasetSnapshot.objects.create(content_hash="a" * 64, genres=["Drama"], n_members=1)
    snapshot.members.create(movie=movie, split="train", labels=[0])
    version = ModelVersion.objects.create(
        snapshot=snapshot,
        config_name="tfidf-linear",
        genres=["Drama"],
        thresholds=[0.5],
        artifact_path="models/x",
        artifact_files=["config.json"],
        checksum="b" * 64,
    )
    evaluation = Evaluation.objects.create(model_version=version, snapshot=snapshot, split="test", micro_f1=0.5)
    GenreMetric.objects.create(
        evaluation=evaluation,
        model_version=version,
        snapshot=snapshot,
        split="test",
        genre="Drama",
        f1=0.5,
        precision=0.5,
        recall=0.5,
        support=1,
    )
    Prediction.objects.create(movie=movie, model_version=version, scores={"Drama": 0.7}, predicted=["Drama"])
    return version


def test_changelists_and_detail_pages_render(admin_client, records):
    for model in (
        "datasetsnapshot",
        "snapshotmember",
        "trainingrun",
        "modelversion",
        "modelalias",
        "aliaschange",
        "evaluation",
        "genremetric",
        "prediction",
    ):
        response = admin_client.get(reverse(f"admin:ml_{model}_changelist"))
        assert response.status_code == 200, model
    response = admin_client.get(reverse("admin:ml_modelversion_change", args=[records.pk]))
    assert response.status_code == 200
    assert admin_client.get(reverse("admin:ml_modelversion_add")).status_code == 403


def test_admin_edits_only_name_and_promotes(admin_client, records):
    url = reverse("admin:ml_modelversion_change", args=[records.pk])
    admin_client.post(
        url,
        {
            "name": "best so far",
            "notes": "",
            "checksum": "c" * 64,
            "evaluations-TOTAL_FORMS": 0,
            "evaluations-INITIAL_FORMS": 1,
        },
    )
    records.refresh_from_db()
    assert records.name == "best so far" and records.checksum == "b" * 64
    admin_client.post(
        reverse("admin:ml_modelversion_changelist"),
        {"action": "promote_to_production", "_selected_action": [records.pk]},
    )
    assert production_version() == records
