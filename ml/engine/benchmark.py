"""Benchmark every model family on a devset folder (movies.csv + posters/).

Reads the CSV directly (nothing goes into a database), builds one fixed 70/15/15
iterative-stratified split, trains each model in its own process (so peak memory is that
model's), scores the test split and writes results/benchmark.{csv,md,json}.

    python -m ml.engine.benchmark --data ../shared/data/devset --out results/
"""

from __future__ import annotations

import argparse
import csv
import json
import multiprocessing
import os
import resource
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from .data import Example, labels_matrix
from .metrics import calibration_bins, evaluate
from .split import DEFAULT_FRACTIONS, DEFAULT_MIN_GENRE_COUNT, DEFAULT_SEED, iterative_stratified_split
from .thresholds import apply_thresholds, tune_thresholds

# The source-shift setup trains on the devset rows whose text source names this.
SHIFT_TRAIN_SOURCE = "tmdb_3000"
SHIFT_SUFFIX = " [source shift: TMDB-3000 -> Kaggle]"

# Frozen-encoder families first (they are the quick ones), end-to-end families after.
DEFAULT_MODELS = [
    "tfidf-linear",
    "minilm-frozen-text",
    "effnet-frozen-image",
    "minilm+effnet-logreg",
    "minilm+effnet-frozen-concat",
    "minilm+effnet-frozen-add",
    "minilm+effnet-frozen-product",
    "minilm+effnet-frozen-max",
    "minilm+effnet-frozen-gated",
    "minilm+effnet-frozen-late",
    "minilm+effnet-frozen-ensemble",
    "minilm+effnet-frozen-concat-late",
    "minilm+effnet-frozen-concat-late-knn",
    "minilm-frozen-title-text",
    "minilm+effnet-frozen-concat-late-knn-fallback",
    "bilstm-text",
    "gru-text",
    "smallcnn-image",
    "resnet18-image",
    "minilm-finetune-text",
    "minilm+effnet-finetune-gated",
]
# Averaged-probability ensembles scored as extra rows (thresholds re-tuned on val).
ENSEMBLES = {
    "ensemble(frozen gated+late+concat)": [
        "minilm+effnet-frozen-gated",
        "minilm+effnet-frozen-late",
        "minilm+effnet-frozen-concat",
    ]
}
# End-to-end families are cut down on a CPU so the whole benchmark fits in well under an
# hour on two cores; the table notes say so.
CPU_OVERRIDES = {
    "bilstm-text": {"epochs": 10},
    "gru-text": {"epochs": 10},
    "smallcnn-image": {"epochs": 8, "image_size": 64},
    "resnet18-image": {"epochs": 3, "image_size": 64},
    "resnet34-image": {"epochs": 2, "image_size": 64},
    "resnet50-image": {"epochs": 2, "image_size": 64},
    "effnet-finetune-image": {"epochs": 2, "image_size": 128},
    "minilm-finetune-text": {"epochs": 2, "max_tokens": 64},
    "minilm+effnet-finetune-gated": {"epochs": 2, "max_tokens": 64, "image_size": 96},
    "bilstm+smallcnn-concat": {"epochs": 8, "image_size": 64},
}
# Movies timed for throughput (from raw text + poster file, no cache): fewer on a CPU,
# where a frozen EfficientNet runs at a few posters per second.
THROUGHPUT_SAMPLE = {"cpu": 64, "cuda": 512}


def _year(value) -> int | None:
    try:
        return int(str(value).strip()[:4])
    except (TypeError, ValueError):
        return None


def devset_examples(rows: list[dict], genres: list[str]) -> list[Example]:
    """The engine's examples of devset rows (text, poster, title, year), labels indexed in ``genres``
    (genres not in the list are left out)."""
    index = {g: i for i, g in enumerate(genres)}
    return [
        Example(
            r["id"],
            r["text"],
            r["image"],
            [index[g] for g in r["genres"] if g in index],
            title=r.get("title", ""),
            year=r.get("year"),
        )
        for r in rows
    ]


def load_devset(data_dir: str | os.PathLike) -> tuple[list[dict], list[str]]:
    """Rows of movies.csv (id, overview, genres, poster path) and genre names by count."""
    data_dir = Path(data_dir)
    csv_path = data_dir / "movies.csv"
    if not csv_path.exists():
        raise FileNotFoundError(f"{csv_path} not found: --data must be a folder holding movies.csv and posters/")
    rows, problems = [], []
    with open(csv_path, encoding="utf-8", newline="") as handle:
        for line_no, rec in enumerate(csv.DictReader(handle), start=2):
            genres = [g.strip() for g in (rec.get("genres") or "").split("|") if g.strip()]
            overview = (rec.get("overview") or "").strip()
            if not rec.get("id") or not genres:
                problems.append(f"line {line_no}: missing id or genres")
                continue
            poster = rec.get("poster") or ""
            path = data_dir / "posters" / poster if poster else None
            rows.append(
                {
                    "id": rec["id"],
                    "text": overview,
                    "genres": genres,
                    "image": str(path) if path and path.exists() else None,
                    "title": (rec.get("title") or "").strip(),
                    "year": _year(rec.get("year")),
                    # where the row's text + labels came from (the devset mixes two sources)
                    "source": (rec.get("text_source") or "").strip() or "unknown",
                }
            )
    if problems:
        print(f"skipped {len(problems)} rows: " + "; ".join(problems[:5]), file=sys.stderr)
    counts = Counter(g for r in rows for g in r["genres"])
    return rows, [g for g, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]


