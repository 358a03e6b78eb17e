"""API numbers people read: scores, thresholds and metrics without float noise."""

from __future__ import annotations

import numpy as np
import pytest

from tests.factories import api_client_for

pytestmark = pytest.mark.django_db

NOISY = float(np.float32(0.49))  # 0.49000000953674316, as a threshold tuned in float32 is stored


def test_scores_thresholds_and_metrics_come_out_rounded(world, labeler):
    from ml.models import Evaluation, GenreMetric, ModelVersion, Prediction

    old = world["version"]
    version = ModelVersion.objects.create(  # as a model tuned in float32 is stored
        name="noisy v2",
        snapshot=old.snapshot,
        config_name=old.config_name,
        genres=old.genres,
        thresholds=[NOISY] * len(old.genres),
        config={"lr": 3e-05, "weight_decay": 0.000123456},
        artifact_path="models/none",
        checksum="e" * 64,
    )
    evaluation = Evaluation.objects.create(
        model_version=version,
        snapshot=old.snapshot,
        split="test",
        n_examples=5,
        micro_f1=1 / 3,
        macro_f1=0.5,
        metrics={"ece": 2 / 3, "n": 5},
    )
    GenreMetric.objects.bulk_create(
        [
            GenreMetric(
                evaluation=evaluation,
                model_version=version,
                snapshot=old.snapshot,
                split="test",
                genre=name,
                threshold=NOISY,
                f1=0.123456789,
                precision=0.5,
                recall=0.5,
                support=3,
                tp=1,
                fp=1,
                fn=1,
                tn=2,
            )
            for name in old.genres
        ]
    )
    movie = world["movies"]["Long Road"]
    Prediction.objects.create(
        movie=movie,
        model_version=version,
        scores={"Drama": float(np.float32(0.97))},
        predicted=["Drama"],
        top_genre="Drama",
        top_score=1 / 7,
        uncertainty=0.1,
    )
    api = api_client_for(labeler)

    response = api.get(f"/api/model-versions/{version.pk}/")
    assert "0.49000000953674316" not in response.content.decode()
    detail = response.json()
    assert detail["thresholds"] == [0.49] * len(version.genres)
    assert detail["config"] == {"lr": 3e-05, "weight_decay": 0.000123456}  # configs are not rounded
    test_eval = detail["evaluations"][0]
    assert test_eval["micro_f1"] == 0.3333 and test_eval["metrics"] == {"ece": 0.6667, "n": 5}
    assert {m["threshold"] for m in test_eval["genre_metrics"]} == {0.49}
    assert {m["f1"] for m in test_eval["genre_metrics"]} == {0.1235}
    listing = api.get("/api/model-versions/").json()["results"]
    assert [v["headline"]["micro_f1"] for v in listing if v["id"] == version.pk] == [0.3333]

    predictions = api.get(f"/api/predictions/?movie={movie.pk}").json()["results"]
    prediction = next(p for p in predictions if p["model_version"] == version.pk)
    assert prediction["scores"] == {"Drama": 0.97} and prediction["top_score"] == 0.1429


def test_adhoc_prediction_comes_out_rounded(world, labeler, monkeypatch):
    import ml.services.inference

    def predict_raw(overview, poster, version, **inputs):  # the model's raw output, as the service returns it
        return {
            "model_version": version.pk,
            "model_name": str(version),
            "genres": ["Drama"],
            "scores": [{"genre": "Drama", "score": float(np.float32(0.97)), "threshold": NOISY, "predicted": True}],
            "uncertainty": 1 / 3,
            "used_text": True,
            "used_poster": False,
            "inputs": "all",
            "ignored": [],
            "calibrated": True,
        }

    monkeypatch.setattr(ml.services.inference, "predict_raw", predict_raw)
    body = api_client_for(labeler).post("/api/predict/", {"overview": "a long road"}, format="json").json()
    assert body["scores"] == [{"genre": "Drama", "score": 0.97, "threshold": 0.49, "predicted": True}]
    assert body["uncertainty"] == 0.3333 and body["model_version"] == world["version"].pk
