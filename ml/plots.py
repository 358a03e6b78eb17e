"""Server-side plots of model reports (matplotlib, 'Agg' backend, PNG bytes).

Inputs are the stored records (Evaluation.curves, GenreMetric rows, TrainingRun.history),
so a plot is a pure function of immutable data: ml.views caches the bytes by evaluation id
and timestamp. Every function returns PNG bytes; with no data it draws a short note instead
of failing, so a report page never shows a broken image.
"""

from __future__ import annotations

import io
import math

import matplotlib

matplotlib.use("Agg")  # no display on servers; must come before pyplot
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

ACCENT = "#2f6fed"
SECOND = "#e8833a"
GRID = "#e1e4ec"
PLOT_KINDS = ("f1", "pr", "confusion", "calibration", "training")


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _style(ax) -> None:
    ax.grid(True, color=GRID, linewidth=0.8)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def no_data(message: str) -> bytes:
    fig, ax = plt.subplots(figsize=(5, 1.2))
    ax.axis("off")
    ax.text(0.5, 0.5, message, ha="center", va="center", color="#6b7385", fontsize=11)
    return _png(fig)


def f1_bars(rows: list[dict], compare: list[dict] | None = None, labels=("this", "other")) -> bytes:
    """Per-genre F1 as horizontal bars, best first; ``compare`` adds a second version's bars."""
    if not rows:
        return no_data("No per-genre metrics yet")
    rows = sorted(rows, key=lambda r: r["f1"])
    names = [r["genre"] for r in rows]
    fig, ax = plt.subplots(figsize=(6.5, 0.32 * len(rows) + 1))
    ys = list(range(len(rows)))
    if compare:
        other = {r["genre"]: r["f1"] for r in compare}
        h = 0.4
        ax.barh([y + h / 2 for y in ys], [r["f1"] for r in rows], height=h, color=ACCENT, label=labels[0])
        ax.barh([y - h / 2 for y in ys], [other.get(n, 0.0) for n in names], height=h, color=SECOND, label=labels[1])
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.09), ncol=2, frameon=False)  # below: no overlap
    else:
        ax.barh(ys, [r["f1"] for r in rows], color=ACCENT)
        for y, r in zip(ys, rows, strict=False):
            ax.text(r["f1"] + 0.01, y, f"{r['f1']:.2f}", va="center", fontsize=8, color="#1d2330")
    ax.set_yticks(ys, names, fontsize=9)
    ax.set_xlim(0, 1.08)
    ax.set_xlabel("F1")
    _style(ax)
    return _png(fig)


def pr_curves_figure(curves: dict[str, dict], max_genres: int = 20) -> Figure | None:
    """Small multiples: one precision-recall panel per genre (alphabetical, up to
    ``max_genres``), on shared axes so panels compare at a glance; no legend to hide data."""
    usable = {g: c for g, c in (curves or {}).items() if c.get("precision") and c.get("recall")}
    if not usable:
        return None
    genres = sorted(usable)[:max_genres]
    cols = min(5, len(genres))
    lines = math.ceil(len(genres) / cols)
    fig, axes = plt.subplots(
        lines, cols, figsize=(1.9 * cols + 0.6, 1.75 * lines + 0.5), squeeze=False, sharex=True, sharey=True
    )
    for ax in axes.flat[len(genres) :]:
        fig.delaxes(ax)
    for ax, genre in zip(axes.flat, genres, strict=False):
        curve = usable[genre]
        ax.fill_between(curve["recall"], curve["precision"], color=ACCENT, alpha=0.12, linewidth=0, step=None)
        ax.plot(curve["recall"], curve["precision"], linewidth=1.4, color=ACCENT)
        ax.set_title(genre, fontsize=9)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.tick_params(labelsize=7)
        _style(ax)
    fig.supxlabel("recall", fontsize=9)
    fig.supylabel("precision", fontsize=9)
    fig.tight_layout()
    return fig


def pr_curves(curves: dict[str, dict], max_genres: int = 20) -> bytes:
    """Precision-recall curves, one small panel per genre."""
    fig = pr_curves_figure(curves, max_genres)
    return _png(fig) if fig is not None else no_data("No precision-recall curves stored")