def prepare(data_dir, min_genre_count: int, seed: int):
    rows, all_genres = load_devset(data_dir)
    counts = Counter(g for r in rows for g in r["genres"])
    genres = [g for g in all_genres if counts[g] >= min_genre_count]
    rare = {g: counts[g] for g in all_genres if counts[g] < min_genre_count}
    examples = devset_examples(rows, genres)
    y = labels_matrix(examples, len(genres))
    split = iterative_stratified_split(y, DEFAULT_FRACTIONS, seed=seed)
    parts = {
        name: [ex for ex, s in zip(examples, split, strict=False) if s == name] for name in ("train", "val", "test")
    }
    return genres, rare, counts, parts


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _set_threads(threads: int | None) -> None:
    if threads:
        import torch

        torch.set_num_threads(threads)


def precompute_features(
    data_dir, min_genre_count, seed, cache_dir, device, encoder: str, threads=None, image_size: int | None = None
) -> dict:
    """Cold extraction of one frozen encoder's features for train+val (what fit would do).
    MiniLM is read as minilm-frozen-text does; an image encoder as effnet-frozen-image does,
    with that encoder at ``image_size`` (the models' own size, so they find the cache warm)."""
    _set_threads(threads)
    from .registry import get_config
    from .train import select_device
    from .trained import InputParts

    genres, _, _, parts = prepare(data_dir, min_genre_count, seed)
    device = select_device(device)
    if encoder == "minilm":
        config = get_config("minilm-frozen-text")
    else:
        base = get_config("effnet-frozen-image")
        config = get_config(
            {"preset": base.name, "image_encoder": encoder, "image_size": image_size or base.image_size}
        )
    lines = []
    inputs = InputParts(config, None, device, cache_dir=cache_dir, log=lines.append)
    t0 = time.perf_counter()
    inputs.frozen_arrays(parts["train"] + parts["val"])
    seconds = time.perf_counter() - t0
    n = len(parts["train"]) + len(parts["val"])
    encoded = sum(int(line.split()[3]) for line in lines if " features: encoding " in line)
    inputs.frozen_arrays(parts["test"])  # warm the cache for scoring; not timed
    return {"encoder": encoder, "seconds": seconds, "n": n, "cached": n - encoded, "peak_rss_mb": _peak_rss_mb()}


def prepare_source_shift(data_dir, min_genre_count: int, seed: int, train_source: str = SHIFT_TRAIN_SOURCE):
    """The source-shift setup inside the devset: train + val from the rows whose text source
    contains ``train_source`` (TMDB-3000: 85/15 iterative-stratified), test = every other
    row (the Kaggle "The Movies Dataset" part). Same genre list as ``prepare``."""
    rows, all_genres = load_devset(data_dir)
    counts = Counter(g for r in rows for g in r["genres"])
    genres = [g for g in all_genres if counts[g] >= min_genre_count]
    inside = [r for r in rows if train_source in r["source"]]
    outside = [r for r in rows if train_source not in r["source"]]
    if not inside or not outside:
        raise ValueError(f"--source-shift: no rows {'from' if not inside else 'outside'} source {train_source!r}")
    fit_part = devset_examples(inside, genres)
    split = iterative_stratified_split(labels_matrix(fit_part, len(genres)), (0.85, 0.15, 0.0), seed=seed)
    return genres, {
        "train": [ex for ex, s in zip(fit_part, split, strict=True) if s == "train"],
        "val": [ex for ex, s in zip(fit_part, split, strict=True) if s != "train"],
        "test": devset_examples(outside, genres),
    }


def load_eval_set(folder, genres: list[str]) -> list[Example]:
    """A labeled folder in the devset's shape scored with the benchmark's genre list; movies
    with none of those genres are left out (nothing to score)."""
    rows, _ = load_devset(folder)
    return [ex for ex in devset_examples(rows, genres) if ex.labels]


def _summary(y, probs, decisions, genres, extra: dict | None = None) -> dict:
    m = evaluate(y, probs, decisions, genres)
    return {
        "n": m["n_examples"],
        "micro_f1": m["micro_f1"],
        "macro_f1": m["macro_f1"],
        "samples_f1": m["samples_f1"],
        "roc_auc_macro": m["roc_auc_macro"],
        "ece": m["ece"],
        **(extra or {}),
    }


