"""Per-frame labels from real annotation files, reconciled with the frame counts of real videos."""

import logging

import numpy as np
import pyarrow.compute as pc
import pytest

from affect.annotations import write_annotation
from affect.index import build_index, find_annotations
from affect.labels import build_labels
from affect.schema import LABELS


def write(root, task, set_name, track, values):
    folder = {"va": "VA_Set", "expr": "EXPR_Set", "au": "AU_Set"}[task]
    write_annotation(values, root / "annotations" / folder / set_name / f"{track}.txt", task)


@pytest.fixture(scope="module")
def tree(tmp_path_factory, media):
    """grid (75 frames): 80 VA rows, 70 AU rows; two (75 frames): a left track in EXPR only, no right track."""
    root = tmp_path_factory.mktemp("labels")
    (root / "videos").mkdir()
    (root / "videos" / "grid.mpg").symlink_to(media / "grid_bbaf2n.mpg")
    (root / "videos" / "two.mp4").symlink_to(media / "two_person_grid_bbaf2n_swiz3n_sbs.mp4")
    rng = np.random.default_rng(1)
    values = {
        "va": np.where(rng.random((80, 1)) < 0.7, np.round(rng.uniform(-1, 1, (80, 2)), 2), -5).astype(np.float32),
        "au": np.where(rng.random((70, 1)) < 0.6, rng.integers(0, 2, (70, 12)), -1),
        "expr": np.where(rng.random(75) < 0.5, rng.integers(0, 7, 75), -1),
    }
    write(root, "va", "Train_Set", "grid", values["va"])
    write(root, "au", "Validation_Set", "grid", values["au"])
    write(root, "expr", "Train_Set", "two_left", values["expr"])
    return root, build_index(root, 1, jobs=1).tracks, values


def test_every_frame_of_every_track_with_each_tasks_labels(tree, caplog):
    root, tracks, values = tree
    with caplog.at_level(logging.WARNING, logger="affect.labels"):
        labels = build_labels(tracks, find_annotations(root))
    assert labels.schema == LABELS and labels.num_rows == 3 * 75
    assert labels.column("track").to_pylist() == ["grid"] * 75 + ["two_left"] * 75 + ["two_right"] * 75
    assert labels.column("frame").to_pylist() == list(range(75)) * 3
    grid = labels.slice(0, 75).to_pydict()
    va = values["va"][:75]
    labelled = (va != -5).all(axis=1)
    assert np.array_equal(np.isnan(grid["valence"]), ~labelled)
    assert np.allclose(np.asarray(grid["valence"])[labelled], va[labelled, 0])
    assert np.allclose(np.asarray(grid["arousal"])[labelled], va[labelled, 1])
    au = np.asarray(grid["au"])
    assert np.array_equal(au[:70], np.where((values["au"] >= 0).all(axis=1, keepdims=True), values["au"], -1))
    assert (au[70:] == -1).all(), "frames after the last AU row are unlabelled"
    assert set(grid["expr"]) == {-1} and set(grid["va_set"]) == {"Train_Set"}
    assert set(grid["au_set"]) == {"Validation_Set"} and set(grid["expr_set"]) == {""}
    left, right = labels.slice(75, 75).to_pydict(), labels.slice(150, 75).to_pydict()
    assert left["expr"] == values["expr"].tolist() and np.isnan(left["valence"]).all()
    assert (np.asarray(left["au"]) == -1).all() and set(left["expr_set"]) == {"Train_Set"}
    assert set(right["expr"]) == {-1} and np.isnan(right["valence"]).all() and set(right["expr_set"]) == {""}
    reports = [r.getMessage() for r in caplog.records]
    assert any("grid (va)" in m and "dropped the last 5 rows" in m for m in reports)
    assert any("grid (au)" in m and "last 5 frames are unlabelled" in m for m in reports)


def test_an_annotation_without_its_track_is_reported_and_skipped(tree, caplog):
    root, tracks, _ = tree
    with caplog.at_level(logging.WARNING, logger="affect.labels"):
        labels = build_labels(tracks.filter(pc.not_equal(tracks.column("track"), "two_left")),
                              find_annotations(root))
    assert labels.num_rows == 2 * 75 and "two_left" not in labels.column("track").to_pylist()
    assert any("two_left" in r.getMessage() and "no video" in r.getMessage() for r in caplog.records)