def confusion_grid(rows: list[dict]) -> bytes:
    """One 2x2 confusion matrix per genre (rows: true yes/no, columns: predicted yes/no)."""
    if not rows:
        return no_data("No confusion counts yet")
    n = len(rows)
    cols = min(5, n)
    lines = math.ceil(n / cols)
    fig, axes = plt.subplots(lines, cols, figsize=(2.1 * cols, 2.1 * lines), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, r in zip(axes.flat, sorted(rows, key=lambda r: r["genre"]), strict=False):
        matrix = [[r["tp"], r["fn"]], [r["fp"], r["tn"]]]
        total = max(1, sum(map(sum, matrix)))
        ax.imshow([[v / total for v in line] for line in matrix], cmap="Blues", vmin=0, vmax=0.6)
        for i in range(2):
            for j in range(2):
                value = matrix[i][j]
                ax.text(
                    j,
                    i,
                    f"{value}",
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if value / total > 0.35 else "#1d2330",
                )
        ax.set_title(r["genre"], fontsize=9)
        ax.set_xticks([0, 1], ["pred yes", "pred no"], fontsize=6)
        ax.set_yticks([0, 1], ["true yes", "true no"], fontsize=6)
        ax.axis("on")
        for spine in ax.spines.values():
            spine.set_visible(False)
    fig.tight_layout()
    return _png(fig)


def calibration_curve(calibration: dict | None) -> bytes:
    """Reliability diagram: mean predicted probability vs observed positive fraction per bin."""
    if not calibration or not calibration.get("mean_confidence"):
        return no_data("No calibration data stored")
    pairs = [
        (c, f, n)
        for c, f, n in zip(
            calibration["mean_confidence"], calibration["fraction_positive"], calibration.get("count", []), strict=False
        )
        if c is not None and f is not None
    ]
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], linestyle="--", color="#9aa1b1", linewidth=1, label="perfect")
    if pairs:
        ax.plot([p[0] for p in pairs], [p[1] for p in pairs], marker="o", color=ACCENT, label="model")
    ece = calibration.get("ece")
    ax.set_title(f"ECE {ece:.3f}" if ece is not None else "", fontsize=10)
    ax.set_xlabel("mean predicted probability")
    ax.set_ylabel("fraction positive")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(frameon=False, loc="upper left")
    _style(ax)
    return _png(fig)


TRAINING_SERIES = (  # history key, panel title, colour, y range
    ("train_loss", "train loss", ACCENT, None),
    ("val_loss", "validation loss", SECOND, None),
    ("val_micro_f1", "validation micro-F1", "#2e9e6a", (0, 1)),
)


def training_curves_figure(history: list[dict]) -> Figure | None:
    """One panel per recorded series (train loss, validation loss, validation micro-F1) on a
    shared epoch axis: the losses are on different scales (a training loss can include
    regularisation or sum over genres), so each gets its own y axis."""
    if not history:
        return None
    epochs = [h.get("epoch", i + 1) for i, h in enumerate(history)]
    series = [(key, title, colour, ylim, [h.get(key) for h in history]) for key, title, colour, ylim in TRAINING_SERIES]
    series = [s for s in series if any(v is not None for v in s[4])]
    if not series:
        return None
    fig, axes = plt.subplots(1, len(series), figsize=(3.1 * len(series) + 0.4, 3.0), squeeze=False)
    for ax, (key, title, colour, ylim, values) in zip(axes.flat, series, strict=False):
        points = [(e, v) for e, v in zip(epochs, values, strict=False) if v is not None]
        ax.plot([p[0] for p in points], [p[1] for p in points], color=colour, marker="." if len(points) < 40 else None)
        best = min(points, key=lambda p: p[1]) if "loss" in key else max(points, key=lambda p: p[1])
        ax.scatter([best[0]], [best[1]], color=colour, s=28, zorder=3)
        ax.set_title(f"{title} (best {best[1]:.3g}, epoch {best[0]})", fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
        ax.tick_params(labelsize=7)
        if ylim:
            ax.set_ylim(*ylim)
        _style(ax)
    fig.tight_layout()
    return fig


def training_curves(history: list[dict]) -> bytes:
    """Per-epoch training history, one panel per series."""
    fig = training_curves_figure(history)
    return _png(fig) if fig is not None else no_data("No per-epoch history (e.g. a linear baseline)")
