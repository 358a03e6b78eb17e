"""Prediction upserts: idempotent, and safe when two writers upsert the same movies at once."""

import threading
from unittest import mock

import numpy as np
import pytest
from django.db import connection

from ml.models import DatasetSnapshot, ModelVersion, Prediction
from ml.services.inference import predict_movies


def _version():
    snapshot = DatasetSnapshot.objects.create(content_hash="c" * 64, genres=["Action", "Drama"])
    return ModelVersion.objects.create(
        snapshot=snapshot,
        genres=["Action", "Drama"],
        thresholds=[0.5, 0.5],
        artifact_path="models/t",
        artifact_files=[],
        checksum="d" * 64,
    )


class ScoringModel:
    """Stands in for the version's trained model: scores from a table by movie id, else random."""

    def __init__(self, version, scores: dict[int, np.ndarray] | None = None):
        self.genres, self.thresholds = version.genres, np.array(version.thresholds)
        self.scores = scores

    def predict(self, examples):
        if self.scores is None:
            probs = np.random.default_rng().random((len(examples), len(self.genres)))
        else:
            probs = np.array([self.scores[int(e.key)] for e in examples])
        return probs, probs >= self.thresholds


def predicting_with(model):
    return mock.patch("ml.services.inference.get_predictor", return_value=model)


@pytest.mark.django_db
def test_upsert_twice_keeps_one_row_per_movie_and_latest_scores(make_movie):
    version = _version()
    ids = [make_movie(("Action",), poster=False).pk for _ in range(5)]
    rng = np.random.default_rng(1)
    with predicting_with(ScoringModel(version, {i: rng.random(2) for i in ids})):
        assert predict_movies(version.pk, ids) == 5
    created = {p.movie_id: p.created_at for p in Prediction.objects.all()}
    latest_scores = {i: rng.random(2) for i in ids}
    with predicting_with(ScoringModel(version, latest_scores)):
        assert predict_movies(version.pk, ids[::-1]) == 5
    assert Prediction.objects.count() == 5
    latest = Prediction.objects.get(movie_id=ids[0])
    assert latest.scores["Action"] == pytest.approx(latest_scores[ids[0]][0], abs=1e-6)
    assert latest.created_at == created[ids[0]] and latest.updated_at >= latest.created_at


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_upserts_of_the_same_movies(make_movie):
    # Two writers upsert the same 3,000 movies in opposite orders, one batch each (a retried
    # shard racing the original). Without a common lock order Postgres reports a deadlock here.
    version = _version()
    from catalog.models import Movie

    Movie.objects.bulk_create([Movie(title=f"m{i}", source="csv", source_id=f"bulk{i}") for i in range(3000)])
    ids = list(Movie.objects.order_by("id").values_list("id", flat=True))
    errors = []

    def writer(order):
        try:
            for _ in range(6):
                predict_movies(version.pk, order, batch_size=len(order))
        except Exception as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=writer, args=(ids,)), threading.Thread(target=writer, args=(ids[::-1],))]
    with predicting_with(ScoringModel(version)):
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not errors, errors
    assert Prediction.objects.filter(model_version=version).count() == 3000
