"""Prediction upserts: idempotent, and safe when two writers upsert the same movies at once."""

import threading
from unittest import mock

import numpy as np
import pytest
from django.db import connection

from ml.models import DatasetSnapshot, ModelVersion, Prediction
from ml.services.inference import predict_movies, refresh_disagreements


def _version(**fields):
    snapshot = DatasetSnapshot.objects.create(content_hash="c" * 64, genres=["Action", "Drama"])
    values = dict(
        snapshot=snapshot,
        genres=["Action", "Drama"],
        thresholds=[0.5, 0.5],
        artifact_path="models/t",
        artifact_files=[],
        checksum="d" * 64,
    )
    return ModelVersion.objects.create(**{**values, **fields})


class ScoringModel:
    """Stands in for the version's trained model: scores from a table by movie id, else random.

    With per-input thresholds on the version it acts as a text+poster model: a movie without
    a poster has the "text" input set and is decided with that set's thresholds."""

    def __init__(self, version, scores: dict[int, np.ndarray] | None = None):
        self.genres, self.thresholds = version.genres, np.array(version.thresholds)
        self.by_inputs = {k: np.array(v) for k, v in version.thresholds_by_inputs.items()}
        self.scores = scores
        self.last_input_sets: list[str] = []

    def thresholds_for(self, inputs):
        return self.by_inputs.get(inputs, self.thresholds)

    def predict(self, examples):
        if self.scores is None:
            probs = np.random.default_rng().random((len(examples), len(self.genres)))
        else:
            probs = np.array([self.scores[int(e.key)] for e in examples])
        fused = bool(self.by_inputs)
        self.last_input_sets = ["text" if fused and e.image is None else "all" for e in examples]
        return probs, probs >= np.stack([self.thresholds_for(s) for s in self.last_input_sets])


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


@pytest.mark.django_db
def test_a_prediction_is_judged_with_the_thresholds_of_its_input_set(make_movie):
    # A text+poster model's no-poster thresholds: Action needs 0.8, Drama 0.3 (0.5 / 0.5 with both).
    version = _version(thresholds_by_inputs={"text": [0.8, 0.3], "image": [0.5, 0.5]})
    no_poster = make_movie(("Action",), poster=False)
    with_poster = make_movie(("Action",))
    scores = {no_poster.pk: np.array([0.7, 0.4]), with_poster.pk: np.array([0.7, 0.4])}
    with predicting_with(ScoringModel(version, scores)):
        predict_movies(version.pk, [no_poster.pk, with_poster.pk])
    text = Prediction.objects.get(movie=no_poster)
    assert text.inputs == "text" and text.predicted == ["Drama"]
    assert text.suggested_add == ["Drama"] and text.suggested_remove == ["Action"]
    # Drama 0.1 past its 0.3 threshold, of 0.7 possible: the strongest disagreement
    assert text.disagreement == pytest.approx(0.1 / 0.7)
    assert text.uncertainty == pytest.approx(1 - 0.1 / 0.8)  # Action, 0.1 under 0.8, is the closest call
    both = Prediction.objects.get(movie=with_poster)
    assert both.inputs == "all" and both.predicted == ["Action"] and not both.disagrees

    # a relabel re-judges the stored scores against the same input set's thresholds
    from catalog.labels import set_labels
    from catalog.models import Genre

    drama, _ = Genre.objects.get_or_create(name="Drama", defaults={"slug": "drama"})
    set_labels(no_poster, [Genre.objects.get(name="Action"), drama])
    assert refresh_disagreements([no_poster.pk]) == 1
    text.refresh_from_db()
    assert text.suggested_add == [] and text.suggested_remove == ["Action"]
    assert text.disagreement == pytest.approx(0.1 / 0.8)  # Action 0.7 sits 0.1 under its 0.8

    # the movie page shows the thresholds the prediction was decided with
    from ml.views.catalog_pages import score_rows

    shown = {row["genre"]: row["threshold_pct"] for row in score_rows(text, version, {"Action"})}
    assert shown == {"Action": 80.0, "Drama": 30.0}


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


@pytest.mark.django_db
def test_versions_stored_before_per_input_thresholds_read_them_from_their_artifact(tmp_path, settings):
    import importlib
    import json

    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage
    from django.db.migrations.loader import MigrationLoader

    settings.MEDIA_ROOT = str(tmp_path)
    fused = _version(artifact_path="models/fused")
    plain = _version(artifact_path="models/plain")
    _version(artifact_path="models/gone")  # no artifact readable: keeps its "all" thresholds
    document = {"thresholds": [0.5, 0.5], "thresholds_by_inputs": {"text": [0.8, 0.3], "image": [0.6, 0.4]}}
    default_storage.save("models/fused/config.json", ContentFile(json.dumps(document).encode()))
    default_storage.save("models/plain/config.json", ContentFile(b'{"thresholds": [0.5, 0.5]}'))
    name = "0007_prediction_inputs_thresholds_by_inputs"
    historical = MigrationLoader(connection).project_state(("ml", name)).apps  # as the migration sees them
    importlib.import_module(f"ml.migrations.{name}").thresholds_from_artifacts(historical, None)
    fused.refresh_from_db()
    assert fused.thresholds_for("text") == [0.8, 0.3] and fused.thresholds_for("all") == [0.5, 0.5]
    assert ModelVersion.objects.get(pk=plain.pk).thresholds_by_inputs == {}
    assert ModelVersion.objects.get(artifact_path="models/gone").thresholds_for("text") == [0.5, 0.5]
