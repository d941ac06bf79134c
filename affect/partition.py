"""The train / validation split of the labelled frames, and each task's pool of unlabelled training frames.

A row (track, frame, task, side) says that the frame's label for the task is on the `train` or `val`
side, or, with side `unlabelled`, that the frame has no label for the task and lies on the training
side, so the Mean Teacher may use it as unlabelled data for that task. A (frame, task) pair has at most
one row; a pair without a row gets nothing in training. The training loader turns the rows into the
loss masks (affect.data, affect.losses): `train` gets the supervised loss, `unlabelled` the consistency
loss, `val` and pairs without a row no loss at all. Modes (docs/method.md, "Splits"):

- `random_frames` (the paper): each task's labelled frames are split at random, `ratio` of them to
  train. A frame may be train for one task and val for another: it is then trained on for the task
  it is train for, and only for that one (its val task has its val row, used only for evaluation, and
  a task it has no label for gets no row: a frame on the val side of any task is never unlabelled data).
- `by_video` (default): the videos with at least one labelled frame are shuffled and the first
  round(ratio * n) of them (at least one on each side when n >= 2) go to train; all their tracks
  and frames follow, so neighbouring frames and the two people of one video never straddle the split.
  Videos without any label are training side. Held out: every frame of a val video, for every task.
- `official`: a track's labels for a task are train in Train_Set, val in Validation_Set. A track in
  Validation_Set for one task and Train_Set for another keeps its Train_Set labels (the organisers'
  sets say they are training data) and nothing else: every frame of a video that has a track in
  Validation_Set for any task is held out from the unlabelled pools.

The training side is everything that is not held out. Rows are ordered by task (va, expr, au), then
track and frame; the same labels, mode, ratio and seed give the same rows.
"""

from __future__ import annotations

import json
import logging
import os

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from affect.schema import AUS, PARTITION, TASKS
from affect.shards import atomic_path

log = logging.getLogger(__name__)

MODES = ("random_frames", "by_video", "official")
SIDES = ("train", "val", "unlabelled")
SETS = {"Train_Set": 0, "Validation_Set": 1}


def video_of(track: str) -> str:
    """The video of a track: its name less a `_left` / `_right` suffix."""
    for suffix in ("_left", "_right"):
        if track.endswith(suffix):
            return track[: -len(suffix)]
    return track


def labelled(labels: pa.Table, task: str) -> np.ndarray:
    """Boolean mask of the LABELS rows labelled for `task`."""
    if task == "va":
        valence = labels.column("valence").to_numpy()
        arousal = labels.column("arousal").to_numpy()
        return ~np.isnan(valence) & ~np.isnan(arousal)
    if task == "expr":
        return labels.column("expr").to_numpy() >= 0
    au = pc.list_flatten(labels.column("au")).to_numpy().reshape(labels.num_rows, len(AUS))
    return (au >= 0).all(axis=1)


def partition(labels: pa.Table, mode: str = "by_video", ratio: float = 0.8, seed: int = 0,
              videos: dict[str, str] | None = None) -> pa.Table:
    """PARTITION rows for `labels` (schema LABELS); `videos` maps track -> video (default: `video_of`)."""
    if mode not in MODES:
        raise ValueError(f"partition mode {mode!r}: expected one of {', '.join(MODES)}")
    if not 0.0 < ratio < 1.0:
        raise ValueError(f"partition ratio {ratio}: expected a training share strictly between 0 and 1")
    labels = labels.sort_by([("track", "ascending"), ("frame", "ascending")])
    tracks, track_id = np.unique(labels.column("track").to_numpy(zero_copy_only=False), return_inverse=True)
    video_names = [videos.get(t, video_of(t)) if videos else video_of(t) for t in tracks]
    uniq_videos, track_video = np.unique(np.asarray(video_names, dtype=object), return_inverse=True)
    row_video = track_video[track_id]
    is_labelled = {task: labelled(labels, task) for task in TASKS}
    side = {task: np.full(labels.num_rows, -1, np.int8) for task in TASKS}

    if mode == "random_frames":
        for k, task in enumerate(TASKS):
            rows = np.flatnonzero(is_labelled[task])
            order = np.random.default_rng([seed, k]).permutation(rows.size)
            n_train = int(round(ratio * rows.size))
            side[task][rows[order[:n_train]]] = 0
            side[task][rows[order[n_train:]]] = 1
        held_out = np.zeros(labels.num_rows, bool)
        for task in TASKS:
            held_out |= side[task] == 1
    elif mode == "by_video":
        any_label = np.zeros(labels.num_rows, bool)
        for task in TASKS:
            any_label |= is_labelled[task]
        candidates = np.unique(row_video[any_label])
        order = np.random.default_rng(seed).permutation(candidates.size)
        n_train = int(round(ratio * candidates.size))
        if candidates.size >= 2:
            n_train = min(max(n_train, 1), candidates.size - 1)
        val_video = np.zeros(uniq_videos.size, bool)
        val_video[candidates[order[n_train:]]] = True
        held_out = val_video[row_video]
        for task in TASKS:
            side[task][is_labelled[task]] = held_out[is_labelled[task]].astype(np.int8)
    else:
        val_video = np.zeros(uniq_videos.size, bool)
        for task in TASKS:
            sets = labels.column(f"{task}_set")
            code = np.full(labels.num_rows, -1, np.int8)
            for name, value in SETS.items():
                code[pc.equal(sets, name).to_numpy(zero_copy_only=False)] = value
            unknown = is_labelled[task] & (code < 0)
            if unknown.any():
                row = int(np.flatnonzero(unknown)[0])
                raise ValueError(f"official partition: {task} labels of {tracks[track_id[row]]} have set "
                                 f"{sets[row].as_py()!r}, expected Train_Set or Validation_Set")
            side[task][is_labelled[task]] = code[is_labelled[task]]
            val_video[row_video[code == 1]] = True
        held_out = val_video[row_video]

    parts = []
    for task in TASKS:
        side[task][~is_labelled[task] & ~held_out] = 2
        rows = np.flatnonzero(side[task] >= 0)
        codes = pa.array(side[task][rows])
        parts.append(pa.Table.from_arrays([
            labels.column("track").take(rows),
            labels.column("frame").take(rows),
            pa.array(np.full(rows.size, task, object), pa.string()),
            pa.DictionaryArray.from_arrays(codes, pa.array(SIDES)).cast(pa.string()),
        ], schema=PARTITION))
    return pa.concat_tables(parts).combine_chunks()


