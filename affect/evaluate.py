"""Evaluate the trained teacher and student on the validation side of the split; write ABAW2 prediction files.

- Metrics: each task's ABAW2 criterion and its parts (affect.metrics) over the (frame, task) pairs of the
  validation side, for every model given, in one JSON file (`dvc metrics` reads it).
- Plot data and pictures (affect.plots) under `plots/<model>/`.
- Prediction files of one model (the teacher by default) under `predictions/{VA,EXPR,AU}/<track>.txt`, for every
  track with validation frames of that task: the annotation header and one row for every frame of the video.
  Rule for frames without a face: every frame gets the model's own prediction on its clip as the loader builds
  it, where frames without a face are black (with a black mask) and the audio is the real one. The same rule
  holds for the metrics, where a labelled frame without a face counts like any other (as in ABAW2).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from affect import plots
from affect.annotations import write_annotation
from affect.data import ClipDataset
from affect.metrics import AU_THRESHOLD, evaluate_predictions
from affect.model import TSAV, load_model
from affect.schema import AUS, EXPRESSIONS, TASKS
from affect.shards import atomic_path

log = logging.getLogger(__name__)

TASK_FOLDERS = {"va": "VA", "expr": "EXPR", "au": "AU"}


def run_model(model: TSAV, dataset, batch_size: int, desc: str = "predict") -> dict[str, np.ndarray]:
    """The model's outputs on every item of `dataset` (on the model's device), in dataset order, with the items' labels.

    Returns "track" (N,) str, "frame" (N,) int64, "expr_prob" (N, 7) softmax, "expr" (N,) argmax class,
    "au_prob" (N, 12) sigmoid, "au" (N, 12) 0/1 (present where au_prob >= AU_THRESHOLD), "va" (N, 2) in
    [-1, 1], and the labels
    "true_expr" (N,), "true_au" (N, 12), "true_va" (N, 2) (-1 / NaN where the dataset shows none).
    """
    model.eval()
    device = next(model.parameters()).device
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0)
    parts: dict[str, list] = {key: [] for key in ("track", "frame", "expr_prob", "au_prob", "va",
                                                  "true_expr", "true_au", "true_va")}
    with torch.inference_mode():
        for batch in tqdm(loader, desc=desc, unit="batch"):
            out = {task: value.float().cpu() for task, value in
                   model(batch["clip"].to(device), batch["mel"].to(device)).items()}
            parts["track"] += list(batch["track"])
            parts["frame"].append(batch["frame"].numpy())
            parts["expr_prob"].append(torch.softmax(out["expr"], dim=1).numpy())
            parts["au_prob"].append(torch.sigmoid(out["au"]).numpy())
            parts["va"].append(out["va"].numpy())
            parts["true_expr"].append(batch["expr"].numpy())
            parts["true_au"].append(batch["au"].numpy())
            parts["true_va"].append(batch["va"].numpy())
    widths = {"expr_prob": len(EXPRESSIONS), "au_prob": len(AUS), "va": 2, "true_au": len(AUS), "true_va": 2}
    result = {"track": np.asarray(parts.pop("track"), dtype=object)}
    for key, chunks in parts.items():
        empty = np.zeros((0, widths[key]) if key in widths else (0,), np.float32)
        result[key] = np.concatenate(chunks) if chunks else empty
    result["frame"] = result["frame"].astype(np.int64)
    result["expr"] = result["expr_prob"].argmax(axis=1) if len(result["frame"]) else np.zeros(0, np.int64)
    result["au"] = (result["au_prob"] >= AU_THRESHOLD).astype(np.int8)
    return result


def metrics_of(outputs: dict[str, np.ndarray]) -> dict:
    """The ABAW2 criteria of one model's outputs against the labels they carry (absent tasks left out)."""
    true = {"expr": outputs["true_expr"], "au": outputs["true_au"], "va": outputs["true_va"]}
    pred = {"expr": outputs["expr_prob"], "au": outputs["au_prob"], "va": outputs["va"]}
    return evaluate_predictions(true, pred)


