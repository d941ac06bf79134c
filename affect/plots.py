"""Plot data for DVC's templates (CSV) and pictures (PNG) of the evaluation.

- expression confusion: CSV `actual,predicted` (class names), one row per labelled frame, for DVC's
  `confusion` template;
- per-AU F1: CSV `au,f1`, for DVC's `bar_horizontal` template;
- valence and arousal: CSV `actual,predicted` per dimension for DVC's `scatter` template, and a 2-D histogram PNG;
- timeline PNG of one track: valence and arousal over time against the labels, an expression strip
  (predicted above labelled) and an AU heat map (per AU: predicted probability above, label below, grey = unlabelled).
PNGs carry no metadata, so the same data gives the same bytes.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import BoundaryNorm, ListedColormap  # noqa: E402

from affect.schema import AUS, EXPRESSIONS  # noqa: E402
from affect.shards import atomic_path  # noqa: E402

EXPRESSION_COLOURS = ("#9e9e9e", "#d62728", "#8c564b", "#9467bd", "#2ca02c", "#1f77b4", "#ff7f0e")
PNG_METADATA = {"Software": None}


def _write_csv(path: str | os.PathLike, header: list[str], rows) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def _save(fig, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, metadata=PNG_METADATA)
    plt.close(fig)


def write_confusion(true: np.ndarray, pred: np.ndarray, path: str | os.PathLike) -> None:
    """CSV `actual,predicted` of the frames with an expression label (true >= 0), class names."""
    true, pred = np.asarray(true), np.asarray(pred)
    keep = true >= 0
    _write_csv(path, ["actual", "predicted"],
               ((EXPRESSIONS[t], EXPRESSIONS[p]) for t, p in zip(true[keep], pred[keep])))


def write_au_f1(f1_per_au: dict[str, float], path: str | os.PathLike) -> None:
    """CSV `au,f1`, one row per AU in the order of the dict."""
    _write_csv(path, ["au", "f1"], ((au, f"{f1:.6f}") for au, f1 in f1_per_au.items()))


def write_va_scatter(true: np.ndarray, pred: np.ndarray, folder: str | os.PathLike) -> None:
    """`valence.csv` and `arousal.csv` with columns `actual,predicted` (label, prediction), labelled frames only."""
    true, pred = np.asarray(true, np.float64), np.asarray(pred, np.float64)
    keep = np.isfinite(true).all(axis=1)
    for k, name in enumerate(("valence", "arousal")):
        _write_csv(Path(folder) / f"{name}.csv", ["actual", "predicted"],
                   ((f"{t:.6f}", f"{p:.6f}") for t, p in zip(true[keep, k], pred[keep, k])))


def va_histogram(true: np.ndarray, pred: np.ndarray, path: str | os.PathLike, bins: int = 40) -> None:
    """PNG with two 2-D histograms, predicted vs true valence and arousal, labelled frames only."""
    true, pred = np.asarray(true, np.float64), np.asarray(pred, np.float64)
    keep = np.isfinite(true).all(axis=1)
    fig, axes = plt.subplots(1, 2, figsize=(9, 4.6))
    edges = np.linspace(-1, 1, bins + 1)
    for k, (ax, name) in enumerate(zip(axes, ("valence", "arousal"))):
        counts, _, _ = np.histogram2d(true[keep, k], pred[keep, k], bins=[edges, edges])
        image = ax.imshow(counts.T, origin="lower", extent=(-1, 1, -1, 1), cmap="viridis", aspect="equal")
        ax.plot([-1, 1], [-1, 1], color="white", linewidth=0.8, linestyle="--")
        ax.set(title=f"{name} ({int(keep.sum())} frames)", xlabel=f"labelled {name} (-1..1)",
               ylabel=f"predicted {name} (-1..1)")
        fig.colorbar(image, ax=ax, fraction=0.046, label="frames (count)")
    fig.suptitle("Predicted against labelled valence and arousal, validation frames (dashed: perfect)")
    fig.tight_layout()
    _save(fig, path)


def timeline(track: str, times: np.ndarray, pred: dict, true: dict, path: str | os.PathLike) -> None:
    """PNG timeline of one track.

    `times` (N,) seconds from the first frame;
    `pred`: "va" (N, 2), "expr" (N,) classes, "au" (N, 12) probabilities;
    `true` (optional keys, same shapes, unlabelled = NaN / -1): the labels drawn against the predictions.
    """
    times = np.asarray(times, np.float64)
    n = len(times)
    span = (times[0], times[-1] if n > 1 else times[0] + 1)
    fig, axes = plt.subplots(4, 1, figsize=(12, 8), sharex=True,
                             gridspec_kw={"height_ratios": [2, 2, 0.8, 2.4]})
    for k, name in enumerate(("valence", "arousal")):
        ax = axes[k]
        if "va" in true:
            ax.plot(times, np.asarray(true["va"], np.float64)[:, k], color="black", linewidth=1.2, label="label")
        ax.plot(times, np.asarray(pred["va"])[:, k], color="tab:blue", linewidth=1.0, label="predicted")
        ax.set(ylim=(-1.05, 1.05), ylabel=f"{name} (-1..1)")
        ax.axhline(0, color="grey", linewidth=0.5)
        ax.legend(loc="upper right", fontsize=8)
    cmap = ListedColormap(["white", *EXPRESSION_COLOURS])
    norm = BoundaryNorm(np.arange(-1.5, len(EXPRESSIONS)), cmap.N)
    strip = [np.asarray(pred["expr"])] + ([np.asarray(true["expr"])] if "expr" in true else [])
    axes[2].imshow(np.stack(strip), aspect="auto", interpolation="nearest", cmap=cmap, norm=norm,
                   extent=(span[0], span[1], len(strip) - 0.5, -0.5))
    axes[2].set_yticks(range(len(strip)), ["predicted", "label"][:len(strip)], fontsize=8)
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in EXPRESSION_COLOURS]
    axes[2].legend(handles, EXPRESSIONS, loc="upper center", bbox_to_anchor=(0.5, -0.05), ncol=7, fontsize=7,
                   frameon=False)
    au = np.asarray(pred["au"], np.float64)
    rows = [au]
    if "au" in true:
        labels = np.asarray(true["au"], np.float64)
        rows.append(np.where(labels >= 0, labels, np.nan))
    heat = np.stack(rows, axis=2).reshape(n, -1).T  # per AU: predicted row, then label row
    au_cmap = plt.get_cmap("magma").with_extremes(bad="#d0d0d0")
    heat_image = axes[3].imshow(heat, aspect="auto", interpolation="nearest", cmap=au_cmap, vmin=0, vmax=1,
                                extent=(span[0], span[1], len(AUS) - 0.5, -0.5))
    fig.colorbar(heat_image, ax=axes[3], orientation="horizontal", location="top", fraction=0.05, pad=0.02,
                 aspect=60, label="AU: predicted probability / label (0-1); grey: unlabelled")
    for k in range(1, len(AUS)):
        axes[3].axhline(k - 0.5, color="white", linewidth=0.6)
    axes[3].set_yticks(range(len(AUS)), [f"{au} p/l" if len(rows) == 2 else au for au in AUS], fontsize=7)
    axes[3].set_xlabel("time (s)")
    axes[0].set_title(f"{track}: predictions against labels (p: predicted, l: label)" if len(rows) == 2
                      else f"{track}: predictions")
    fig.tight_layout()
    _save(fig, path)