def _run_model(
    name: str,
    data_dir,
    min_genre_count,
    seed,
    cache_dir,
    device,
    overrides: dict,
    threads=None,
    eval_data=(),
    setup: str = "split",
) -> dict:
    import torch

    _set_threads(threads)

    from .inputs import without
    from .registry import get_config
    from .train import fit
    from .trained import sigmoid

    if setup == "source-shift":
        genres, parts = prepare_source_shift(data_dir, min_genre_count, seed)
    else:
        genres, _, _, parts = prepare(data_dir, min_genre_count, seed)
    config = get_config({"preset": name, **overrides}) if overrides else get_config(name)
    log_lines: list[str] = []

    def log(line):
        log_lines.append(line)
        print(f"  [{name}] {line}", flush=True)

    t0 = time.perf_counter()
    model = fit(config, genres, parts["train"], parts["val"], device=device, cache_dir=cache_dir, log=log)
    fit_s = time.perf_counter() - t0
    val_probs = model.predict_proba(parts["val"])
    test = parts["test"]
    test_logits = model.logits(test)
    sets = model.input_sets(test)
    test_probs = model.calibrate(test_logits, sets)
    decisions = model.decide(test_probs, sets)
    y_test = labels_matrix(test, len(genres))
    y_val = labels_matrix(parts["val"], len(genres))
    metrics = evaluate(y_test, test_probs, decisions, genres)
    # The same scores before calibration: what calibration changed.
    metrics["ece_uncalibrated"] = calibration_bins(y_test, sigmoid(test_logits))["ece"]
    row = {
        "model": name,
        "setup": setup,
        "config": config.to_dict(),
        "device": model.device,
        "fit_s": fit_s,
        "features_s": model.timings.get("features_s"),
        "train_s": model.timings.get("train_s"),
        "epochs_run": len(model.history),
        "best_epoch": getattr(model, "best_epoch", None),
        "metrics": metrics,
        "val_metrics": _summary(y_val, val_probs, model.decide(val_probs, model.last_input_sets), genres),
        # Presets are chosen on one footing: val micro-F1 at thresholds tuned on val itself,
        # whatever rule the model keeps for its decisions (config.decision_thresholds).
        "val_selection": _summary(
            y_val, val_probs, apply_thresholds(val_probs, tune_thresholds(y_val, val_probs)), genres
        ),
        "val_probs": val_probs.tolist(),
        "test_probs": test_probs.tolist(),
        "thresholds": model.thresholds.tolist(),
        "split_sizes": {k: len(v) for k, v in parts.items()},
    }
    if setup != "split":
        row["peak_rss_mb"] = _peak_rss_mb()
        return row
    row["by_source"] = metrics_by_source(data_dir, test, y_test, test_probs, decisions, genres)
    # Missing inputs: the test split with every poster removed / every text (overview,
    # title, year) removed, scored with the thresholds the model keeps for that case.
    row["missing"] = {}
    for drop, label in (("image", "no_poster"), ("text", "no_text")):
        if (drop == "image" and config.has_image and config.has_text) or (
            drop == "text" and config.has_text and config.has_image
        ):
            probs, dec = model.predict(without(test, drop))
            row["missing"][label] = _summary(y_test, probs, dec, genres)
            probs, dec = model.predict(without(parts["val"], drop))
            row["missing"][f"val_{label}"] = _summary(y_val, probs, dec, genres)
    row["eval_sets"] = {}
    for folder in eval_data:
        examples = load_eval_set(folder, genres)
        if not examples:
            row["eval_sets"][str(folder)] = {"n": 0}
            continue
        probs, dec = model.predict(examples)
        row["eval_sets"][str(folder)] = _summary(labels_matrix(examples, len(genres)), probs, dec, genres)

    # Throughput from raw overview + poster file, no feature cache, encoders already loaded.
    sample = test[: THROUGHPUT_SAMPLE["cuda" if model.device.startswith("cuda") else "cpu"]]
    if model.parts.frozen is not None:
        model.parts.frozen.store = None
    model.predict_proba(sample[:8])
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t1 = time.perf_counter()
    model.predict_proba(sample)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    row["throughput"] = len(sample) / (time.perf_counter() - t1)
    row["cuda_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None
    row["peak_rss_mb"] = _peak_rss_mb()
    return row


def metrics_by_source(data_dir, test, y_test, probs, decisions, genres) -> dict:
    """Test metrics per data source: a check that a model does not only fit one source's style."""
    rows, _ = load_devset(data_dir)
    source = {r["id"]: r["source"] for r in rows}
    out = {}
    for name in sorted({source[ex.key] for ex in test}):
        idx = [i for i, ex in enumerate(test) if source[ex.key] == name]
        if len(idx) < 10:  # too few movies to say anything
            continue
        m = evaluate(y_test[idx], probs[idx], decisions[idx], genres)
        # macro-F1 and AUC over the genres this subset has at all (an absent genre's F1 is 0 by
        # convention and would say nothing about the model)
        present = [j for j in range(len(genres)) if y_test[idx, j].any()]
        mp = evaluate(
            y_test[np.ix_(idx, present)],
            probs[np.ix_(idx, present)],
            decisions[np.ix_(idx, present)],
            [genres[j] for j in present],
        )
        out[name] = {
            "n": len(idx),
            "genres_present": len(present),
            "micro_f1": m["micro_f1"],
            "samples_f1": m["samples_f1"],
            "macro_f1": mp["macro_f1"],
            "roc_auc_macro": mp["roc_auc_macro"],
        }
    return out


# ---------------------------------------------------------------- inference speed
# One measurement per fresh process (see _in_subprocess), so each row's peak RSS is its own.
# Models are built and warmed up on a few movies before the clock starts.


def speed_examples(data_dir, limit: int) -> list[Example]:
    """The first ``limit`` devset movies (file order): the same movies for every row."""
    rows, _ = load_devset(data_dir)
    return [Example(r["id"], r["text"], r["image"]) for r in rows[:limit]]


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def minimal_loop_speed(data_dir, limit: int, threads=None, batch_size: int = 64) -> dict:
    """The naive way with the same two encoders: PIL decode, resize to 224, one forward
    pass each, batches of 64; no project code between the data and the networks."""
    _set_threads(threads)
    import torch
    from PIL import Image
    from sentence_transformers import SentenceTransformer

    from .data import IMAGENET_MEAN, IMAGENET_STD
    from .encoders import EfficientNetLiteEncoder
    from .identity import minilm_path

    examples = speed_examples(data_dir, limit)
    # The naive way is the package's own encode() (the project runs the same network in
    # plain PyTorch, ml.engine.minilm).
    text_net = SentenceTransformer(str(minilm_path()), device="cpu")
    text_net.max_seq_length = 128
    image_net = EfficientNetLiteEncoder(0).eval()
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) * 255
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) * 255
    paths = [ex.image for ex in examples if ex.image]

    def texts(items):
        with torch.inference_mode():
            text_net.encode([ex.text for ex in items], batch_size=batch_size)

    def images(items):
        with torch.inference_mode():
            for start in range(0, len(items), batch_size):
                pixels = [
                    np.asarray(Image.open(p).convert("RGB").resize((224, 224), Image.BILINEAR))
                    for p in items[start : start + batch_size]
                ]
                batch = (torch.from_numpy(np.stack(pixels)).permute(0, 3, 1, 2).float() - mean) / std
                image_net(batch)

    texts(examples[:8])
    images(paths[:8])
    return {
        "n": len(examples),
        "n_images": len(paths),
        "text_s": _timed(lambda: texts(examples)),
        "image_s": _timed(lambda: images(paths)),
        "peak_rss_mb": _peak_rss_mb(),
        "threads": torch.get_num_threads(),
    }