def write_plot_data(outputs: dict[str, np.ndarray], metrics: dict, folder: str | os.PathLike) -> None:
    """Confusion CSV, per-AU F1 CSV, VA scatter CSVs and the VA 2-D histogram of one model.

    Every file is written even when its task is absent from the validation side (a CSV with its header
    only, an empty histogram), so the plots declared in dvc.yaml always exist.
    """
    folder = Path(folder)
    plots.write_confusion(outputs["true_expr"], outputs["expr"], folder / "expr_confusion.csv")
    plots.write_au_f1(metrics["au"]["f1_per_au"] if "au" in metrics else {}, folder / "au_f1.csv")
    plots.write_va_scatter(outputs["true_va"], outputs["va"], folder)
    plots.va_histogram(outputs["true_va"], outputs["va"], folder / "va_histogram.png")


def rows_by_track(outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """track -> its rows in `outputs`, indexed by frame (-1 where the frame has no prediction)."""
    positions: dict[str, list[int]] = {}
    for i, track in enumerate(outputs["track"].tolist()):
        positions.setdefault(track, []).append(i)
    lookup = {}
    for track, rows in positions.items():
        rows = np.asarray(rows, np.int64)
        frames = outputs["frame"][rows]
        lookup[track] = np.full(int(frames.max()) + 1, -1, np.int64)
        lookup[track][frames] = rows
    return lookup


def track_rows(outputs: dict[str, np.ndarray], rows: np.ndarray, track: str, frames: np.ndarray
               ) -> dict[str, np.ndarray]:
    """One track's predictions ordered by `frames`; `rows` is its entry of `rows_by_track(outputs)`."""
    frames = np.asarray(frames, np.int64)
    at = np.where(frames < len(rows), rows[np.minimum(frames, len(rows) - 1)], -1)
    if (at < 0).any():
        missing = frames[at < 0]
        raise ValueError(f"{track}: no prediction for {len(missing)} frame(s), first {missing[:5].tolist()}")
    return {key: outputs[key][at] for key in ("expr", "au", "au_prob", "va")}


def write_predictions(track: str, pred: dict[str, np.ndarray], tasks, folder: str | os.PathLike) -> list[Path]:
    """ABAW2 prediction files `folder/{VA,EXPR,AU}/<track>.txt` for `tasks`, one row per frame of `pred`."""
    values = {"va": pred["va"].astype(np.float32), "expr": pred["expr"].astype(np.int8),
              "au": pred["au"].astype(np.int8)}
    paths = []
    for task in tasks:
        path = Path(folder) / TASK_FOLDERS[task] / f"{track}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_annotation(values[task], path, task)
        paths.append(path)
    return paths


def labels_by_track(labels_path: str | os.PathLike, tracks: list[str]) -> dict[str, dict[str, np.ndarray]]:
    """track -> every frame of the track in the labels table: "frame" (N,) and the labels "va", "expr", "au"."""
    table = pq.read_table(labels_path, filters=[("track", "in", tracks)]).sort_by([("track", "ascending"),
                                                                                   ("frame", "ascending")])
    names = table.column("track").to_numpy(zero_copy_only=False)
    frame = table.column("frame").to_numpy().astype(np.int64)
    va = np.stack([table.column("valence").to_numpy(zero_copy_only=False),
                   table.column("arousal").to_numpy(zero_copy_only=False)], axis=1).astype(np.float32)
    expr = table.column("expr").to_numpy().astype(np.int64)
    au = pc.list_flatten(table.column("au")).to_numpy().reshape(-1, len(AUS)).astype(np.int8)
    result = {}
    for track in tracks:
        lo, hi = np.searchsorted(names, track, side="left"), np.searchsorted(names, track, side="right")
        result[track] = {"frame": frame[lo:hi], "va": va[lo:hi], "expr": expr[lo:hi], "au": au[lo:hi]}
    return result


def validation_tracks(partition_path: str | os.PathLike) -> dict[str, list[str]]:
    """task -> sorted tracks with at least one frame of that task on the validation side."""
    table = pq.read_table(partition_path, columns=["track", "task", "side"])
    table = table.filter(pc.equal(table.column("side"), "val"))
    return {task: sorted(set(table.filter(pc.equal(table.column("task"), task)).column("track").to_pylist()))
            for task in TASKS}


def write_json(data: dict, path: str | os.PathLike) -> None:
    """Pretty JSON, keys in insertion order, atomically."""
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(data, indent=2) + "\n")


