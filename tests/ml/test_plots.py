"""Report plots: valid PNGs, and layouts that read at a glance (a panel per genre for PR
curves, each training series on its own axis)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from ml import plots

GENRES = [f"Genre {i:02d}" for i in range(18)]


def png_size(data: bytes) -> tuple[int, int]:
    image = Image.open(io.BytesIO(data))
    image.verify()  # a complete, valid PNG
    assert image.format == "PNG"
    return image.size


def pr_curve(seed: int) -> dict:
    rng = np.random.default_rng(seed)
    recall = np.linspace(0, 1, 30)
    precision = np.clip(1 - recall * rng.uniform(0.2, 0.8) + rng.normal(0, 0.02, 30), 0, 1)
    return {"precision": precision.tolist(), "recall": recall.tolist()}


@pytest.mark.slow  # renders full matplotlib figures (seconds)
def test_pr_curves_are_small_multiples_one_panel_per_genre():
    curves = {genre: pr_curve(i) for i, genre in enumerate(GENRES)}
    fig = plots.pr_curves_figure(curves)
    assert len(fig.axes) == 18  # 5 x 4 grid, the two spare cells removed
    assert sorted(ax.get_title() for ax in fig.axes) == GENRES
    assert all(ax.get_legend() is None for ax in fig.axes)  # nothing drawn over the data
    assert all(len(ax.get_lines()) == 1 for ax in fig.axes)
    width, height = png_size(plots.pr_curves(curves))
    assert width > 600 and height > 400


def test_pr_curves_respect_max_genres_and_missing_data():
    curves = {genre: pr_curve(i) for i, genre in enumerate(GENRES)}
    curves["Empty"] = {"precision": [], "recall": []}
    assert len(plots.pr_curves_figure(curves, max_genres=6).axes) == 6
    assert plots.pr_curves_figure({}) is None
    png_size(plots.pr_curves({}))  # a "no data" note, still an image


@pytest.mark.slow  # renders full matplotlib figures (seconds)
def test_training_losses_each_get_their_own_axis():
    history = [
        {"epoch": e, "train_loss": 6 / e + 1.5, "val_loss": 0.6 - 0.02 * e, "val_micro_f1": 0.3 + 0.03 * e}
        for e in range(1, 11)
    ]
    fig = plots.training_curves_figure(history)
    assert len(fig.axes) == 3
    train, val, f1 = fig.axes
    assert train.get_title().startswith("train loss") and val.get_title().startswith("validation loss")
    assert train.get_ylim() != val.get_ylim()  # scaled to their own data
    assert val.get_ylim()[1] < 1 < train.get_ylim()[1]
    assert f1.get_ylim() == (0, 1)
    assert "best 0.4" in val.get_title() and "epoch 10" in val.get_title()
    png_size(plots.training_curves(history))


def test_training_curves_with_only_a_train_loss():
    fig = plots.training_curves_figure([{"epoch": 1, "train_loss": 2.0}, {"epoch": 2, "train_loss": 1.5}])
    assert len(fig.axes) == 1
    assert plots.training_curves_figure([]) is None
    png_size(plots.training_curves([]))


@pytest.mark.slow  # renders full matplotlib figures (seconds)
def test_every_other_plot_is_a_valid_png():
    rows = [{"genre": g, "f1": 0.5, "tp": 3, "fp": 1, "fn": 2, "tn": 9} for g in GENRES[:5]]
    for data in (
        plots.f1_bars(rows),
        plots.f1_bars(rows, rows),
        plots.confusion_grid(rows),
        plots.calibration_curve(
            {"mean_confidence": [0.1, 0.5], "fraction_positive": [0.2, 0.4], "count": [3, 4], "ece": 0.05}
        ),
    ):
        png_size(data)
