"""The train / val partition in its three modes, on labels built from real annotation files."""

import json

import numpy as np
import pyarrow as pa
import pytest

from affect.annotations import write_annotation
from affect.index import find_annotations
from affect.labels import build_labels
from affect.partition import keep_labels, partition, partition_counts, write_counts
from affect.schema import LABELS, PARTITION, TASKS, TRACKS

FOLDERS = {"va": "VA_Set", "expr": "EXPR_Set", "au": "AU_Set"}


@pytest.fixture(scope="module")
def labels(tmp_path_factory):
    """30 videos (every 5th two-person) of 150-250 frames, each track annotated for a random subset of tasks;
    three tracks are in Validation_Set for one task and Train_Set for the others."""
    root = tmp_path_factory.mktemp("partition")
    rng = np.random.default_rng(7)
    rows = []
    for v in range(30):
        video, n = f"video{v:02d}", int(rng.integers(150, 250))
        for track, person in ([(f"{video}_left", "left"), (f"{video}_right", "right")] if v % 5 == 0
                              else [(video, "main")]):
            row = {"track": track, "video": video, "person": person, "part": 0, "n_frames": n}
            for task in TASKS:
                set_name = ""
                if v == 29:
                    pass  # an unannotated video: unlabelled data only
                elif rng.random() < 0.7:
                    # every 4th video in Validation_Set; videos 1, 11, 21 with VA in Validation_Set only
                    set_name = "Validation_Set" if v % 4 == 3 or (v % 10 == 1 and task == "va") else "Train_Set"
                    keep = rng.random((n, 1)) < 0.8
                    values = {"va": np.where(keep, np.round(rng.uniform(-1, 1, (n, 2)), 2), -5),
                              "expr": np.where(keep[:, 0], rng.integers(0, 7, n), -1),
                              "au": np.where(keep, rng.integers(0, 2, (n, 12)), -1)}[task]
                    write_annotation(values, root / "annotations" / FOLDERS[task] / set_name / f"{track}.txt", task)
                row.update({f"{task}_set": set_name, f"{task}_rows": 0, f"{task}_labelled": 0})
            rows.append(row)
    tracks = pa.Table.from_pylist(rows, TRACKS)
    return build_labels(tracks, find_annotations(root)), {r["track"]: r["video"] for r in rows}


def side_of(table: pa.Table) -> dict:
    return {(r["track"], r["frame"], r["task"]): r["side"] for r in table.to_pylist()}


def labelled_keys(labels: pa.Table) -> set:
    keys = set()
    for r in labels.to_pylist():
        if not np.isnan(r["valence"]):
            keys.add((r["track"], r["frame"], "va"))
        if r["expr"] >= 0:
            keys.add((r["track"], r["frame"], "expr"))
        if min(r["au"]) >= 0:
            keys.add((r["track"], r["frame"], "au"))
    return keys


def test_random_frames_splits_each_tasks_labelled_frames_8_to_2(labels):
    labels, videos = labels
    table = partition(labels, "random_frames", 0.8, 0, videos=videos)
    assert table.schema == PARTITION
    sides = side_of(table)
    assert {k for k, s in sides.items() if s != "unlabelled"} == labelled_keys(labels)
    counts = partition_counts(table)
    for task in TASKS:
        assert counts[task]["train"] / (counts[task]["train"] + counts[task]["val"]) == pytest.approx(0.8, abs=0.001)
    val_frames = {(t, f) for (t, f, _), s in sides.items() if s == "val"}
    unlabelled = {(t, f) for (t, f, _), s in sides.items() if s == "unlabelled"}
    assert unlabelled and not unlabelled & val_frames, "a frame held out for one task is no unlabelled data"
    frames = {(r["track"], r["frame"]) for r in labels.select(["track", "frame"]).to_pylist()}
    for task in TASKS:
        pool = {(t, f) for (t, f, k), s in sides.items() if k == task and s == "unlabelled"}
        mine = {(t, f) for (t, f, k) in sides if k == task and sides[(t, f, k)] != "unlabelled"}
        assert pool == frames - val_frames - mine


def test_by_video_keeps_each_video_on_one_side(labels):
    labels, videos = labels
    table = partition(labels, "by_video", 0.8, 0, videos=videos)
    sides = side_of(table)
    assert {k for k, s in sides.items() if s != "unlabelled"} == labelled_keys(labels)
    video_side = {}
    for (track, _, _), side in sides.items():
        video_side.setdefault(videos[track], set()).add("val" if side == "val" else "train")
    assert all(len(s) == 1 for s in video_side.values()), "a video on both sides"
    n_val = sum(s == {"val"} for s in video_side.values())
    labelled_videos = {videos[t] for t, _, _ in labelled_keys(labels)}
    assert n_val == len(labelled_videos) - round(0.8 * len(labelled_videos))
    assert video_side["video29"] == {"train"}, "a video without labels is training side"
    counts = partition_counts(table)
    for task in TASKS:
        assert 0.7 < counts[task]["train"] / (counts[task]["train"] + counts[task]["val"]) < 0.9
    frames = {(r["track"], r["frame"]) for r in labels.select(["track", "frame"]).to_pylist()}
    for task in TASKS:
        pool = {(t, f) for (t, f, k), s in sides.items() if k == task and s == "unlabelled"}
        train_frames = {(t, f) for t, f in frames if video_side[videos[t]] == {"train"}}
        assert pool == train_frames - {(t, f) for (t, f, k) in sides if k == task and sides[(t, f, k)] == "train"}
    assert side_of(partition(labels, "by_video", 0.8, 0, videos=videos)) == sides
    assert side_of(partition(labels, "by_video", 0.8, 1, videos=videos)) != sides


