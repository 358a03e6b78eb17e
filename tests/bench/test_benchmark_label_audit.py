"""The label-audit benchmark's own parts: the injection it scores against and the figures it
prints (the audit core itself is tested in tests/ml/test_audit_engine.py)."""

from __future__ import annotations

import io

import numpy as np
import pytest

from bench.management.commands.benchmark_label_audit import Command, inject, ranking_figures
from ml.engine.audit import MISSING, WRONG, AuditResult


def labels(n=400, k=6, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.random((n, k)) < np.linspace(0.5, 0.05, k)
    y[~y.any(axis=1), 0] = True
    return y


def test_inject_drops_and_adds_the_asked_share_and_keeps_a_label_per_movie():
    y = labels()
    noisy, injected = inject(y, drop=0.05, add=0.05, seed=3)
    dropped = [p for p, kind in injected.items() if kind == MISSING]
    added = [p for p, kind in injected.items() if kind == WRONG]
    assert len(dropped) == round(0.05 * y.sum())
    assert len(added) == round(0.05 * len(y))
    assert all(y[p] and not noisy[p] for p in dropped)
    assert all(not y[p] and noisy[p] for p in added)
    assert noisy.any(axis=1).all()  # never a movie's last label
    # nothing else moved
    changed = {tuple(map(int, p)) for p in np.argwhere(noisy != y)}
    assert changed == set(injected)
    # a fixed seed is a fixed benchmark
    again, same = inject(y, drop=0.05, add=0.05, seed=3)
    assert (again == noisy).all() and same == injected


def test_ranking_figures_by_hand():
    truth = {(0, 0), (1, 1), (2, 0)}
    order = np.array([(0, 0), (5, 5), (1, 1), (6, 6), (7, 7)])  # (2, 0) never ranked
    f = ranking_figures(order, truth, ks=(1, 2, 4))
    assert f["p@1"] == 1.0 and f["p@2"] == 0.5 and f["p@4"] == 0.5
    assert f["recall@n"] == pytest.approx(2 / 3)  # 2 of 3 in the first 3
    assert f["pr_auc"] == pytest.approx((1 / 1 + 2 / 3) / 3)  # a missed one counts 0


def test_show_lists_the_pairs_a_reviewer_reads():
    y = np.array([[True, False], [True, True]])
    noisy = np.array([[True, True], [True, False]])
    result = AuditResult(
        genres=["Drama", "Comedy"],
        probs=np.array([[0.9, 0.05], [0.8, 0.95]]),
        labeled=np.array([True, True]),
        fold=np.array([0, 1]),
        thresholds=np.array([0.5, 0.4]),
        flagged=np.zeros((2, 2), bool),
        quality=np.ones((2, 2)),
        uncertainty=np.zeros(2),
    )
    rows = [{"title": "Heat", "year": 1995}, {"title": "Big", "year": 1988}]
    command = Command(stdout=io.StringIO())
    command._show(np.array([(1, 1), (0, 1)]), result, rows, ["Drama", "Comedy"], y, noisy, {(1, 1)})
    lines = command.stdout.getvalue().strip().splitlines()
    assert (
        "injected missing Comedy" in lines[0] and "p=0.95 t=0.40 | Big (1988) Drama (devset: Drama|Comedy)" in lines[0]
    )
    assert (
        "injected" not in lines[1]
        and "wrong   Comedy" in lines[1]
        and "Heat (1995) Drama|Comedy (devset: Drama)" in lines[1]
    )


def test_the_command_end_to_end_on_a_small_folder(tmp_path, monkeypatch):
    """The whole command on a generated folder, with features that reveal each movie's
    genres (the frozen encoders are stubbed: their features are tested elsewhere)."""
    import csv

    from django.core.management import call_command

    import ml.services.audit as audit_service

    genres = ["Drama", "Comedy", "Horror"]
    y = labels(n=240, k=3, seed=4)
    with open(tmp_path / "movies.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "title", "year", "overview", "genres", "poster"])
        for i, row in enumerate(y):
            writer.writerow(
                [i + 1, f"Movie {i}", 2000, "words", "|".join(g for g, on in zip(genres, row, strict=True) if on), ""]
            )

    def features(config, examples, cache_dir=None, progress=None):
        rng = np.random.default_rng(0)
        x = np.zeros((len(examples), 8), dtype=np.float32)
        for i, ex in enumerate(examples):
            assert ex.title == f"Movie {int(ex.key) - 1}"  # titles reach presets that read them
            truth = y[int(ex.key) - 1]
            x[i, :3] = truth * 4.0
        x += rng.normal(0, 0.8, x.shape).astype(np.float32)
        return x, [(0, 4), (4, 8)]

    monkeypatch.setattr(audit_service, "frozen_features", features)
    out = io.StringIO()
    call_command(
        "benchmark_label_audit", data=str(tmp_path), drop=0.05, add=0.05, seed=2, no_baseline=True, show=5, stdout=out
    )
    text = out.getvalue()
    assert "injected" in text and "| audit (out-of-fold" in text and "PR-AUC" in text
    shown = [line for line in text.splitlines() if " | Movie " in line]
    assert len(shown) == 5 and shown[0].startswith("   1 ")
    assert "queue at margin >= 0.9 (default)" in text
