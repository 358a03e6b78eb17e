"""Snapshot -> train (tfidf preset) -> ModelVersion + evaluations -> predictions -> promote -> predict_raw."""

import io

import pytest
from django.core.files.storage import default_storage
from PIL import Image

from catalog.images import ImageRejected
from ml.models import Evaluation, GenreMetric, ModelVersion, Prediction, TrainingRun
from ml.services.evaluation import evaluate_model
from ml.services.inference import (
    clear_predictor_cache,
    get_predictor,
    predict_movies,
    predict_raw,
    refresh_disagreements,
)
from ml.services.registry import NoProductionModel, local_artifact_dir, promote
from ml.services.snapshots import build_snapshot
from ml.services.training import TrainingFailed, train_model
from tests.factories import genre_poster

# Every test trains (or fails to train) a real model on the tiny catalog: full suite only.
pytestmark = [pytest.mark.django_db, pytest.mark.slow]

FAST_TFIDF = {"preset": "tfidf-linear", "epochs": 30, "tfidf_min_df": 1, "patience": 30}


@pytest.fixture(autouse=True)
def _ml_cache(settings, tmp_path):
    settings.GENREWEB_ML_CACHE_DIR = tmp_path / "ml-cache"
    clear_predictor_cache()
    yield
    clear_predictor_cache()


@pytest.fixture
def trained(tiny_catalog):
    # seed 13: the split these small models were written against (the default is now 0)
    snapshot = build_snapshot(min_genre_count=1, fractions=(0.6, 0.2, 0.2), seed=13)
    steps = []
    run = train_model(snapshot.pk, FAST_TFIDF, progress=lambda message, fraction: steps.append(fraction))
    return snapshot, run, steps


def test_train_records_run_version_and_evaluations(trained):
    snapshot, run, steps = trained
    assert run.status == TrainingRun.Status.SUCCEEDED, run.error
    assert steps == sorted(steps) and steps[-1] == 1.0
    assert {"load_data_s", "fit_s", "save_s", "evaluate_s", "total_s"} <= set(run.timings)
    assert run.device and run.library_versions["torch"] and run.history and "val: micro-F1" in run.log
    version = run.model_version
    assert version.genres == snapshot.genres and len(version.thresholds) == 4
    assert sorted(version.artifact_files) == ["config.json", "model.safetensors"]
    for name in version.artifact_files:
        assert default_storage.exists(f"{version.artifact_path}/{name}")
    assert local_artifact_dir(version).is_dir()  # checksum verified
    evaluations = {e.split: e for e in Evaluation.objects.filter(model_version=version)}
    assert set(evaluations) == {"val", "test"}
    test_eval = evaluations["test"]
    assert test_eval.n_examples == snapshot.split_counts["test"]
    # The generated words make genres easy: a working pipeline scores well above chance.
    assert test_eval.micro_f1 > 0.7, test_eval.metrics
    assert GenreMetric.objects.filter(evaluation=test_eval).count() == 4
    assert set(test_eval.curves) == {"pr_curves", "calibration", "per_genre_calibration", "confusion"}


def test_predictions_are_idempotent_and_track_disagreement(trained, tiny_catalog):
    _, run, _ = trained
    version = run.model_version
    ids = [m.pk for m in tiny_catalog]
    assert predict_movies(version.pk, ids, batch_size=16) == 40
    first = {p.movie_id: p.scores for p in Prediction.objects.all()}
    assert predict_movies(version.pk, ids + [999_999], batch_size=7) == 40  # unknown id skipped
    assert Prediction.objects.count() == 40
    assert {p.movie_id: p.scores for p in Prediction.objects.all()} == first
    prediction = Prediction.objects.get(movie=tiny_catalog[0])
    assert prediction.predicted and prediction.top_genre == prediction.predicted[0]
    assert set(prediction.scores) == set(version.genres)

    # After a relabel the stored comparison can be refreshed without running the model.
    from catalog.labels import set_labels
    from catalog.models import Genre

    set_labels(tiny_catalog[0], [Genre.objects.get(name="Horror")], reason="test")
    assert refresh_disagreements([tiny_catalog[0].pk]) == 1
    prediction.refresh_from_db()
    assert prediction.labels_at_prediction == ["Horror"]
    assert prediction.disagrees == (prediction.predicted != ["Horror"])


def test_progress_error_keeps_finished_batches(trained, tiny_catalog):
    _, run, _ = trained
    calls = []

    def cancel_after_two_batches(message, fraction):
        calls.append(fraction)
        if len(calls) == 3:  # start report + two batches
            raise KeyboardInterrupt("cancelled")

    with pytest.raises(KeyboardInterrupt):
        predict_movies(
            run.model_version.pk, [m.pk for m in tiny_catalog], batch_size=10, progress=cancel_after_two_batches
        )
    assert Prediction.objects.count() == 20


