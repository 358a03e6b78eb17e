"""The model benchmark on a tiny generated devset-shaped folder (never the real devset)."""

from __future__ import annotations

import csv
import functools
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


def test_the_best_model_is_chosen_at_val_tuned_thresholds_whatever_its_decision_rule(devset, tmp_path):
    """A model whose own thresholds score val lower (they were not tuned on val) is not
    thereby ranked below a model whose thresholds were: presets compete on val micro-F1 at
    thresholds tuned on val itself."""
    import copy

    out = tmp_path / "results"
    rows = benchmark.run_benchmark(
        devset, ["tfidf-linear"], out, min_genre_count=5, isolate=False, device="cpu", command="test"
    )
    assert rows[0]["val_selection"]["micro_f1"] >= rows[0]["val_metrics"]["micro_f1"] - 1e-9
    steady, tuned = copy.deepcopy(rows[0]), copy.deepcopy(rows[0])
    steady["model"], tuned["model"] = "steady-thresholds", "val-tuned-thresholds"
    steady["val_metrics"]["micro_f1"], steady["val_selection"]["micro_f1"] = 0.60, 0.90
    tuned["val_metrics"]["micro_f1"], tuned["val_selection"]["micro_f1"] = 0.85, 0.85
    genres, rare, counts, parts = benchmark.prepare(devset, min_genre_count=5, seed=0)
    benchmark._write_files([tuned, steady], out, genres, rare, counts, parts, {}, "cpu", ["test"])
    assert "**steady-thresholds**" in (out / "benchmark.md").read_text()


def test_threshold_rules_are_compared_on_held_out_folds_of_val(devset):
    """benchmark_thresholds: each rule's thresholds are set on the other folds of val; a clean
    signal scores high under every rule, and the command's table lists each rule per seed."""
    import io

    import numpy as np

    from bench.management.commands.benchmark_thresholds import RULES, held_out_scores

    rng = np.random.default_rng(0)
    y = rng.random((60, 3)) < 0.4
    y[~y.any(axis=1), 0] = True
    p = np.clip(np.where(y, 0.8, 0.1) + rng.normal(0, 0.05, y.shape), 0, 1)
    scores = held_out_scores(y, p, ["a", "b", "c"], folds=3, repeats=2)
    assert set(scores) == set(RULES) and all(micro >= 0.95 for micro, _ in scores.values())
    out = io.StringIO()
    call_command(
        "benchmark_thresholds", data=str(devset), model="tfidf-linear", seeds=[0], min_genre_count=5, folds=3,
        repeats=1, stdout=out,
    )  # fmt: skip
    text = out.getvalue()
    assert "| rule | seed 0 | mean |" in text and all(f"| {name} |" in text for name in RULES)


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


@pytest.mark.slow
def test_feature_extraction_of_another_lite_variant_runs_at_the_models_image_size(devset, tmp_path):
    cache = str(tmp_path / "cache")
    extract = functools.partial(benchmark.precompute_features, devset, 3, 0, cache, "cpu", "efficientnet_lite1", 1)
    first = extract(64)
    assert first["encoder"] == "efficientnet_lite1" and first["cached"] < first["n"]
    assert extract(64)["cached"] == first["n"]
    # Another size is another space: encoded again (what is never encoded, e.g. a movie
    # without a poster, counts as cached both times).
    assert extract(72)["cached"] == first["cached"]


def _tag_sources(devset, kaggle_below: int = 20):
    path = devset / "movies.csv"
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        number = int(row["id"].split("_")[1]) if row["id"] else 0
        row["text_source"] = (
            "abdulqadir7391/data/movies_metadata.csv"
            if number < kaggle_below
            else "VijayMarripudi/tmdb_3000_movies.csv"
        )
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def test_eval_data_takes_one_or_more_folders():
    import argparse

    parser = argparse.ArgumentParser()
    benchmark.add_arguments(parser)
    assert parser.parse_args(["--data", "d"]).eval_data == []
    args = parser.parse_args(["--data", "d", "--eval-data", "a", "b/c", "--source-shift"])
    assert args.eval_data == ["a", "b/c"] and args.source_shift
    with pytest.raises(SystemExit):
        parser.parse_args(["--data", "d", "--eval-data"])


def test_eval_data_folders_are_scored_and_a_wrong_one_fails_before_training(devset, tmp_path):
    with pytest.raises(FileNotFoundError, match="--eval-data"):
        benchmark.run_benchmark(devset, ["tfidf-linear"], tmp_path / "r", eval_data=[tmp_path / "nothing"])
    # A second labeled folder: the same shape, another genre the model does not know is ignored.
    extra = tmp_path / "extra"
    (extra / "posters").mkdir(parents=True)
    with open(extra / "movies.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["id", "title", "year", "overview", "genres", "poster"])
        writer.writeheader()
        for i, (genre, words) in enumerate(list(GENRE_WORDS.items()) * 4):
            writer.writerow(
                {"id": f"x{i}", "title": "t", "year": "1999", "overview": words, "genres": genre, "poster": ""}
            )
        writer.writerow(
            {"id": "x99", "title": "t", "year": "", "overview": "nothing", "genres": "Western", "poster": ""}
        )
    out = tmp_path / "results"
    rows = benchmark.run_benchmark(
        devset, ["tfidf-linear"], out, min_genre_count=5, isolate=False, device="cpu", eval_data=[extra]
    )
    scored = rows[0]["eval_sets"][str(extra)]
    assert scored["n"] == 12  # the Western-only movie has no genre the model knows
    assert scored["micro_f1"] >= 0.8
    md = (out / "benchmark.md").read_text()
    assert f"| tfidf-linear | {extra} | 12 |" in md
    assert rows[0]["metrics"]["ece"] is not None and rows[0]["metrics"]["ece_uncalibrated"] is not None


def test_source_shift_trains_on_one_source_and_tests_on_the_other(devset, tmp_path):
    _tag_sources(devset, kaggle_below=20)
    genres, parts = benchmark.prepare_source_shift(devset, 5, 0)
    keys = {name: {int(ex.key.split("_")[1]) for ex in part} for name, part in parts.items()}
    assert keys["test"] == set(range(20))
    assert keys["train"] | keys["val"] == set(range(20, 60)) and not keys["train"] & keys["val"]
    assert len(keys["val"]) in range(4, 9)
    out = tmp_path / "results"
    rows = benchmark.run_benchmark(
        devset, ["tfidf-linear"], out, min_genre_count=5, isolate=False, device="cpu", source_shift=True
    )
    shifted = [r for r in rows if r["setup"] == "source-shift"]
    assert [r["model"] for r in shifted] == ["tfidf-linear" + benchmark.SHIFT_SUFFIX]
    assert shifted[0]["split_sizes"]["test"] == 20
    md = (out / "benchmark.md").read_text()
    assert "Source shift inside the devset" in md and f"| tfidf-linear{benchmark.SHIFT_SUFFIX} |" in md
    # the shift row is not a devset-split row: not in the headline table, not "best"
    headline = md.split("Best by")[0]
    assert benchmark.SHIFT_SUFFIX not in headline