def evaluate(models: dict[str, str | os.PathLike], interim_dir: str | os.PathLike, labels_path: str | os.PathLike,
             partition_path: str | os.PathLike, out_dir: str | os.PathLike, loader_options: dict,
             batch_size: int = 32, timeline_tracks: int = 3, predict_with: str = "teacher") -> dict:
    """Metrics of every model (name -> checkpoint) on the validation side, plots, and `predict_with`'s prediction files.

    `loader_options`: ClipDataset's keyword arguments (affect.data.loader_options of the params).
    Writes `out_dir/metrics.json` ({model: {task: criterion and parts}}), `out_dir/plots/<model>/...`,
    `out_dir/plots/timeline/<track>.png` for the first `timeline_tracks` validation tracks, and
    `out_dir/predictions/{VA,EXPR,AU}/<track>.txt`. Returns the metrics.
    """
    out_dir = Path(out_dir)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if predict_with not in models:
        raise ValueError(f"evaluate.predict_with {predict_with!r}: expected one of {', '.join(models)}")
    dataset = ClipDataset.from_partition(interim_dir, labels_path, partition_path, side="val", **loader_options)
    if len(dataset) == 0:
        raise ValueError(f"{partition_path}: no frame on the validation side; nothing to evaluate")
    for stale in ("predictions", "plots"):
        shutil.rmtree(out_dir / stale, ignore_errors=True)
    metrics, outputs = {}, {}
    for name, path in models.items():
        outputs[name] = run_model(load_model(path).to(device), dataset, batch_size, desc=f"evaluate {name}")
        metrics[name] = metrics_of(outputs[name])
        for task in TASKS:
            if task not in metrics[name]:
                log.info("%s: no %s label on the validation side, task left out of the metrics", name, task)
        write_plot_data(outputs[name], metrics[name], out_dir / "plots" / name)
    write_json(metrics, out_dir / "metrics.json")

    tasks_of = validation_tracks(partition_path)
    tracks = sorted(set().union(*tasks_of.values()))
    labels = labels_by_track(labels_path, tracks)
    full = outputs[predict_with]
    seen = set(zip(full["track"].tolist(), full["frame"].tolist()))
    rest = [(track, int(f)) for track in tracks for f in labels[track]["frame"] if (track, int(f)) not in seen]
    if rest:
        model = load_model(models[predict_with]).to(device)
        extra = run_model(model, ClipDataset(interim_dir, rest, **loader_options), batch_size,
                          desc=f"predict {predict_with}, frames off the validation side")
        full = {key: np.concatenate([full[key], extra[key]]) for key in full}
    lookup = rows_by_track(full)
    for track in tqdm(tracks, desc="prediction files", unit="track"):
        pred = track_rows(full, lookup[track], track, labels[track]["frame"])
        write_predictions(track, pred, [t for t in TASKS if track in tasks_of[t]], out_dir / "predictions")
        if track in tracks[:timeline_tracks]:
            times = dataset.track_pts[list(dataset.track_names).index(track)]
            plots.timeline(track, times, pred, labels[track], out_dir / "plots" / "timeline" / f"{track}.png")
    return metrics