def test_official_follows_the_task_sets(labels, tmp_path):
    labels, videos = labels
    table = partition(labels, "official", 0.8, 0, videos=videos)
    sides = side_of(table)
    sets = {(r["track"], task): r[f"{task}_set"] for r in labels.to_pylist() for task in TASKS}
    for (track, _, task), side in sides.items():
        if side != "unlabelled":
            assert side == {"Train_Set": "train", "Validation_Set": "val"}[sets[(track, task)]]
    held_out = {videos[t] for (t, task), s in sets.items() if s == "Validation_Set"}
    assert held_out and not {videos[t] for (t, _, _), s in sides.items() if s == "unlabelled"} & held_out
    frames = {(r["track"], r["frame"]) for r in labels.select(["track", "frame"]).to_pylist()}
    for task in TASKS:
        pool = {(t, f) for (t, f, k), s in sides.items() if k == task and s == "unlabelled"}
        train_frames = {(t, f) for t, f in frames if videos[t] not in held_out}
        assert pool == train_frames - {(t, f) for (t, f, k) in sides if k == task and sides[(t, f, k)] == "train"}
    mixed = {t for (t, task), s in sets.items() if s == "Validation_Set"} & {t for (t, task), s in sets.items()
                                                                              if s == "Train_Set"}
    assert mixed, "a track in Validation_Set for one task and Train_Set for another"
    for (track, frame, task), side in sides.items():
        if track in mixed:
            assert side == {"Train_Set": "train", "Validation_Set": "val"}[sets[(track, task)]]
    write_counts(partition_counts(table), tmp_path / "partition.json")
    counts = json.loads((tmp_path / "partition.json").read_text())
    assert sum(n for task in counts.values() for n in task.values()) == table.num_rows


@pytest.mark.parametrize("mode", ["by_video", "random_frames"])
def test_keep_labels_moves_whole_videos_of_training_labels_to_the_unlabelled_pool(labels, mode):
    labels, videos = labels
    full = side_of(partition(labels, mode, 0.8, 0, videos=videos))
    kept = side_of(keep_labels(partition(labels, mode, 0.8, 0, videos=videos), 0.25, seed=1, videos=videos))
    val_frames = {(t, f) for (t, f, _), s in full.items() if s == "val"}
    assert {k for k, s in kept.items() if s == "val"} == {k for k, s in full.items() if s == "val"}
    moved = {k for k in full if full[k] == "train" and kept.get(k) != "train"}
    assert all(kept[k] == full[k] for k in full if k not in moved)
    assert all(k not in kept if k[:2] in val_frames else kept[k] == "unlabelled" for k in moved), \
        "a dropped label becomes unlabelled data, unless its frame is held out for another task"
    assert bool({k for k in moved if k[:2] in val_frames}) == (mode == "random_frames")
    for task in TASKS:
        train_videos = {videos[t] for (t, _, k), s in full.items() if k == task and s == "train"}
        kept_videos = {videos[t] for (t, _, k), s in kept.items() if k == task and s == "train"}
        moved_videos = {videos[t] for (t, _, k) in moved if k == task}
        assert len(kept_videos) == max(1, round(0.25 * len(train_videos))) and kept_videos < train_videos
        assert not kept_videos & moved_videos, "a video's labels are kept or moved whole"
    other = side_of(keep_labels(partition(labels, mode, 0.8, 0, videos=videos), 0.25, seed=2, videos=videos))
    assert other != kept and {k for k, s in other.items() if s == "val"} == {k for k, s in kept.items() if s == "val"}
    table = partition(labels, mode, 0.8, 0, videos=videos)
    assert keep_labels(table, 1.0, videos=videos).equals(table)
    assert "train" not in set(keep_labels(table, 0.0, videos=videos).column("side").to_pylist())
    with pytest.raises(ValueError, match="label_fraction 1.5"):
        keep_labels(table, 1.5)


def test_no_labels_give_an_empty_partition():
    for mode in ("random_frames", "by_video", "official"):
        table = partition(LABELS.empty_table(), mode)
        assert table.schema == PARTITION and table.num_rows == 0


def test_bad_mode_or_ratio_is_an_error(labels):
    with pytest.raises(ValueError, match="random_frames, by_video, official"):
        partition(labels[0], "by_track")
    with pytest.raises(ValueError, match="ratio 1.5"):
        partition(labels[0], "by_video", 1.5)
