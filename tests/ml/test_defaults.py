"""One default training path: the recommended preset (job form, API, train/retrain jobs)
and the snapshot defaults, which are the benchmark's split settings."""

from __future__ import annotations

import inspect

import pytest

from ml.engine import benchmark
from ml.engine.registry import PRESETS, RECOMMENDED_PRESET, preset_list
from ml.engine.split import DEFAULT_FRACTIONS, DEFAULT_MIN_GENRE_COUNT, DEFAULT_SEED
from tests.factories import make_user
from workers.kinds import InvalidJobParams, validate_params

pytestmark = pytest.mark.django_db


def test_the_recommended_preset_is_a_preset_and_listed_first():
    assert RECOMMENDED_PRESET in PRESETS
    listed = preset_list()
    assert listed[0]["name"] == RECOMMENDED_PRESET and listed[0]["recommended"]
    assert sum(p["recommended"] for p in listed) == 1
    assert sorted(p["name"] for p in listed) == sorted(PRESETS)


def test_train_and_retrain_jobs_without_a_config_use_the_recommended_preset(tiny_catalog):
    from ml.services.snapshots import build_snapshot

    snapshot = build_snapshot(min_genre_count=1)
    assert validate_params("train", {"snapshot_id": snapshot.pk})["config"] == RECOMMENDED_PRESET
    assert validate_params("retrain", {})["config"] == RECOMMENDED_PRESET
    assert validate_params("retrain", {"config": "tfidf-linear"})["config"] == "tfidf-linear"


def test_a_local_encoder_path_outside_the_configured_folders_is_refused(settings, tmp_path):
    config = {"preset": "minilm-frozen-text", "text_encoder": "st_folder", "text_model_path": str(tmp_path)}
    settings.GENREWEB_ENCODER_ROOTS = []
    with pytest.raises(InvalidJobParams) as err:
        validate_params("retrain", {"config": config})
    assert "GENREWEB_ENCODER_ROOTS" in err.value.errors["config"]
    settings.GENREWEB_ENCODER_ROOTS = [tmp_path.resolve()]
    assert validate_params("retrain", {"config": config})["config"] == config


def test_the_job_form_marks_and_preselects_the_recommended_preset(client):
    from workers.forms import QueueJobForm

    form = QueueJobForm()
    for kind in ("train", "retrain"):
        field = form.fields[f"{kind}-config"]
        assert field.initial == RECOMMENDED_PRESET
        choices = [(value, label) for value, label in field.choices if value]  # after the blank one
        assert choices[0][0] == RECOMMENDED_PRESET and "recommended" in choices[0][1]
        assert not any("recommended" in label for value, label in choices[1:])
    client.force_login(make_user("boss", staff=True))
    page = client.get("/jobs/").content.decode()
    assert f'<option value="{RECOMMENDED_PRESET}" selected>' in page


def test_the_api_lists_presets_with_the_recommended_one_first(client):
    client.force_login(make_user("reader"))
    response = client.get("/api/model-presets/")
    assert response.status_code == 200
    body = response.json()
    assert body[0]["name"] == RECOMMENDED_PRESET and body[0]["recommended"] is True
    assert all(item["recommended"] is False for item in body[1:])
    assert body[0]["config"]["fusion"] == PRESETS[RECOMMENDED_PRESET].fusion


def test_snapshot_defaults_are_the_benchmarks_split():
    from ml.services.snapshots import build_snapshot

    defaults = {k: v.default for k, v in inspect.signature(build_snapshot).parameters.items()}
    assert (defaults["seed"], tuple(defaults["fractions"]), defaults["min_genre_count"]) == (
        DEFAULT_SEED,
        DEFAULT_FRACTIONS,
        DEFAULT_MIN_GENRE_COUNT,
    )
    assert (DEFAULT_SEED, DEFAULT_MIN_GENRE_COUNT) == (0, 20)
    import argparse

    parser = argparse.ArgumentParser()
    benchmark.add_arguments(parser)
    args = parser.parse_args(["--data", "x"])
    assert (args.seed, args.min_genre_count) == (DEFAULT_SEED, DEFAULT_MIN_GENRE_COUNT)
