"""How well does the label audit find known label errors? Injects errors into a devset folder
(fixed seed), runs the audit core on it and, side by side, today's ranking (in-sample
disagreement of a production model trained on the same noisy labels), and prints
precision@50/100/200, recall at the number injected and PR-AUC for the injected pairs.

    python manage.py benchmark_label_audit --data ../shared/data/devset --drop 0.05 --add 0.05 --seed 1

Reads movies.csv + posters/ directly (no database). Features come from the audit service's
one feature function (``--cache-dir``: a warm feature cache makes it quick). Quality figures
only: no test needs the devset.
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter

import numpy as np
from django.core.management.base import BaseCommand

from ml.engine.audit import MISSING, QUEUE_MIN_MARGIN, WRONG, audit, queue_issues, ranked_pairs
from ml.engine.data import labels_matrix

TARGET_P100 = 0.7
TARGET_PR_AUC = 0.5
TARGET_RATIO = 2.0


def inject(y: np.ndarray, drop: float, add: float, seed: int) -> tuple[np.ndarray, dict]:
    """Noisy copy of ``y`` and the injected pairs {(row, genre): kind}.

    ``drop``: that fraction of all label pairs loses its genre, never a movie's last one;
    ``add``: that fraction of movies gains a genre it lacks, drawn by genre frequency."""
    rng = np.random.default_rng(seed)
    noisy = y.copy().astype(bool)
    injected: dict[tuple[int, int], str] = {}
    pairs = np.argwhere(noisy)
    want = int(round(drop * len(pairs)))
    for i, j in pairs[rng.permutation(len(pairs))]:
        if len([p for p in injected.values() if p == MISSING]) >= want:
            break
        if noisy[i].sum() > 1:
            noisy[i, j] = False
            injected[(int(i), int(j))] = MISSING
    freq = y.sum(axis=0).astype(np.float64)
    for i in rng.choice(len(y), size=int(round(add * len(y))), replace=False):
        p = np.where(noisy[i] | y[i], 0.0, freq)
        if p.sum() == 0:
            continue
        j = int(rng.choice(len(p), p=p / p.sum()))
        noisy[i, j] = True
        injected[(int(i), j)] = WRONG
    return noisy, injected


def ranking_figures(order: np.ndarray, truth: set, ks=(50, 100, 200)) -> dict:
    """precision@k, recall at the number injected and average precision (PR-AUC) of a
    ranking of (row, genre) pairs against the injected ones."""
    hits = np.array([(int(r), int(c)) in truth for r, c in order], dtype=bool)
    cum = np.cumsum(hits)
    out = {f"p@{k}": float(cum[min(k, len(hits)) - 1] / min(k, len(hits))) for k in ks}
    n = len(truth)
    out["recall@n"] = float(cum[min(n, len(hits)) - 1] / n) if n else 0.0
    ranks = np.flatnonzero(hits) + 1
    out["pr_auc"] = float((cum[ranks - 1] / ranks).sum() / n) if n else 0.0
    return out


def todays_ranking(config, genres, examples, noisy, x, cache_dir, seed) -> np.ndarray:
    """Today's queue order per pair: a production model (the engine's fit of ``config`` on a
    70/15/15 split of the noisy labels, as a snapshot trains it) scores every movie in-sample;
    a pair's disagreement is how far past its threshold the score sits on the other side of the
    label (today's Prediction.disagreement, per genre)."""
    from ml.engine.split import iterative_stratified_split
    from ml.engine.train import fit

    split = iterative_stratified_split(noisy, (0.7, 0.15, 0.15), seed=seed)
    noisy_examples = [
        dataclasses.replace(ex, labels=[int(j) for j in np.flatnonzero(noisy[i])]) for i, ex in enumerate(examples)
    ]
    train = [e for e, s in zip(noisy_examples, split, strict=True) if s == "train"]
    val = [e for e, s in zip(noisy_examples, split, strict=True) if s == "val"]
    model = fit(config, genres, train, val, cache_dir=cache_dir)
    probs = model.predict_proba(noisy_examples)
    t = np.asarray(model.thresholds, dtype=np.float64)[None, :]
    score = np.where(noisy, (t - probs) / np.maximum(t, 1e-6), (probs - t) / np.maximum(1 - t, 1e-6))
    r, c = np.meshgrid(np.arange(len(noisy)), np.arange(len(genres)), indexing="ij")
    order = np.argsort(-score.ravel(), kind="stable")
    return np.stack([r.ravel()[order], c.ravel()[order]], axis=1)


class Command(BaseCommand):
    help = "Inject known label errors into a devset folder and measure how well the audit finds them."

    def add_arguments(self, parser):
        parser.add_argument("--data", required=True, help="folder with movies.csv and posters/")
        parser.add_argument("--drop", type=float, default=0.05)
        parser.add_argument("--add", type=float, default=0.05)
        parser.add_argument("--seed", type=int, default=1)
        parser.add_argument("--folds", type=int, default=5)
        parser.add_argument("--config", default="minilm+effnet-logreg", help="frozen-encoder preset")
        parser.add_argument("--cache-dir", default=None, help="feature cache (default: GENREWEB_ML_CACHE_DIR/features)")
        parser.add_argument("--no-baseline", action="store_true", help="skip today's ranking")
        parser.add_argument(
            "--show",
            type=int,
            default=0,
            metavar="N",
            help="also list the audit's first N pairs (title, labels, suspect, injected or not) to read them",
        )

    def handle(self, *args, **opts):
        from ml.engine.benchmark import devset_examples, load_devset
        from ml.engine.registry import get_config
        from ml.services.audit import default_cache_dir, frozen_features

        config = get_config(opts["config"])
        cache_dir = opts["cache_dir"] or default_cache_dir()
        rows, genres = load_devset(opts["data"])
        examples = devset_examples(rows, genres)  # with title and year, for presets whose text reads them
        y = labels_matrix(examples, len(genres)).astype(bool)
        noisy, injected = inject(y, opts["drop"], opts["add"], opts["seed"])
        kinds = Counter(injected.values())
        self.stdout.write(
            f"{len(examples)} movies, {len(genres)} genres, {int(y.sum())} label pairs; injected "
            f"{kinds[MISSING]} dropped + {kinds[WRONG]} added = {len(injected)} (seed {opts['seed']})"
        )

        t0 = time.perf_counter()
        x, views = frozen_features(config, examples, cache_dir=cache_dir)
        features_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        result = audit(
            x,
            noisy,
            noisy.any(axis=1),
            genres,
            folds=opts["folds"],
            seed=opts["seed"],
            views=views,
            progress=lambda message, fraction: self.stdout.write(f"  {fraction:4.0%} {message}"),
        )
        audit_s = time.perf_counter() - t1
        truth = set(injected)
        figures = {
            "audit (out-of-fold, cleanlab flags, margin order)": ranking_figures(ranked_pairs(result, noisy), truth)
        }
        quality_order = np.argsort(np.where(result.labeled[:, None], result.quality, np.inf).ravel(), kind="stable")
        pair_rows, pair_cols = np.divmod(quality_order[: int(result.labeled.sum()) * len(genres)], len(genres))
        figures["audit, cleanlab quality order"] = ranking_figures(np.stack([pair_rows, pair_cols], axis=1), truth)
        if not opts["no_baseline"]:
            t2 = time.perf_counter()
            order = todays_ranking(config, genres, examples, noisy, x, cache_dir, opts["seed"])
            figures["today (in-sample disagreement)"] = ranking_figures(order, truth)
            baseline_s = time.perf_counter() - t2

        if opts["show"]:
            self._show(ranked_pairs(result, noisy)[: opts["show"]], result, rows, genres, y, noisy, truth)
        flagged_movies = int(result.flagged.any(axis=1).sum())
        found = {(int(r), int(c)) for r, c in np.argwhere(result.flagged)}
        self.stdout.write("")
        self.stdout.write("| ranking | p@50 | p@100 | p@200 | recall@n | PR-AUC |")
        self.stdout.write("|---|---|---|---|---|---|")
        for name, f in figures.items():
            self.stdout.write(
                f"| {name} | {f['p@50']:.3f} | {f['p@100']:.3f} | {f['p@200']:.3f} | {f['recall@n']:.3f} | {f['pr_auc']:.3f} |"
            )
        self.stdout.write("")
        self.stdout.write(
            f"flagged issues: {len(found)} pairs on {flagged_movies} movies "
            f"({flagged_movies / len(examples):.1%} of the movies; the likely-label-errors queue), "
            f"{len(found & truth)} of them injected (precision {len(found & truth) / max(len(found), 1):.3f}, "
            f"recall {len(found & truth) / max(len(truth), 1):.3f}); L2 {result.l2:g}"
        )
        for cutoff in sorted({0.8, QUEUE_MIN_MARGIN, 0.95}):
            queued = queue_issues(result, cutoff)
            hit = {(int(r), int(c)) for r, c in np.argwhere(queued)} & truth

            self.stdout.write(
                f"queue at margin >= {cutoff:g}{' (default)' if cutoff == QUEUE_MIN_MARGIN else ''}: "
                f"{int(queued.sum())} issues on {int(queued.any(axis=1).sum())} movies "
                f"({queued.any(axis=1).mean():.1%}), {len(hit)} injected ({len(hit) / max(int(queued.sum()), 1):.3f})"
            )
        per_genre = Counter(genres[c] for _, c in np.argwhere(queue_issues(result)))
        injected_genre = Counter(genres[c] for _, c in truth)
        counts = y.sum(axis=0)
        self.stdout.write(
            "per genre (labels / injected / in the queue): "
            + ", ".join(f"{g} {int(counts[j])}/{injected_genre[g]}/{per_genre[g]}" for j, g in enumerate(genres))
        )
        from ml.services.review import unsure_limits

        limit, floor = unsure_limits(len(examples))  # one batch: nobody has reviewed anything here
        above = np.sort(result.uncertainty[result.uncertainty >= floor])[::-1]
        batch = above[:limit]
        spread = f", expected wrong decisions {batch[-1]:.2f} to {batch[0]:.2f}" if len(batch) else ""
        scale = " / ".join(str(int((result.uncertainty >= c).sum())) for c in (2.0, 3.0, 4.0))
        self.stdout.write(
            f"model unsure (the most uncertain movies, at most {limit}, each >= {floor:g} expected wrong genre "
            f"decisions): {len(batch)} movies ({len(batch) / len(examples):.1%}){spread}; {len(above)} movies "
            f"above the floor; for scale, >= 2 / 3 / 4 expected wrong decisions: {scale} movies"
        )
        self.stdout.write(
            f"wall time: features {features_s:.1f}s, audit {audit_s:.1f}s "
            f"(cross-fit {result.timings['cross_fit_s']:.1f}s, confident learning {result.timings['issues_s']:.1f}s)"
            + (f", today's ranking {baseline_s:.1f}s" if not opts["no_baseline"] else "")
        )
        if not opts["no_baseline"]:
            a, b = (
                figures["audit (out-of-fold, cleanlab flags, margin order)"],
                figures["today (in-sample disagreement)"],
            )
            ratio = a["pr_auc"] / max(b["pr_auc"], 1e-9)
            self.stdout.write(
                f"targets: p@100 {a['p@100']:.3f} (>= {TARGET_P100}), PR-AUC {a['pr_auc']:.3f} (>= {TARGET_PR_AUC}), "
                f"PR-AUC ratio to today {ratio:.2f}x (>= {TARGET_RATIO}x)"
            )

    def _show(self, pairs, result, rows, genres, y, noisy, truth):
        """The first pairs of the ranking as a reviewer would read them: whether the pair was
        injected, the suspect (kind, genre, out-of-fold score, threshold), the movie and its
        labels as audited (and as the devset has them, where injection changed them)."""
        self.stdout.write("")
        for rank, (r, c) in enumerate(pairs, start=1):
            r, c = int(r), int(c)
            kind = WRONG if noisy[r, c] else MISSING
            labels = "|".join(genres[j] for j in np.flatnonzero(noisy[r]))
            original = "|".join(genres[j] for j in np.flatnonzero(y[r]))
            self.stdout.write(
                f"{rank:4d} {'injected' if (r, c) in truth else '        '} {kind:7s} {genres[c]:16s} "
                f"p={result.probs[r, c]:.2f} t={result.thresholds[c]:.2f} | {rows[r]['title']} ({rows[r].get('year')}) "
                f"{labels}" + ("" if original == labels else f" (devset: {original})")
            )
