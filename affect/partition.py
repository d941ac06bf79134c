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

import logging
import os

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from affect.labels import label_arrays
from affect.schema import PARTITION, SETS, TASKS, corpus_of, is_labelled, split_track
from affect.shards import write_json

log = logging.getLogger(__name__)

MODES = ("random_frames", "by_video", "official")
SIDES = ("train", "val", "unlabelled")  # a PARTITION row's side, coded 0, 1, 2 below (-1: no row)


def video_of(track: str) -> str:
    """The video of a track: its name less a `_left` / `_right` suffix."""
    return split_track(track)[0]


def random_frames(labelled: dict[str, np.ndarray], seed: int, ratio: float) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """`random_frames` mode: each task's labelled rows split at random, `ratio` of them train. Returns the
    side code per task and row, and the held-out rows (val for any task)."""
    side = {task: np.full(len(labelled[task]), -1, np.int8) for task in TASKS}
    for k, task in enumerate(TASKS):
        rows = np.flatnonzero(labelled[task])
        order = np.random.default_rng([seed, k]).permutation(rows.size)
        n_train = int(round(ratio * rows.size))
        side[task][rows[order[:n_train]]] = 0
        side[task][rows[order[n_train:]]] = 1
    held_out = np.logical_or.reduce([side[task] == 1 for task in TASKS])
    return side, held_out


def by_video(labelled: dict[str, np.ndarray], row_video: np.ndarray, n_videos: int, seed: int, ratio: float
             ) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """`by_video` mode: the videos with a labelled row shuffled, the first round(ratio * n) of them (at least
    one on each side when n >= 2) train; every row of the others held out."""
    any_label = np.logical_or.reduce([labelled[task] for task in TASKS])
    candidates = np.unique(row_video[any_label])
    order = np.random.default_rng(seed).permutation(candidates.size)
    n_train = int(round(ratio * candidates.size))
    if candidates.size >= 2:
        n_train = min(max(n_train, 1), candidates.size - 1)
    val_video = np.zeros(n_videos, bool)
    val_video[candidates[order[n_train:]]] = True
    held_out = val_video[row_video]
    side = {task: np.full(len(row_video), -1, np.int8) for task in TASKS}
    for task in TASKS:
        side[task][labelled[task]] = held_out[labelled[task]].astype(np.int8)
    return side, held_out


def official(labels: pa.Table, labelled: dict[str, np.ndarray], row_video: np.ndarray, n_videos: int,
             row_track: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """`official` mode: a task's labels train in Train_Set, val in Validation_Set; every row of a video with a
    track in a Validation_Set held out."""
    side = {task: np.full(labels.num_rows, -1, np.int8) for task in TASKS}
    val_video = np.zeros(n_videos, bool)
    for task in TASKS:
        sets = labels.column(f"{task}_set")
        code = np.full(labels.num_rows, -1, np.int8)
        for value, name in enumerate(SETS):
            code[pc.equal(sets, name).to_numpy(zero_copy_only=False)] = value
        unknown = labelled[task] & (code < 0)
        if unknown.any():
            row = int(np.flatnonzero(unknown)[0])
            raise ValueError(f"official partition: {task} labels of {row_track[row]} have set "
                             f"{sets[row].as_py()!r}, expected Train_Set or Validation_Set")
        side[task][labelled[task]] = code[labelled[task]]
        val_video[row_video[code == 1]] = True
    return side, val_video[row_video]


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
    values = label_arrays(labels)
    labelled = {task: is_labelled(task, values[task]) for task in TASKS}
    if mode == "random_frames":
        side, held_out = random_frames(labelled, seed, ratio)
    elif mode == "by_video":
        side, held_out = by_video(labelled, row_video, uniq_videos.size, seed, ratio)
    else:
        side, held_out = official(labels, labelled, row_video, uniq_videos.size, tracks[track_id])

    parts = []
    for task in TASKS:
        side[task][~labelled[task] & ~held_out] = 2
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


def corpus_counts(table: pa.Table) -> dict[str, dict[str, int]]:
    """The unlabelled corpora's share of the pools: {corpus: {tracks, frames}} (frames: distinct (track,
    frame) pairs, each in every task's unlabelled pool); {} without corpora."""
    per_track = table.group_by("track").aggregate([("frame", "count_distinct")])
    counts: dict[str, dict[str, int]] = {}
    for name, frames in zip(*(per_track.column(c).to_pylist() for c in ("track", "frame_count_distinct"))):
        if corpus := corpus_of(video_of(name)):
            entry = counts.setdefault(corpus, {"tracks": 0, "frames": 0})
            entry["tracks"] += 1
            entry["frames"] += frames
    return dict(sorted(counts.items()))


def write_counts(counts: dict, path: str | os.PathLike) -> None:
    """Counts as a JSON metrics file (sorted keys, atomic)."""
    write_json(counts, path, indent=2, sort_keys=True)
