"""How should a model's decision thresholds follow from its validation scores? Fits a preset
on the devset split of each seed (as benchmark_models does), then, on its calibrated val
scores only, sets thresholds by each rule on (folds - 1) / folds of val and scores the held
fold; the held folds' decisions, pooled, give micro/macro-F1 over the whole val set, averaged
over repeats. Test scores are never read: this is how a rule is chosen.

    python manage.py benchmark_thresholds --data ../shared/data/devset --seeds 0 1 2 --cache-dir <feature cache>

Rules: "tuned" and "half-best-f1" (ml.engine.thresholds.tune_thresholds), their mean, and one
threshold for every genre (the grid point of best micro-F1). Quality figures only: no test
needs the devset.
"""

from __future__ import annotations

import numpy as np
from django.core.management.base import BaseCommand

from ml.engine.metrics import evaluate, micro_f1
from ml.engine.thresholds import DEFAULT_GRID, apply_thresholds, tune_thresholds


def one_threshold(y, p):
    """The grid point that gives the best micro-F1 as every genre's threshold."""
    scores = [micro_f1(y, apply_thresholds(p, np.full(y.shape[1], t))) for t in DEFAULT_GRID]
    return np.full(y.shape[1], DEFAULT_GRID[int(np.argmax(scores))])


RULES = {
    "per-genre tuned": lambda y, p: tune_thresholds(y, p),
    "half the best F1": lambda y, p: tune_thresholds(y, p, rule="half-best-f1"),
    "mean of the two": lambda y, p: (tune_thresholds(y, p) + tune_thresholds(y, p, rule="half-best-f1")) / 2,
    "one threshold for every genre": one_threshold,
}


def held_out_scores(y, p, genres, folds: int, repeats: int, seed: int = 1) -> dict[str, tuple[float, float]]:
    """{rule: (micro-F1, macro-F1)} of decisions made with thresholds set on the other folds."""
    y = np.asarray(y, dtype=bool)
    rng = np.random.default_rng(seed)
    out = {name: [] for name in RULES}
    for _ in range(repeats):
        parts = np.array_split(rng.permutation(len(y)), folds)
        pooled = {name: np.zeros_like(y) for name in RULES}
        for i, held in enumerate(parts):
            fit_on = np.concatenate([part for j, part in enumerate(parts) if j != i])
            for name, rule in RULES.items():
                pooled[name][held] = apply_thresholds(p[held], rule(y[fit_on], p[fit_on]), min_one=True)
        for name, decisions in pooled.items():
            m = evaluate(y, p, decisions, genres)
            out[name].append((m["micro_f1"], m["macro_f1"]))
    return {name: tuple(np.mean(v, axis=0)) for name, v in out.items()}


class Command(BaseCommand):
    help = "Compare decision-threshold rules on a preset's calibrated val scores (held-out folds of val)."

    def add_arguments(self, parser):
        parser.add_argument("--data", required=True, help="folder with movies.csv and posters/")
        parser.add_argument("--model", default=None, help="preset (default: the recommended one)")
        parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
        parser.add_argument("--min-genre-count", type=int, default=20)
        parser.add_argument("--folds", type=int, default=5)
        parser.add_argument("--repeats", type=int, default=10)
        parser.add_argument("--cache-dir", default=None, help="feature cache (a warm one makes it quick)")

    def handle(self, *args, **opts):
        from ml.engine.benchmark import prepare
        from ml.engine.data import labels_matrix
        from ml.engine.registry import RECOMMENDED_PRESET, get_config
        from ml.engine.train import fit

        config = get_config(opts["model"] or RECOMMENDED_PRESET)
        table = {}
        for seed in opts["seeds"]:
            genres, _, _, parts = prepare(opts["data"], opts["min_genre_count"], seed)
            model = fit(
                config, genres, parts["train"], parts["val"], cache_dir=opts["cache_dir"], log=lambda line: None
            )
            p = np.asarray(model.predict_proba(parts["val"]))
            y = labels_matrix(parts["val"], len(genres))
            table[seed] = held_out_scores(y, p, genres, opts["folds"], opts["repeats"])
            self.stdout.write(f"seed {seed}: {len(y)} val movies")
        seeds = opts["seeds"]
        self.stdout.write("")
        self.stdout.write(
            f"{config.name}: val micro / macro-F1, thresholds set on {opts['folds'] - 1}/{opts['folds']} of val"
        )
        self.stdout.write("| rule | " + " | ".join(f"seed {s}" for s in seeds) + " | mean |")
        self.stdout.write("|---|" + "---|" * (len(seeds) + 1))
        for name in RULES:
            cells = [table[s][name] for s in seeds]
            mean = np.mean(cells, axis=0)
            row = " | ".join(f"{mi:.3f} / {ma:.3f}" for mi, ma in [*cells, mean])
            self.stdout.write(f"| {name} | {row} |")