def project_path_speed(
    data_dir, limit: int, config: dict, threads=None, warm: bool = False, batch_size: int | None = None
) -> dict:
    """The project's frozen-feature path (what TrainedModel.logits runs before the head):
    cold (no cache) or warm (a feature cache filled by a first, untimed pass)."""
    _set_threads(threads)
    import torch

    from .registry import get_config
    from .trained import InputParts

    cfg = get_config(config)
    examples = speed_examples(data_dir, limit)
    cache_dir = tempfile.mkdtemp(prefix="genreweb-speed-cache-") if warm else None
    try:
        parts = InputParts(cfg, None, "cpu", cache_dir=cache_dir)
        kwargs = {"batch_size": batch_size} if batch_size else {}
        if warm:
            parts.frozen.text(examples)
            parts.frozen.image(examples, **kwargs)
        else:
            parts.frozen.text(examples[:8])
            parts.frozen.image(examples[:8], **kwargs)
        return {
            "n": len(examples),
            "n_images": sum(1 for ex in examples if ex.image),
            "text_s": _timed(lambda: parts.frozen.text(examples)),
            "image_s": _timed(lambda: parts.frozen.image(examples, **kwargs)),
            "peak_rss_mb": _peak_rss_mb(),
            "threads": torch.get_num_threads(),
        }
    finally:
        if cache_dir:
            import shutil

            shutil.rmtree(cache_dir, ignore_errors=True)


def speed_in_subprocess(fn, *args, **kwargs) -> dict:
    """``fn`` in a fresh process: its peak RSS is that measurement's alone."""
    import functools

    return _in_subprocess(functools.partial(fn, *args, **kwargs))


def _in_subprocess(fn, *args):
    # One fresh process per model: peak RSS is that model's alone and no state leaks.
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
        return pool.submit(fn, *args).result()


def _fmt(value, digits=3):
    if value is None:
        return "-"
    return f"{value:.{digits}f}"


