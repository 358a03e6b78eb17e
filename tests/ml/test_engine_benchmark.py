"""The model benchmark on a tiny generated devset-shaped folder (never the real devset)."""

from __future__ import annotations

import csv
import json

import pytest
from django.core.management import CommandError, call_command

from ml.engine import benchmark
from tests.factories import image_bytes

GENRE_WORDS = {"Action": "gun chase explosion", "Romance": "love kiss wedding", "Horror": "ghost blood scream"}


@pytest.fixture
def devset(tmp_path):
    """60 movies over three genres plus one genre too rare to keep (2 movies)."""
    folder = tmp_path / "devset"
    (folder / "posters").mkdir(parents=True)
    rows = []
    names = list(GENRE_WORDS)
    for i in range(60):
        genres = [names[i % 3]] + (["Foreign"] if i < 2 else [])
        poster = f"tmdb_{i}.jpg"
        if i != 5:  # one movie's poster file is missing
            colour = ((i % 3) * 100, 50, 200 - (i % 3) * 60)
            (folder / "posters" / poster).write_bytes(image_bytes(20, 30, colour=colour))
        rows.append(
            {
                "id": f"tmdb_{i}",
                "title": f"Movie {i}",
                "year": "2000",
                "overview": f"{GENRE_WORDS[names[i % 3]]} story number {i}",
                "genres": "|".join(genres),
                "source_id": f"tmdb:{i}",
                "poster": poster,
            }
        )
    rows.append({"id": "", "title": "broken", "year": "", "overview": "x", "genres": "", "source_id": "", "poster": ""})
    with open(folder / "movies.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return folder


def test_prepare_splits_and_reports_rare_genres(devset):
    genres, rare, counts, parts = benchmark.prepare(devset, min_genre_count=5, seed=0)
    assert set(genres) == set(GENRE_WORDS) and rare == {"Foreign": 2}
    assert {k: len(v) for k, v in parts.items()} == {"train": 42, "val": 9, "test": 9}
    keys = [ex.key for p in parts.values() for ex in p]
    assert len(set(keys)) == 60  # the broken row is skipped, every movie lands once
    by_key = {ex.key: ex for p in parts.values() for ex in p}
    assert by_key["tmdb_5"].image is None and by_key["tmdb_4"].image.endswith("tmdb_4.jpg")
    # Same seed, same split.
    again = benchmark.prepare(devset, min_genre_count=5, seed=0)[3]
    assert [ex.key for ex in again["test"]] == [ex.key for ex in parts["test"]]


def test_benchmark_writes_table(devset, tmp_path):
    out = tmp_path / "results"
    rows = benchmark.run_benchmark(
        devset, ["tfidf-linear"], out, min_genre_count=5, isolate=False, device="cpu", command="test"
    )
    assert [r["model"] for r in rows] == ["tfidf-linear"]
    metrics = rows[0]["metrics"]
    # Each movie's overview names its genre: even the linear baseline gets it right.
    assert metrics["micro_f1"] >= 0.8 and metrics["roc_auc_macro"] >= 0.9
    assert rows[0]["throughput"] > 0 and rows[0]["peak_rss_mb"] > 0
    with open(out / "benchmark.csv") as handle:
        table = list(csv.DictReader(handle))
    assert table[0]["model"] == "tfidf-linear"
    assert float(table[0]["micro_f1"]) == pytest.approx(metrics["micro_f1"], abs=1e-4)
    md = (out / "benchmark.md").read_text()
    assert "| tfidf-linear |" in md and "Foreign (2 movies)" in md and "Command: `test`" in md
    saved = json.loads((out / "benchmark.json").read_text())
    assert saved["rare_genres_excluded"] == {"Foreign": 2} and saved["split_sizes"]["test"] == 9


def test_benchmark_command_rejects_unknown_model_and_missing_data(devset, tmp_path):
    with pytest.raises(CommandError, match="unknown model preset"):
        call_command("benchmark_models", "--data", str(devset), "--models", "nope", "--out", str(tmp_path))
    with pytest.raises(CommandError, match="movies.csv"):
        call_command("benchmark_models", "--data", str(tmp_path / "nothing"), "--out", str(tmp_path))


def test_benchmark_command_runs_in_process(devset, tmp_path):
    call_command(
        "benchmark_models",
        "--data",
        str(devset),
        "--models",
        "tfidf-linear",
        "--out",
        str(tmp_path),
        "--min-genre-count",
        "5",
        "--no-isolate",
        "--device",
        "cpu",
    )
    assert "tfidf-linear" in (tmp_path / "benchmark.md").read_text()


def test_metrics_by_source_scores_each_source_on_its_own_genres(devset):
    import numpy as np

    from ml.engine.data import labels_matrix

    # Tag the first 30 movies as coming from another source.
    path = devset / "movies.csv"
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    for i, row in enumerate(rows):
        row["text_source"] = "kaggle" if i < 30 else "tmdb"
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)

    genres, _, _, parts = benchmark.prepare(devset, min_genre_count=5, seed=0)
    movies = parts["train"] + parts["val"] + parts["test"]
    y = labels_matrix(movies, len(genres))
    probs = np.where(y == 1, 0.9, 0.1)
    decisions = y.astype(bool)
    # The "kaggle" movies get every label wrong: its scores must drop, "tmdb"'s must not.
    kaggle = [i for i, ex in enumerate(movies) if int(ex.key.split("_")[1]) < 30]
    decisions[kaggle] = ~decisions[kaggle]
    probs[kaggle] = 1 - probs[kaggle]

    by_source = benchmark.metrics_by_source(devset, movies, y, probs, decisions, genres)
    assert set(by_source) == {"kaggle", "tmdb"}
    assert by_source["kaggle"]["n"] == 30 and by_source["tmdb"]["n"] == 30
    assert by_source["tmdb"]["micro_f1"] == 1.0 and by_source["tmdb"]["roc_auc_macro"] == 1.0
    assert by_source["kaggle"]["micro_f1"] == 0.0 and by_source["kaggle"]["roc_auc_macro"] == 0.0


@pytest.mark.slow
def test_feature_extraction_benchmark_encodes_then_serves_from_cache(devset, tmp_path):
    cache = str(tmp_path / "cache")
    first = benchmark.precompute_features(devset, 3, 0, cache, "cpu", "efficientnet_lite0", threads=1)
    assert first["encoder"] == "efficientnet_lite0" and first["n"] > 0 and first["cached"] < first["n"]
    again = benchmark.precompute_features(devset, 3, 0, cache, "cpu", "efficientnet_lite0", threads=1)
    assert again["cached"] == again["n"]
