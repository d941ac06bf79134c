"""Plot data for DVC's templates (CSV) and pictures (PNG) of the evaluation.

- expression confusion: CSV `actual,predicted` (class names), one row per labelled frame, for DVC's
  `confusion` template;
- per-AU F1: CSV `au,f1`, for DVC's `bar_horizontal` template;
- valence and arousal: CSV `actual,predicted` per dimension for DVC's `scatter` template, and a 2-D histogram PNG;
- timeline PNG of one track: valence and arousal over time against the labels, an expression strip
  (predicted above labelled) and an AU heat map (per AU: predicted probability above, label below, grey = unlabelled),
  the stretches without a face shaded.
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
from matplotlib import font_manager, ft2font  # noqa: E402
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


def drawable(text: str) -> str:
    """`text` with every character the default font has no glyph for written as a \\uXXXX escape (matplotlib
    would draw an empty box and warn)."""
    font = ft2font.FT2Font(font_manager.findfont(font_manager.FontProperties()))
    return "".join(c if c.isascii() or font.get_char_index(ord(c)) else c.encode("unicode_escape").decode()
                   for c in text)


def runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """[(start, end)) index ranges of the runs of True in a (N,) bool array."""
    edges = np.diff(np.concatenate([[0], np.asarray(flags, np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist()))


def timeline(track: str, times: np.ndarray, pred: dict, true: dict, path: str | os.PathLike,
             face: np.ndarray | None = None) -> None:
    """PNG timeline of one track.

    `times` (N,) seconds from the first frame;
    `pred`: "va" (N, 2), "expr" (N,) classes, "au" (N, 12) probabilities;
    `true` (optional keys, same shapes, unlabelled = NaN / -1): the labels drawn against the predictions;
    `face` (N,) bool, optional: frames where a face was found; the stretches without one are shaded (hatched)
    in every panel. Frame i covers [times[i], times[i + 1]) (the last one a median frame interval), so a video of
    one frame still fills the picture (valence and arousal drawn as steps).
    """
    times = np.asarray(times, np.float64)
    n = len(times)
    step = float(np.median(np.diff(times))) if n > 1 else 0.04
    ends = np.append(times[1:], times[-1] + step)
    span = (times[0], ends[-1])
    fig, axes = plt.subplots(4, 1, figsize=(12, 8), sharex=True,
                             gridspec_kw={"height_ratios": [2, 2, 0.8, 2.4]})
    edges = np.append(times, span[1])
    for k, name in enumerate(("valence", "arousal")):
        ax = axes[k]
        if "va" in true:
            values = np.asarray(true["va"], np.float64)[:, k]
            ax.plot(edges, np.append(values, values[-1]), drawstyle="steps-post", color="black", linewidth=1.2,
                    label="label")
        values = np.asarray(pred["va"], np.float64)[:, k]
        ax.plot(edges, np.append(values, values[-1]), drawstyle="steps-post", color="tab:blue", linewidth=1.0,
                label="predicted")
        ax.set(ylim=(-1.05, 1.05), ylabel=f"{name} (-1..1)")
        ax.axhline(0, color="grey", linewidth=0.5)
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
    axes[3].set_xlim(*span)
    if face is not None:
        for i, (start, end) in enumerate(runs(~np.asarray(face, bool))):
            for ax in axes:
                ax.axvspan(times[start], ends[end - 1], facecolor="#bdbdbd", edgecolor="#636363", hatch="//",
                           alpha=0.5, linewidth=0, zorder=3, label="no face" if i == 0 and ax in axes[:2] else None)
    for ax in axes[:2]:
        ax.legend(loc="upper right", fontsize=8)
    labelled = bool(true)
    axes[0].set_title(drawable(f"{track}: predictions against labels (p: predicted, l: label)" if labelled
                               else f"{track}: predictions")
                      + ("" if face is None else f"; face found in {int(np.sum(face))} of {n} frames"
                         + (" (shaded: no face)" if not np.all(face) else "")))
    fig.tight_layout()
    _save(fig, path)