def keep_labels(table: pa.Table, fraction: float, seed: int = 0, videos: dict[str, str] | None = None) -> pa.Table:
    """PARTITION rows with only a seeded `fraction` of each task's training labels kept, for the
    semi-supervised curve (criterion against the share of labels kept). The unit is the video: per task,
    the videos with `train` rows for it are shuffled (seed, task) and the first round(fraction * n) of them
    (at least one when fraction > 0) keep their labels; the `train` rows of the others become `unlabelled`,
    so they join that task's unlabelled pool, except on frames that are on the val side of another task
    (random_frames), which are never unlabelled data: those rows are dropped. The validation side is
    untouched, so runs with different fractions are scored on the same frames. `videos` maps track -> video
    (default: `video_of`)."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"partition label_fraction {fraction}: expected a share in [0, 1]")
    if fraction == 1.0 or table.num_rows == 0:
        return table
    track = table.column("track").to_numpy(zero_copy_only=False)
    video = np.asarray([videos.get(t, video_of(t)) if videos else video_of(t) for t in track], dtype=object)
    task = table.column("task").to_numpy(zero_copy_only=False)
    side = table.column("side").to_numpy(zero_copy_only=False).astype(object)
    frame = table.column("frame").to_numpy()
    names = {t: i for i, t in enumerate(np.unique(track.astype(str)))}
    key = np.asarray([names[t] for t in track], np.int64) << 32 | frame.astype(np.int64)
    held_out = np.isin(key, key[side == "val"])
    for k, name in enumerate(TASKS):
        train = (task == name) & (side == "train")
        candidates = np.unique(video[train].astype(str))
        n_keep = int(round(fraction * candidates.size))
        n_keep = max(n_keep, 1) if fraction > 0 and candidates.size else n_keep
        order = np.random.default_rng([seed, k]).permutation(candidates.size)
        dropped = np.isin(video.astype(str), candidates[order[n_keep:]]) & train
        side[dropped] = np.where(held_out[dropped], None, "unlabelled")
        log.info("%s: labels of %d of %d training videos kept (label_fraction %s)", name, n_keep, candidates.size,
                 fraction)
    table = table.set_column(3, "side", pa.array(side, pa.string()))
    return table.filter(pc.is_valid(table.column("side")))


def partition_counts(table: pa.Table) -> dict[str, dict[str, int]]:
    """Rows per task and side: {task: {train, val, unlabelled}}."""
    counts = {task: {s: 0 for s in SIDES} for task in TASKS}
    grouped = table.group_by(["task", "side"]).aggregate([([], "count_all")])
    for task, side, n in zip(*(grouped.column(c).to_pylist() for c in ("task", "side", "count_all"))):
        counts[task][side] = n
    return counts


def write_counts(counts: dict, path: str | os.PathLike) -> None:
    """Counts as a JSON metrics file (sorted keys, atomic)."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(counts, indent=2, sort_keys=True) + "\n")
