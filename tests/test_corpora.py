"""Unlabelled corpora beside the ABAW2 tree (params.yaml dataset.unlabelled): their videos are indexed as
unlabelled tracks, join every task's unlabelled pool and no validation side, are counted in partition.json,
and adding one reruns only the parts its videos land in (real media, real dvc)."""

from __future__ import annotations

import json
import shutil

import pyarrow.parquet as pq
import pytest

from affect.index import DatasetError, build_index, find_corpora, stable_part
from affect.schema import TASKS
from affect.shards import read_shards
from tests.pipeline import copy_project, dvc, ran

PER_PART = ("split", "align", "landmarks", "masks", "mel")


def test_corpus_videos_are_named_by_corpus_and_path(media, tmp_path):
    folder = tmp_path / "unlabelled"
    (folder / "talk" / "day1").mkdir(parents=True)
    shutil.copy(media / "grid_bbaf2n.mpg", folder / "talk" / "day1" / "grid.mpg")
    shutil.copy(media / "grid_lwbsza_h264.mp4", folder / "talk" / "grid.mp4")
    (folder / "README.md").write_text("beside the corpora: ignored")
    (folder / "talk" / "notes.txt").write_text("not a video: ignored")
    videos, ignored = find_corpora(folder)
    assert list(videos) == ["talk~day1~grid", "talk~grid"]
    assert sorted(p.name for p in ignored) == ["README.md", "notes.txt"]
    assert find_corpora(tmp_path / "absent") == ({}, [])

    root = tmp_path / "abaw" / "videos"
    root.mkdir(parents=True)
    shutil.copy(media / "grid_swiz3n.mpg", root / "a~b.mpg")
    with pytest.raises(DatasetError, match=r"a~b\.mpg: '~' in a video name marks unlabelled corpora"):
        build_index(tmp_path / "abaw", 2, jobs=1, unlabelled=folder)


def pools(project) -> dict[str, dict[str, int]]:
    return json.loads((project / "data/processed/partition.json").read_text())


def check_pools(project, before: dict, names: list[str]) -> None:
    """The corpus videos `names` are tracks of part 0, in every task's unlabelled pool and nowhere else, and
    partition.json counts them; the labelled sides are what they were (`before`: partition.json then)."""
    tracks = pq.read_table(project / "data/interim/index/tracks.parquet").to_pylist()
    mine = {row["track"]: row for row in tracks if row["track"] in names}
    assert sorted(mine) == names and {row["part"] for row in mine.values()} == {0}
    frames = sum(row["n_frames"] for row in mine.values())
    after = pools(project)
    assert after["corpora"] == {"interviews": {"tracks": 2, "frames": frames}}
    for task in TASKS:
        assert after[task]["unlabelled"] == before[task]["unlabelled"] + frames, task
        assert (after[task]["train"], after[task]["val"]) == (before[task]["train"], before[task]["val"]), task
    rows = [r for r in pq.read_table(project / "data/processed/partition.parquet").to_pylist() if r["track"] in names]
    assert {r["side"] for r in rows} == {"unlabelled"} and len(rows) == len(TASKS) * frames
    assert {r["task"] for r in rows} == set(TASKS)


@pytest.mark.slow
def test_adding_a_corpus_fills_the_pools_and_reruns_only_its_parts(demo_pipeline, media, tmp_path):
    project = copy_project(demo_pipeline, tmp_path / "project")
    before = pools(project)
    assert "corpora" not in before
    corpus = project / "data/raw/unlabelled/interviews"
    corpus.mkdir()
    shutil.copy(media / "grid_lwbsza_h264.mp4", corpus / "grid_lwbsza_h264.mp4")
    shutil.copy(media / "grid_sbwe5n.mpg", corpus / "grid.mpg")
    names = ["interviews~grid", "interviews~grid_lwbsza_h264"]
    parts = {stable_part(name, 2) for name in names}
    assert parts == {0}, "the test's videos are chosen to land in one part of two"

    stages = ran(dvc(project, "repro", "masks", "mel", "partition").stdout)
    assert stages == {"index", "labels", "partition"} | {f"{stage}@0" for stage in PER_PART}

    check_pools(project, before, names)
    faces = read_shards(project / "data/interim/faces/part-0").column("track").to_pylist()
    assert set(names) <= set(faces), "the corpus went through align with part 0"
