"""benchmark_inference's table and process measurements (no timings are asserted)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from django.core.management import CommandError, call_command

from bench.management.commands.benchmark_inference import Command, worker_peak_rss_mb


def test_the_table_gives_rates_per_modality_and_the_ratio_to_the_first_row():
    rows = [
        {"path": "minimal", "n": 10, "n_images": 8, "text_s": 1.0, "image_s": 4.0, "peak_rss_mb": 900.4},
        {"path": "project", "n": 10, "n_images": 8, "text_s": 2.0, "image_s": 8.0, "peak_rss_mb": 1000.0},
        {"path": "job", "n": 10, "wall_s": 2.5, "peak_rss_mb": 1100.0},
    ]
    lines = Command().table(rows).splitlines()
    assert lines[0].startswith("| path | movies | movies_per_s")
    assert lines[2] == "| minimal | 10 | 2.0 | 10.0 | 2.0 | 900 | 1.00x |"
    assert lines[3] == "| project | 10 | 1.0 | 5.0 | 1.0 | 1000 | 0.50x |"
    assert lines[4] == "| job | 10 | 4.0 | - | - | 1100 | 2.00x |"


def test_worker_peak_rss_covers_the_children_of_a_worker():
    # a parent that starts a child holding ~200 MB: the fleet's peak is the child's
    code = (
        "import subprocess, sys; "
        "subprocess.run([sys.executable, '-c', 'b = bytearray(200 * 2**20); import time; time.sleep(3)'])"
    )
    proc = subprocess.Popen([sys.executable, "-c", code])
    try:
        peak = 0.0
        for _ in range(50):
            peak = max(peak, worker_peak_rss_mb([proc]))
            if peak > 150:
                break
            subprocess.run(["sleep", "0.1"])
        assert peak > 150
    finally:
        proc.wait(timeout=30)
    assert worker_peak_rss_mb([proc]) == 0.0  # gone processes count nothing


def test_the_command_refuses_a_folder_without_movies_csv(tmp_path):
    with pytest.raises(CommandError, match="movies.csv"):
        call_command("benchmark_inference", data=str(tmp_path))


def test_the_command_refuses_a_preset_without_both_frozen_encoders(tmp_path):
    (tmp_path / "movies.csv").write_text("id,overview,genres,poster\n")
    with pytest.raises(CommandError, match="frozen text\\+image"):
        call_command("benchmark_inference", data=str(tmp_path), preset="tfidf-linear")


@pytest.mark.django_db
def test_cold_store_empties_only_the_model_versions_encoder_spaces():
    from ml.engine.identity import encoder_space
    from ml.engine.registry import get_config
    from ml.models import DatasetSnapshot, Embedding, ModelVersion

    config = get_config("minilm+effnet-frozen-gated")
    snapshot = DatasetSnapshot.objects.create(name="s", genres=["A"], content_hash="0" * 64)
    version = ModelVersion.objects.create(
        snapshot=snapshot, genres=["A"], thresholds=[0.5], checksum="c", config=config.to_dict()
    )
    theirs = [encoder_space(config, "text", "cpu"), encoder_space(config, "image", "cpu")]
    kept = [encoder_space(config, "text", "cuda"), "minilm-other-t64-cpu"]
    for space in theirs + kept:
        Embedding.objects.create(space=space, digest="d" * 64, dim=1, vector=b"\0\0")
    assert Command._empty_store(version) == 2
    assert sorted(Embedding.objects.values_list("space", flat=True)) == sorted(kept)
