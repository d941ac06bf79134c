"""Evaluate the trained teacher and student on the validation side of the split; write ABAW2 prediction files.

- Metrics: each task's ABAW2 criterion and its parts (affect.metrics) over the (frame, task) pairs of the
  validation side, for every model given, in one JSON file (`dvc metrics` reads it).
- Plot data and pictures (affect.plots) under `plots/<model>/`.
- Prediction files of one model (the teacher by default) under `predictions/{VA,EXPR,AU}/<track>.txt`, for every
  track with validation frames of that task: the annotation header and one row for every frame of the video.
  Rule for frames without a face: every frame gets the model's own prediction on its clip as the loader builds
  it, where frames without a face are black (with a black mask) and the audio is the real one. The same rule
  holds for the metrics, where a labelled frame without a face counts like any other (as in ABAW2).

Every frame of every validation track goes through `affect.pipeline.infer` once per model, track by track;
the metrics score the validation pairs among them. `affect predict` on a validation video therefore writes
the same bytes as this stage. A model whose record disagrees with the params on its preprocessing is refused:
it would be shown other inputs than it was trained on.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tqdm import tqdm

from affect import plots
from affect.annotations import write_annotation
from affect.data import ClipDataset
from affect.labels import label_arrays
from affect.metrics import evaluate_predictions
from affect.exact import torch_threads
from affect.pipeline import disagreements, inference_device, infer, loader_options
from affect.schema import AUS, EXPRESSIONS, TASK_FOLDERS, TASKS, Layout, is_labelled
from affect.shards import write_json
from affect.tsav import CheckpointError, load_checkpoint

log = logging.getLogger(__name__)


def trivial_predictions(train: dict, n: int) -> dict[str, np.ndarray]:
    """What a model must beat: predictions for `n` frames that ignore the input, from the training side's
    labels `train` ("expr" (M,), "au" (M, 12), "va" (M, 2), unlabelled as `affect.schema.is_labelled` says).

    Returns "expr" (n,) the majority training class, "au" (n, 12) each AU's majority decision over the
    training frames labelled for AUs (1.0 present, 0.0 absent), "va" (n, 2) zeros: a constant, whose CCC is 0
    whatever the constant. A task without a training label is left out.
    """
    trivial = {"va": np.zeros((n, 2), np.float32)}
    expr = np.asarray(train["expr"]).reshape(-1)
    expr = expr[is_labelled("expr", expr)]
    if len(expr):
        trivial["expr"] = np.full(n, np.bincount(expr.astype(np.int64), minlength=len(EXPRESSIONS)).argmax())
    au = np.asarray(train["au"]).reshape(-1, len(AUS))
    au = au[is_labelled("au", au)]
    if len(au):
        trivial["au"] = np.tile((au.mean(axis=0) > 0.5).astype(np.float32), (n, 1))
    return trivial


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


def track_predictions(outputs: dict[str, np.ndarray], track: str) -> dict[str, np.ndarray]:
    """One track's rows of `infer`'s outputs, in frame order (the dataset holds every frame of the track)."""
    rows = np.flatnonzero(outputs["track"] == track)
    rows = rows[np.argsort(outputs["frame"][rows], kind="stable")]
    if not np.array_equal(outputs["frame"][rows], np.arange(len(rows))):
        raise ValueError(f"{track}: predictions do not cover frames 0 .. {len(rows) - 1}")
    return {key: outputs[key][rows] for key in ("expr", "expr_prob", "au", "au_prob", "va")}


def write_predictions(track: str, pred: dict[str, np.ndarray], tasks, folder: str | os.PathLike) -> list[Path]:
    """ABAW2 prediction files `folder/{VA,EXPR,AU}/<track>.txt` for `tasks`, one row per frame of `pred`."""
    values = {"va": pred["va"].astype(np.float32), "expr": pred["expr"].astype(np.int8),
              "au": pred["au"].astype(np.int8)}
    paths = []
    for task in tasks:
        path = Path(folder) / TASK_FOLDERS[task] / f"{track}.txt"
        write_annotation(values[task], path, task)
        paths.append(path)
    return paths


def labels_by_track(labels_path: str | os.PathLike, tracks: list[str]) -> dict[str, dict[str, np.ndarray]]:
    """track -> every frame of the track in the labels table: "frame" (N,) and the labels "va", "expr", "au"."""
    table = pq.read_table(labels_path, filters=[("track", "in", tracks)]).sort_by([("track", "ascending"),
                                                                                   ("frame", "ascending")])
    names = table.column("track").to_numpy(zero_copy_only=False)
    frame = table.column("frame").to_numpy().astype(np.int64)
    values = label_arrays(table)
    result = {}
    for track in tracks:
        lo, hi = np.searchsorted(names, track, side="left"), np.searchsorted(names, track, side="right")
        result[track] = {"frame": frame[lo:hi], **{task: values[task][lo:hi] for task in ("va", "expr", "au")}}
    return result


def validation_tracks(partition_path: str | os.PathLike) -> dict[str, list[str]]:
    """task -> sorted tracks with at least one frame of that task on the validation side."""
    table = pq.read_table(partition_path, columns=["track", "task", "side"])
    table = table.filter(pc.equal(table.column("side"), "val"))
    return {task: sorted(set(table.filter(pc.equal(table.column("task"), task)).column("track").to_pylist()))
            for task in TASKS}


def load_for(path: str | os.PathLike, params: dict):
    """The model at `path`, refused (CheckpointError naming the keys) when its record disagrees with `params`
    on its preprocessing."""
    model, record = load_checkpoint(path)
    differ = disagreements(record, params)
    if differ:
        raise CheckpointError(f"{path}: made with other preprocessing than params.yaml ({'; '.join(differ)}); "
                              f"rerun the pipeline (`dvc repro`) so that model and data agree")
    return model


def evaluate(models: dict[str, str | os.PathLike], layout: Layout, params: dict, out_dir: str | os.PathLike,
             batch_size: int = 32, timeline_tracks: int = 3, predict_with: str = "teacher", threads: int = 2) -> dict:
    """Metrics of every model (name -> checkpoint) on the validation side, plots, and `predict_with`'s prediction files.

    Data from `layout` (shards, labels, partition), read as `params` say (`affect.pipeline.loader_options`).
    Writes `out_dir/metrics.json` ({model: {task: criterion and parts}}, and under "trivial" those of
    `trivial_predictions` from the training side's labels, on the same frames), `out_dir/plots/<model>/...`,
    `out_dir/plots/timeline/<track>.png` for the first `timeline_tracks` validation tracks, and
    `out_dir/predictions/{VA,EXPR,AU}/<track>.txt`. Returns the metrics.
    """
    out_dir = Path(out_dir)
    device = inference_device()
    if predict_with not in models:
        raise ValueError(f"evaluate.predict_with {predict_with!r}: expected one of {', '.join(models)}")
    loaded = {name: load_for(path, params) for name, path in models.items()}
    dataset = ClipDataset.from_partition(layout, side="val", whole_tracks=True, **loader_options(params))
    if len(dataset) == 0:
        raise ValueError(f"{layout.partition}: no frame on the validation side; nothing to evaluate")
    for stale in ("predictions", "plots"):
        shutil.rmtree(out_dir / stale, ignore_errors=True)
    metrics, outputs = {}, {}
    for name, model in loaded.items():
        with torch_threads(threads):
            outputs[name] = infer(model.to(device), dataset, batch_size, desc=f"evaluate {name}")
        metrics[name] = metrics_of(outputs[name])
        for task in TASKS:
            if task not in metrics[name]:
                log.info("%s: no %s label on the validation side, task left out of the metrics", name, task)
        labelled = dataset.labelled_indices()
        write_plot_data({key: value[labelled] for key, value in outputs[name].items()}, metrics[name],
                        out_dir / "plots" / name)
    true = {task: outputs[predict_with][f"true_{task}"] for task in TASKS}
    train = ClipDataset.from_partition(layout, side="train", **loader_options(params)).labels
    metrics["trivial"] = evaluate_predictions(true, trivial_predictions(train, len(dataset)))
    write_json(metrics, out_dir / "metrics.json", indent=2)

    tasks_of = validation_tracks(layout.partition)
    tracks = sorted(set().union(*tasks_of.values()))
    labels = labels_by_track(layout.labels, tracks[:timeline_tracks])
    for track in tqdm(tracks, desc="prediction files", unit="track"):
        pred = track_predictions(outputs[predict_with], track)
        write_predictions(track, pred, [t for t in TASKS if track in tasks_of[t]], out_dir / "predictions")
        if track in labels:
            times = dataset.track_pts[list(dataset.track_names).index(track)]
            plots.timeline(track, times, pred, labels[track], out_dir / "plots" / "timeline" / f"{track}.png")
    return metrics