def test_evaluate_model_replaces_previous_evaluation(trained):
    snapshot, run, _ = trained
    version = run.model_version
    before = Evaluation.objects.get(model_version=version, split="test")
    again = evaluate_model(version.pk, snapshot.pk, split="test")
    assert Evaluation.objects.filter(model_version=version, split="test").count() == 1
    assert again.micro_f1 == pytest.approx(before.micro_f1)
    assert GenreMetric.objects.filter(evaluation__model_version=version, split="test").count() == 4
    with pytest.raises(ValueError, match="unknown split"):
        evaluate_model(version.pk, split="holdout")


def test_predict_raw_uses_production_and_checks_posters(trained):
    _, run, _ = trained
    version = run.model_version
    with pytest.raises(NoProductionModel):
        predict_raw("a funny joke", None)
    promote(version.pk)
    result = predict_raw("funny joke laugh wedding prank", genre_poster(["Comedy"]))
    assert result["model_version"] == version.pk and result["used_text"]
    # a text-only model reads no poster, and says so
    assert result["used_poster"] is False and result["ignored"] == ["poster"] and result["inputs"] == "all"
    assert result["calibrated"] is False  # 8 val movies: too few to calibrate (ml.engine.calibration)
    assert result["genres"][0] == "Comedy"
    assert [s["genre"] for s in result["scores"]][0] == "Comedy"
    gray = io.BytesIO()
    Image.new("L", (80, 120), 90).save(gray, "PNG")
    assert predict_raw("", gray.getvalue(), model_version=version.pk)["used_text"] is False
    with pytest.raises(ImageRejected):
        predict_raw("ghost", b"not an image at all")
    with pytest.raises(ValueError, match="overview, a poster"):
        predict_raw("  ", None)
    assert get_predictor(version.pk) is get_predictor(version.pk)  # loaded once


def test_tampered_artifact_is_refused(trained):
    _, run, _ = trained
    version = run.model_version
    path = local_artifact_dir(version) / "config.json"
    path.write_text(path.read_text() + " ")
    clear_predictor_cache()
    with pytest.raises(ValueError, match="checksum"):
        get_predictor(version.pk)


def test_failed_training_is_recorded(tiny_catalog):
    snapshot = build_snapshot(min_genre_count=1)
    with pytest.raises(ValueError):
        train_model(snapshot.pk, "no-such-preset")
    no_val = build_snapshot(min_genre_count=1, fractions=(1.0, 0.0, 0.0))
    with pytest.raises(TrainingFailed, match="val") as failure:
        train_model(no_val.pk, FAST_TFIDF)
    run = failure.value.run
    run.refresh_from_db()
    assert run.status == TrainingRun.Status.FAILED and "Traceback" in run.error
    assert not ModelVersion.objects.exists()


def test_cancelled_training_is_marked_cancelled(tiny_catalog):
    snapshot = build_snapshot(min_genre_count=1)

    class Cancelled(Exception):
        pass

    def cancel(message, fraction):
        if fraction > 0.1:
            raise Cancelled()

    with pytest.raises(Cancelled):
        train_model(snapshot.pk, FAST_TFIDF, progress=cancel)
    assert TrainingRun.objects.get().status == TrainingRun.Status.CANCELLED


def test_evaluate_on_another_snapshot_maps_genres_by_name(trained, make_movie):
    _, run, _ = trained
    version = run.model_version
    for _ in range(6):
        make_movie(("Western", "Drama"))  # a genre the model never saw
    other = build_snapshot(min_genre_count=1, fractions=(0.5, 0.25, 0.25), seed=3)
    assert "Western" in other.genres and other.genres != version.genres
    evaluation = evaluate_model(version.pk, other.pk, split="test")
    assert evaluation.snapshot == other and evaluation.n_examples == other.split_counts["test"]
    assert sorted(evaluation.genre_metrics.values_list("genre", flat=True)) == sorted(version.genres)


def test_deleting_a_version_removes_its_artifact_after_commit(trained, django_capture_on_commit_callbacks):
    _, run, _ = trained
    version = run.model_version
    names = [f"{version.artifact_path}/{name}" for name in version.artifact_files]
    assert all(default_storage.exists(n) for n in names)
    with django_capture_on_commit_callbacks(execute=True):
        version.delete()
    assert not any(default_storage.exists(n) for n in names)