def run_benchmark(
    data_dir,
    models: list[str] | None = None,
    out_dir="results",
    *,
    cache_dir: str | None = None,
    seed: int = DEFAULT_SEED,
    min_genre_count: int = DEFAULT_MIN_GENRE_COUNT,
    device: str | None = None,
    isolate: bool = True,
    ensembles: bool = True,
    threads: int | None = None,
    append: bool = False,
    command: str = "",
    eval_data: list | tuple = (),
    source_shift: bool = False,
) -> list[dict]:
    from .registry import get_config
    from .train import select_device

    models = models or DEFAULT_MODELS
    eval_data = [str(Path(folder)) for folder in eval_data]
    for folder in eval_data:  # a wrong folder fails now, not after the training
        if not (Path(folder) / "movies.csv").exists():
            raise FileNotFoundError(f"--eval-data {folder}: no movies.csv there (a devset-shaped folder is needed)")
    for name in models:
        get_config(name)  # fail on a typo before hours of training
    device = select_device(device)
    on_cpu = device == "cpu"
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    own_cache = cache_dir is None
    cache_dir = cache_dir or tempfile.mkdtemp(prefix="genreweb-bench-cache-")
    genres, rare, counts, parts = prepare(data_dir, min_genre_count, seed)
    print(
        f"devset: {sum(len(p) for p in parts.values())} movies, {len(genres)} genres kept, "
        f"split train/val/test = {len(parts['train'])}/{len(parts['val'])}/{len(parts['test'])}, device {device}"
    )
    if rare:
        print(
            "genres below --min-genre-count excluded from training and scoring: "
            + ", ".join(f"{g} ({c})" for g, c in rare.items())
        )
    call = (lambda fn, *a: _in_subprocess(fn, *a)) if isolate else (lambda fn, *a: fn(*a))

    # Cold feature extraction per frozen encoder, timed once; frozen models then read the cache.
    feature_times = {}
    needed = {get_config(m).text_encoder for m in models if get_config(m).train_mode == "frozen"} | {
        get_config(m).image_encoder for m in models if get_config(m).train_mode == "frozen"
    }
    # A kept --cache-dir remembers the cold extraction times of the run that filled it, so a
    # rerun (e.g. of one head) still reports what extraction really costs.
    cold_file = Path(cache_dir) / "cold_extraction_times.json"
    recorded = json.loads(cold_file.read_text()) if cold_file.exists() else {}
    # The EfficientNet-Lite variants at the image size of the first model using each.
    image_sizes = {}
    for m in models:
        cfg = get_config(m)
        if cfg.train_mode == "frozen" and cfg.image_encoder.startswith("efficientnet_lite"):
            image_sizes.setdefault(cfg.image_encoder, cfg.image_size)
    for encoder in ("minilm", *sorted(image_sizes)):
        if encoder in needed:
            key = f"{encoder}/{device}/seed{seed}/min{min_genre_count}"
            print(f"extracting {encoder} features...", flush=True)
            info = call(
                precompute_features,
                data_dir,
                min_genre_count,
                seed,
                cache_dir,
                device,
                encoder,
                threads,
                image_sizes.get(encoder),
            )
            if info["cached"] == 0:
                recorded[key] = {**info, "measured_at": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
                cold_file.write_text(json.dumps(recorded, indent=1))
            elif key in recorded:
                print(
                    f"  cache was warm ({info['cached']} cached); using the cold time recorded at "
                    f"{recorded[key]['measured_at']}"
                )
                info = recorded[key]
            else:
                info["note"] = f"{info['cached']} of {info['n']} were already cached: not a cold time"
            feature_times[encoder] = info
            print(f"  {encoder}: {info['seconds']:.1f}s for {info['n']} movies, peak RSS {info['peak_rss_mb']:.0f} MB")

    results = []
    for name in models:
        overrides = CPU_OVERRIDES.get(name, {}) if on_cpu else {}
        print(f"== {name} {overrides or ''}", flush=True)
        row = call(_run_model, name, data_dir, min_genre_count, seed, cache_dir, device, overrides, threads, eval_data)
        cfg = get_config(name)
        cold = 0.0
        if cfg.train_mode == "frozen":
            for enc in (cfg.text_encoder, cfg.image_encoder):
                if enc in feature_times:
                    cold += feature_times[enc]["seconds"]
            # fit() from a warm cache: reading features, training the head and tuning thresholds.
            row["head_s"] = row["fit_s"]
            row["train_total_s"] = cold + row["fit_s"]
        else:
            row["train_total_s"] = row["fit_s"]
            row["head_s"] = None
        row["notes"] = cfg.notes + (f"; CPU run cut to {overrides}" if overrides else "")
        m = row["metrics"]
        print(
            f"   micro {m['micro_f1']:.3f} macro {m['macro_f1']:.3f} samples {m['samples_f1']:.3f} "
            f"auc {_fmt(m['roc_auc_macro'])} train {row['train_total_s']:.1f}s "
            f"{row['throughput']:.1f} movies/s",
            flush=True,
        )
        results.append(row)

        if ensembles:
            _add_ensembles(results, parts, genres, device, feature_times)
        _write(results, out_dir, genres, rare, counts, parts, feature_times, device, command, append)

    for name in models if source_shift else ():
        overrides = CPU_OVERRIDES.get(name, {}) if on_cpu else {}
        print(f"== {name}{SHIFT_SUFFIX} {overrides or ''}", flush=True)
        row = call(
            _run_model, name, data_dir, min_genre_count, seed, cache_dir, device, overrides, threads, (), "source-shift"
        )
        row["model"] = name + SHIFT_SUFFIX
        row["notes"] = (
            f"train {row['split_sizes']['train']} / val {row['split_sizes']['val']} TMDB-3000 rows, "
            f"test all {row['split_sizes']['test']} Kaggle rows"
        )
        m = row["metrics"]
        print(f"   micro {m['micro_f1']:.3f} macro {m['macro_f1']:.3f} auc {_fmt(m['roc_auc_macro'])}", flush=True)
        results.append(row)
        _write(results, out_dir, genres, rare, counts, parts, feature_times, device, command, append)

    if own_cache:
        import shutil

        shutil.rmtree(cache_dir, ignore_errors=True)
    return results


def _add_ensembles(results, parts, genres, device, feature_times) -> None:
    by_name = {r["model"]: r for r in results}
    y_val = labels_matrix(parts["val"], len(genres))
    y_test = labels_matrix(parts["test"], len(genres))
    for label, members in ENSEMBLES.items():
        if label in by_name or not all(m in by_name for m in members):
            continue
        val_p = np.mean([np.array(by_name[m]["val_probs"]) for m in members], axis=0)
        test_p = np.mean([np.array(by_name[m]["test_probs"]) for m in members], axis=0)
        thresholds = tune_thresholds(y_val, val_p)
        metrics = evaluate(y_test, test_p, apply_thresholds(test_p, thresholds), genres)
        head_s = sum(by_name[m]["head_s"] or 0 for m in members)
        results.append(
            {
                "model": label,
                "device": device,
                "metrics": metrics,
                "head_s": head_s,
                "train_total_s": head_s + sum(v["seconds"] for v in feature_times.values()),
                # members share their features, so this counts the encoders once per member: a lower bound
                "throughput": 1.0 / sum(1.0 / by_name[m]["throughput"] for m in members),
                "peak_rss_mb": max(by_name[m]["peak_rss_mb"] for m in members),
                "cuda_peak_mb": None,
                "notes": "mean of the members' test probabilities, thresholds re-tuned on val; throughput as if "
                "the members ran one after another (a lower bound: they could share features)",
            }
        )


COLUMNS = [
    "model",
    "setup",
    "micro_f1",
    "macro_f1",
    "samples_f1",
    "roc_auc",
    "ece",
    "ece_uncalibrated",
    "val_micro_f1",
    "val_macro_f1",
    "val_selection_micro_f1",
    "no_poster_micro_f1",
    "no_poster_macro_f1",
    "no_text_micro_f1",
    "no_text_macro_f1",
    "train_total_s",
    "head_s",
    "throughput_movies_s",
    "peak_rss_mb",
    "cuda_peak_mb",
    "device",
    "notes",
]


def _flat(row: dict) -> dict:
    m = row["metrics"]
    val = row.get("val_metrics") or {}
    missing = row.get("missing") or {}
    return {
        "model": row["model"],
        "setup": row.get("setup", "split"),
        "micro_f1": m["micro_f1"],
        "macro_f1": m["macro_f1"],
        "samples_f1": m["samples_f1"],
        "roc_auc": m["roc_auc_macro"],
        "ece": m.get("ece"),
        "ece_uncalibrated": m.get("ece_uncalibrated"),
        "val_micro_f1": val.get("micro_f1"),
        "val_macro_f1": val.get("macro_f1"),
        # rows run before val_selection was recorded: their val figure (their thresholds were tuned on val)
        "val_selection_micro_f1": (row.get("val_selection") or val).get("micro_f1"),
        "no_poster_micro_f1": (missing.get("no_poster") or {}).get("micro_f1"),
        "no_poster_macro_f1": (missing.get("no_poster") or {}).get("macro_f1"),
        "no_text_micro_f1": (missing.get("no_text") or {}).get("micro_f1"),
        "no_text_macro_f1": (missing.get("no_text") or {}).get("macro_f1"),
        "train_total_s": row.get("train_total_s"),
        "head_s": row.get("head_s"),
        "throughput_movies_s": row.get("throughput"),
        "peak_rss_mb": row.get("peak_rss_mb"),
        "cuda_peak_mb": row.get("cuda_peak_mb"),
        "device": row.get("device"),
        "notes": row.get("notes", ""),
    }


def _slim(row: dict) -> dict:
    slim = {k: v for k, v in row.items() if k not in ("val_probs", "test_probs")}
    slim["metrics"] = {k: v for k, v in row["metrics"].items() if k != "calibration"}
    slim["metrics"]["per_genre"] = [
        {k: v for k, v in g.items() if k not in ("pr_curve", "calibration")} for g in row["metrics"]["per_genre"]
    ]
    return slim


def _merge_with_saved(results: list[dict], out_dir: Path, feature_times: dict) -> tuple[list[dict], dict]:
    """--append: keep rows another run already wrote to out_dir (same split) unless redone here."""
    saved_path = out_dir / "benchmark.json"
    if not saved_path.exists():
        return results, feature_times
    saved = json.loads(saved_path.read_text())
    mine = {r["model"] for r in results}
    merged = [r for r in saved.get("results", []) if r["model"] not in mine] + results
    order = {name: i for i, name in enumerate(DEFAULT_MODELS)}
    merged.sort(key=lambda r: order.get(r["model"], len(order)))
    return merged, {**saved.get("feature_extraction", {}), **feature_times}


def _write(results, out_dir: Path, genres, rare, counts, parts, feature_times, device, command, append=False):
    import fcntl

    # Two benchmark processes may append to the same folder; a lock keeps each
    # read-merge-write whole.
    with open(out_dir / ".benchmark-lock.tmp", "w") as lock:  # *.tmp: git-ignored
        fcntl.flock(lock, fcntl.LOCK_EX)
        results = [_slim(r) for r in results]
        commands = [command or "python manage.py benchmark_models --data ../shared/data/devset --out results/"]
        if append:
            results, feature_times = _merge_with_saved(results, out_dir, feature_times)
            saved = out_dir / "benchmark.json"
            if saved.exists():
                earlier = json.loads(saved.read_text()).get("commands", [])
                commands = earlier + [c for c in commands if c not in earlier]
        _write_files(results, out_dir, genres, rare, counts, parts, feature_times, device, commands)


def markdown_table(flat: list[dict]) -> list[str]:
    """The headline table (the devset split's rows; README copies it between its markers)."""
    lines = [
        "| model | micro-F1 | macro-F1 | samples-F1 | ROC AUC | ECE (raw -> calibrated) | val micro / macro | "
        "train total s | head s | movies/s | peak RSS MB | notes |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in flat:
        if row["setup"] != "split":
            continue
        ece = (
            _fmt(row["ece"])
            if row["ece_uncalibrated"] is None
            else f"{_fmt(row['ece_uncalibrated'])} -> {_fmt(row['ece'])}"
        )
        val = "-" if row["val_micro_f1"] is None else f"{_fmt(row['val_micro_f1'])} / {_fmt(row['val_macro_f1'])}"
        lines.append(
            f"| {row['model']} | {_fmt(row['micro_f1'])} | {_fmt(row['macro_f1'])} | {_fmt(row['samples_f1'])} | "
            f"{_fmt(row['roc_auc'])} | {ece} | {val} | {_fmt(row['train_total_s'], 1)} | {_fmt(row['head_s'], 1)} | "
            f"{_fmt(row['throughput_movies_s'], 1)} | {_fmt(row['peak_rss_mb'], 0)} | {row['notes']} |"
        )
    return lines


def _write_files(results, out_dir: Path, genres, rare, counts, parts, feature_times, device, commands):
    flat = [_flat(r) for r in results]
    with open(out_dir / "benchmark.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        for row in flat:
            writer.writerow({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()})
    slim = results
    (out_dir / "benchmark.json").write_text(
        json.dumps(
            {
                "genres": genres,
                "rare_genres_excluded": rare,
                "split_sizes": {k: len(v) for k, v in parts.items()},
                "feature_extraction": feature_times,
                "commands": commands,
                "results": slim,
            },
            indent=1,
        )
    )
    lines = [
        "# Model benchmark (devset test split)",
        "",
        "Command" + ("s" if len(commands) > 1 else "") + ": " + "; ".join(f"`{c}`" for c in commands),
        "",
        f"Device: {device}. Split: iterative stratification 70/15/15, seed 0 -> "
        f"train {len(parts['train'])} / val {len(parts['val'])} / test {len(parts['test'])} movies, "
        f"{len(genres)} genres. Thresholds per genre tuned on val; every movie gets at least its top genre.",
        "",
    ]
    if rare:
        lines += [
            "Genres with fewer than the minimum count are excluded from training and scoring "
            "(too few to learn or to score: 1-2 test examples): "
            + ", ".join(f"{g} ({c} movies)" for g, c in rare.items())
            + ".",
            "",
        ]
    if feature_times:
        lines += [
            "Cold frozen-feature extraction (train+val, no cache): "
            + ", ".join(
                f"{k} {v['seconds']:.0f}s for {v['n']} movies"
                + (f" (measured {v['measured_at']})" if v.get("measured_at") else "")
                + (f" ({v['note']})" if v.get("note") else "")
                for k, v in feature_times.items()
            )
            + ". `train_total_s` of a frozen model = its encoders' cold extraction + head training; "
            "`head_s` = the whole fit() from cached features (cache reads, head training, threshold tuning).",
            "",
        ]
    lines += markdown_table(flat)
    split_rows = [r for r in flat if r["setup"] == "split"]
    # The best model is chosen on validation (never on test); rows without a val figure (the
    # end-to-end runs and post-hoc ensembles) compete only when no row has one.
    with_val = [r for r in split_rows if r["val_selection_micro_f1"] is not None] or split_rows
    best = max(
        with_val,
        key=lambda r: r["val_selection_micro_f1"] if r["val_selection_micro_f1"] is not None else r["micro_f1"],
    )
    lines += [
        "",
        "Best by validation micro-F1 at thresholds tuned on val (the one footing every preset is chosen on, "
        f"whatever rule it keeps for its decisions; its test figures are in the table): **{best['model']}**.",
    ]
    missing = [r for r in split_rows if r["no_poster_micro_f1"] is not None]
    if missing:
        lines += [
            "",
            "Missing inputs (fused models on the test split with every poster removed, and with every "
            "text removed: overview, title and year; the model's thresholds for that case). Compare with "
            "the text-only and image-only rows above:",
            "",
            "| model | all inputs micro / macro | no poster micro / macro | no text micro / macro |",
            "|---|---|---|---|",
        ]
        for r in missing:
            lines.append(
                f"| {r['model']} | {_fmt(r['micro_f1'])} / {_fmt(r['macro_f1'])} | "
                f"{_fmt(r['no_poster_micro_f1'])} / {_fmt(r['no_poster_macro_f1'])} | "
                f"{_fmt(r['no_text_micro_f1'])} / {_fmt(r['no_text_macro_f1'])} |"
            )
    shift = [r for r in flat if r["setup"] == "source-shift"]
    if shift:
        lines += [
            "",
            "Source shift inside the devset (trained and validated on the TMDB-3000 rows only, tested on "
            'every Kaggle "The Movies Dataset" row):',
            "",
            "| model | micro-F1 | macro-F1 | samples-F1 | ROC AUC | ECE | notes |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in shift:
            lines.append(
                f"| {r['model']} | {_fmt(r['micro_f1'])} | {_fmt(r['macro_f1'])} | {_fmt(r['samples_f1'])} | "
                f"{_fmt(r['roc_auc'])} | {_fmt(r['ece'])} | {r['notes']} |"
            )
    evals = [(r["model"], folder, m) for r in results for folder, m in (r.get("eval_sets") or {}).items()]
    if evals:
        lines += [
            "",
            "Extra labeled folders (`--eval-data`), scored with the same models and thresholds:",
            "",
            "| model | folder | movies | micro-F1 | macro-F1 | samples-F1 | ROC AUC | ECE |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for model_name, folder, m in evals:
            lines.append(
                f"| {model_name} | {folder} | {m['n']} | {_fmt(m.get('micro_f1'))} | {_fmt(m.get('macro_f1'))} | "
                f"{_fmt(m.get('samples_f1'))} | {_fmt(m.get('roc_auc_macro'))} | {_fmt(m.get('ece'))} |"
            )
    best_full = next(r for r in results if r["model"] == best["model"])
    lines += ["", "Per-genre test F1 of the best model:", "", "| genre | support | F1 | ROC AUC |", "|---|---|---|---|"]
    for g in best_full["metrics"]["per_genre"]:
        lines.append(f"| {g['genre']} | {g['support']} | {_fmt(g['f1'])} | {_fmt(g['roc_auc'])} |")
    if best_full.get("by_source"):
        lines += [
            "",
            "Test metrics of the best model by data source (text + labels; macro-F1 and AUC over "
            "the genres present in each subset):",
            "",
            "| source | movies | micro-F1 | macro-F1 | samples-F1 | ROC AUC |",
            "|---|---|---|---|---|---|",
        ]
        for name, m in best_full["by_source"].items():
            lines.append(
                f"| {name} | {m['n']} | {_fmt(m['micro_f1'])} | {_fmt(m['macro_f1'])} | "
                f"{_fmt(m['samples_f1'])} | {_fmt(m['roc_auc_macro'])} |"
            )
    (out_dir / "benchmark.md").write_text("\n".join(lines) + "\n")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    run_from_args(vars(args), command="python -m ml.engine.benchmark " + " ".join(argv or sys.argv[1:]))


def add_arguments(parser) -> None:
    parser.add_argument("--data", required=True, help="folder with movies.csv and posters/")
    parser.add_argument("--models", default="", help="comma-separated preset names (default: all families)")
    parser.add_argument("--out", default="results", help="output folder for benchmark.csv/.md/.json")
    parser.add_argument(
        "--cache-dir", default=None, help="feature cache folder (default: a temporary one, removed after)"
    )
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument(
        "--min-genre-count",
        type=int,
        default=DEFAULT_MIN_GENRE_COUNT,
        help=f"genres with fewer movies are reported and excluded (default {DEFAULT_MIN_GENRE_COUNT})",
    )
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--no-ensembles", action="store_true")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads per model (default: torch's choice; 1 is fastest on a busy shared box)",
    )
    parser.add_argument(
        "--append",
        action="store_true",
        help="merge with rows already in --out (e.g. a second process running other models)",
    )
    parser.add_argument(
        "--eval-data",
        nargs="+",
        default=[],
        metavar="DIR",
        help="extra labeled folders (movies.csv + posters/, the devset's shape) scored beside the test split",
    )
    parser.add_argument(
        "--source-shift",
        action="store_true",
        help="also train each model on the devset's TMDB-3000 rows and test it on its Kaggle rows",
    )
    parser.add_argument(
        "--no-isolate",
        action="store_true",
        help="train in this process instead of one fresh process per model (peak memory then accumulates)",
    )


def run_from_args(opts: dict, command: str = "") -> list[dict]:
    models = [m.strip() for m in (opts.get("models") or "").split(",") if m.strip()] or None
    return run_benchmark(
        opts["data"],
        models,
        opts.get("out") or "results",
        cache_dir=opts.get("cache_dir"),
        seed=opts.get("seed", DEFAULT_SEED),
        min_genre_count=opts.get("min_genre_count", DEFAULT_MIN_GENRE_COUNT),
        device=opts.get("device"),
        ensembles=not opts.get("no_ensembles"),
        threads=opts.get("threads"),
        isolate=not opts.get("no_isolate"),
        append=bool(opts.get("append")),
        command=command,
        eval_data=opts.get("eval_data") or [],
        source_shift=bool(opts.get("source_shift")),
    )


if __name__ == "__main__":
    main()
