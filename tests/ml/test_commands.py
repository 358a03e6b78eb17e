"""The ml management commands, end to end on a tiny generated catalog."""

import io
import json

import pytest
from django.core.management import CommandError, call_command

from ml.models import DatasetSnapshot, Evaluation, ModelVersion, Prediction
from ml.services.inference import clear_predictor_cache
from ml.services.registry import production_version

pytestmark = pytest.mark.django_db


def run(*args):
    out, err = io.StringIO(), io.StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue()


@pytest.mark.slow  # trains a real model through the commands
def test_commands_snapshot_train_evaluate_predict_promote(tiny_catalog, settings, tmp_path):
    settings.GENREWEB_ML_CACHE_DIR = tmp_path / "cache"
    clear_predictor_cache()
    with pytest.raises(CommandError, match="no snapshot"):
        run("train_model")
    out = run("build_snapshot", "--name", "cmd", "--min-genre-count", "11", "--fractions", "0.6", "0.2", "0.2")
    snapshot = DatasetSnapshot.objects.get()
    assert f"snapshot {snapshot.pk}: 40 movies" in out and "rare genres (dropped)" not in out
    out = run("build_snapshot", "--min-genre-count", "15", "--keep-rare-genres", "--fractions", "0.6", "0.2", "0.2")
    assert "rare genres (kept)" in out

    assert "tfidf-linear" in run("train_model", "--list")
    config = json.dumps({"preset": "tfidf-linear", "epochs": 20, "tfidf_min_df": 1})
    out = run("train_model", "--snapshot", str(snapshot.pk), "--config", config)
    version = ModelVersion.objects.get()
    assert "test: micro-F1" in out and f"model version {version.pk}" in out
    with pytest.raises(CommandError, match="not valid JSON"):
        run("train_model", "--config", "{oops")

    out = run("evaluate_model", "--model-version", str(version.pk), "--split", "val")
    assert "val (" in out and Evaluation.objects.filter(model_version=version).count() == 2

    with pytest.raises(CommandError, match="no production model"):
        run("predict_movies", "--all")
    assert "production: none ->" in run("promote_model", str(version.pk))
    assert production_version() == version
    out = run("predict_movies", "--all", "--batch-size", "16")
    assert out.startswith("40 predictions") and Prediction.objects.count() == 40
    with pytest.raises(CommandError, match="movie ids or --all"):
        run("predict_movies")
    clear_predictor_cache()
