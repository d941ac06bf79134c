"""Per-frame labels: every task's annotation aligned to every frame of every track (schema LABELS).

One row per (track, frame) for frame 0 .. n_frames - 1 of each track in tracks.parquet, whether or
not the track is annotated: unlabelled values are NaN (valence, arousal), -1 (expr) and twelve -1
(au). Annotation files are reconciled with the decoded frame count (`affect.annotations.reconcile`):
rows beyond the video's end are dropped and missing rows are unlabelled, each such case logged.
Annotations of tracks that have no video are logged and skipped. `label_arrays` reads a LABELS table back
into per-task arrays.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from tqdm import tqdm

from affect.annotations import read_annotation, reconcile
from affect.schema import AUS, LABELS, TASKS

log = logging.getLogger(__name__)


def track_labels(track: str, n_frames: int, annotations: dict[str, dict[str, tuple[str, Path]]]) -> pa.Table:
    """LABELS rows of one track: frames 0 .. n_frames - 1 with each task's reconciled annotation."""
    va = np.full((n_frames, 2), np.nan, np.float32)
    expr = np.full(n_frames, -1, np.int8)
    au = np.full((n_frames, len(AUS)), -1, np.int8)
    sets = {}
    for task in TASKS:
        set_name, path = annotations.get(task, {}).get(track, ("", None))
        sets[task] = set_name
        if path is None:
            continue
        ann, report = reconcile(read_annotation(path, task), n_frames)
        if report:
            log.warning("%s (%s): %s", track, task, report)
        labelled = np.asarray(ann.labelled, bool)
        if task == "va":
            va[labelled] = ann.values[labelled]
        elif task == "expr":
            expr[labelled] = ann.values[labelled]
        else:
            au[labelled] = ann.values[labelled]
    return pa.Table.from_arrays([
        pa.array(np.full(n_frames, track, object), pa.string()),
        pa.array(np.arange(n_frames, dtype=np.int32)),
        pa.array(va[:, 0]),
        pa.array(va[:, 1]),
        pa.array(expr),
        pa.FixedSizeListArray.from_arrays(pa.array(au.ravel()), len(AUS)),
        pa.array([sets["va"]] * n_frames, pa.string()),
        pa.array([sets["expr"]] * n_frames, pa.string()),
        pa.array([sets["au"]] * n_frames, pa.string()),
    ], schema=LABELS)


def build_labels(tracks: pa.Table, annotations: dict[str, dict[str, tuple[str, Path]]]) -> pa.Table:
    """LABELS for every (track, frame) of `tracks` (schema TRACKS), from `find_annotations(root)`'s result."""
    known = set(tracks.column("track").to_pylist())
    for task in TASKS:
        for track in sorted(set(annotations.get(task, {})) - known):
            log.warning("%s annotation of %s skipped: no video for this track (%s)",
                        task, track, annotations[task][track][1])
    rows = sorted(zip(tracks.column("track").to_pylist(), tracks.column("n_frames").to_pylist()))
    rows = tqdm(rows, desc="labels", unit="track")
    parts = [track_labels(track, n_frames, annotations) for track, n_frames in rows]
    return pa.concat_tables(parts) if parts else LABELS.empty_table()


def label_arrays(table: pa.Table) -> dict[str, np.ndarray]:
    """The labels of a table with LABELS' valence, arousal, expr and au columns: "va" (N, 2) float32 (NaN where
    unlabelled), "expr" (N,) int64 and "au" (N, 12) int8 (-1 where unlabelled)."""
    va = np.stack([table.column("valence").to_numpy(zero_copy_only=False),
                   table.column("arousal").to_numpy(zero_copy_only=False)], axis=1).astype(np.float32)
    expr = table.column("expr").to_numpy(zero_copy_only=False).astype(np.int64)
    au = pc.list_flatten(table.column("au")).to_numpy(zero_copy_only=False).reshape(-1, len(AUS)).astype(np.int8)
    return {"va": va, "expr": expr, "au": au}
