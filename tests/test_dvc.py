"""The users' three uses with the real `dvc` program: repro end to end, rerun only what a change touches,
share through a remote. Every test starts from the session's `demo_pipeline` (one `dvc repro` of a tiny
demo configuration) and works on its own copy of it.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from bench import sweep
from tests.pipeline import DVC, ENV, ROOT, commit, copy_project, dvc, ran, run

pytestmark = pytest.mark.slow
PREPROCESSING = ("demo", "models", "index", "split", "align", "landmarks", "masks", "mel", "labels", "partition")


def set_param(project: Path, key: str, value) -> None:
    params = yaml.safe_load((project / "params.yaml").read_text())
    *groups, last = key.split(".")
    node = params
    for group in groups:
        node = node[group]
    node[last] = value
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def freeze_demo(project: Path) -> None:
    """Keep the generated dataset as it is, to edit it by hand (what `dvc freeze demo` does; that command
    refuses stages with ${...} in dvc.yaml)."""
    pipeline = yaml.safe_load((project / "dvc.yaml").read_text())
    pipeline["stages"]["demo"]["frozen"] = True
    (project / "dvc.yaml").write_text(yaml.safe_dump(pipeline, sort_keys=False))


def lock_hashes(project: Path) -> dict[str, str]:
    """Output path -> md5 for every output recorded in dvc.lock."""
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    return {out["path"]: out["md5"] for stage in lock["stages"].values() for out in stage.get("outs", [])}


def stage_names(project: Path) -> set[str]:
    return set(yaml.safe_load((project / "dvc.lock").read_text())["stages"])


def test_repro_runs_the_whole_dag_then_nothing(demo_pipeline):
    listed = dvc(demo_pipeline, "stage", "list", "--name-only").stdout.split()
    assert set(listed) == stage_names(demo_pipeline), "every stage ran and is recorded in dvc.lock"
    assert {"split@0", "split@1", "align@1", "masks@0", "mel@1", "train", "evaluate"} <= set(listed)
    metrics = json.loads((demo_pipeline / "data/evaluate/metrics.json").read_text())
    assert {"teacher", "student"} <= set(metrics)
    again = dvc(demo_pipeline, "repro")
    assert ran(again.stdout) == set(), again.stdout
    assert dvc(demo_pipeline, "status").stdout.strip().endswith("Data and pipelines are up to date.")


def test_mask_style_reruns_masks_and_what_reads_them(demo_pipeline, tmp_path):
    project = copy_project(demo_pipeline, tmp_path / "project")
    set_param(project, "mask.style", "tsav_lines")
    stages = ran(dvc(project, "repro").stdout)
    assert stages == {"masks@0", "masks@1", "train", "evaluate"}


def test_learning_rate_reruns_train_and_evaluate_only(demo_pipeline, tmp_path):
    project = copy_project(demo_pipeline, tmp_path / "project")
    set_param(project, "train.lr", 0.0005)  # the paper's; params.yaml has 0.001
    assert ran(dvc(project, "repro").stdout) == {"train", "evaluate"}


def test_adding_a_video_reruns_only_its_part(demo_pipeline, media, tmp_path):
    project = copy_project(demo_pipeline, tmp_path / "project")
    freeze_demo(project)
    videos = project / "data/raw/demo/videos"
    before = lock_hashes(project)
    shutil.copy(media / "grid_swiz3n.mpg", videos / "added_speaker.mpg")
    stages = ran(dvc(project, "repro").stdout)
    index = json.loads((project / "data/interim/index/parts/part-0.json").read_text())
    part = 0 if any(v["video"] == "added_speaker" for v in index["videos"]) else 1
    other = 1 - part
    assert {f"split@{part}", f"align@{part}", f"landmarks@{part}", f"masks@{part}", f"mel@{part}"} <= stages
    assert not stages & {f"split@{other}", f"align@{other}", f"landmarks@{other}", f"masks@{other}", f"mel@{other}"}
    after = lock_hashes(project)
    assert after[f"data/interim/faces/part-{other}"] == before[f"data/interim/faces/part-{other}"]
    assert after[f"data/interim/faces/part-{part}"] != before[f"data/interim/faces/part-{part}"]


def test_push_clone_pull_gives_an_up_to_date_pipeline(demo_pipeline, tmp_path):
    project = copy_project(demo_pipeline, tmp_path / "project")
    remote = tmp_path / "remote"
    dvc(project, "remote", "add", "-d", "shared", str(remote))
    commit(project, "remote")
    dvc(project, "push")
    clone = tmp_path / "clone"
    run(tmp_path, "git", "clone", "-q", str(project), str(clone))
    dvc(clone, "pull")
    status = dvc(clone, "status").stdout
    assert "Data and pipelines are up to date." in status, status
    assert ran(dvc(clone, "repro").stdout) == set()
    assert (clone / "data/train/teacher.pt").read_bytes() == (project / "data/train/teacher.pt").read_bytes()


def test_sweep_runs_through_the_experiment_queue_and_reports_the_curve(demo_pipeline, tmp_path):
    """bench.sweep: queued experiments (method x label fraction x seed) run by `dvc queue start`, read back
    from `dvc exp show --json` into the table and the plot."""
    project = copy_project(demo_pipeline, tmp_path / "project")
    names = sweep.queue(("supervised", "mean_teacher"), (0.5,), (0,), cwd=project)
    assert len(names) == 2 and "queued" in dvc(project, "queue", "status").stdout.lower()
    # The worker `queue start` leaves behind inherits its stdout: captured, the pipe would stay open (and the
    # test wait) until the worker stops.
    subprocess.run([DVC, "queue", "start", "-j", "1"], cwd=project, env=ENV, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, check=True)
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        status = dvc(project, "queue", "status").stdout
        if not re.search(r"\b(Queued|Running)\b", status):
            break
        time.sleep(5)
    assert status.count("Success") == 2, status
    results = sweep.curve(sweep.experiments(json.loads(dvc(project, "exp", "show", "--json").stdout)))
    assert set(results) == {(m, 0.5, model) for m in ("supervised", "mean_teacher") for model in ("student", "teacher")
                            } | {("trivial", 0.5, "trivial")}  # the trivial predictors, once for the one seed
    assert all(len(cell["va"]) == len(cell["mean"]) == 1 for cell in results.values())
    text = sweep.report(tmp_path / "sweep.png", cwd=project)
    curve_table, paired_table = text.split("\n\n")
    assert curve_table.count("| 0.5 |") == 5 and "| trivial | 0.5 | trivial | 1 |" in text  # one seed's trivial predictors
    assert paired_table.count("| 0.5 |") == 1 and "| mean_teacher | 0.5 | 0 | " in paired_table  # minus supervised
    assert (tmp_path / "sweep.png").stat().st_size > 10_000
    dvc(project, "queue", "stop")
    kept = json.loads((project / sweep.RESULTS).read_text())
    assert sorted(row["name"] for row in kept) == sorted(names)
    videos = sweep.demo_videos(project)
    assert {row["videos"] for row in kept} == {videos}  # a curve is drawn on one demo size
    other = sweep.report(tmp_path / "other.png", cwd=project, videos=videos + 1)
    assert other.startswith(f"no sweep experiments on a demo of {videos + 1} videos")
    assert not (tmp_path / "other.png").exists()
    dvc(project, "exp", "remove", "-A")  # as a fresh clone: no experiments, the kept file only
    assert sweep.curve(sweep.experiments(json.loads(dvc(project, "exp", "show", "--json").stdout))) == {}
    assert sweep.report(tmp_path / "again.png", cwd=project) == text
    unknown = subprocess.run([sys.executable, "-m", "bench.sweep", "report", "--baseline", "mean_teacher/b64",
                              "--plot", str(tmp_path / "unknown.png")], cwd=project, capture_output=True, text=True,
                             env={**ENV, "PYTHONPATH": str(ROOT)})  # the project copy has no bench/
    assert unknown.returncode == 1 and unknown.stderr.strip().splitlines() == [
        "--baseline mean_teacher/b64: no sweep experiment of that method here; methods: supervised, mean_teacher"]


def test_forced_repro_gives_the_same_preprocessing_hashes(demo_pipeline, tmp_path):
    project = copy_project(demo_pipeline, tmp_path / "project")
    before = lock_hashes(project)
    stages = ran(dvc(project, "repro", "--force", "partition", "masks", "mel").stdout)
    assert {"demo", "index", "align@0", "masks@1", "mel@0", "partition"} <= stages
    after = lock_hashes(project)
    preprocessing = [path for path in before if not path.startswith(("data/train", "data/evaluate", "dvclive"))]
    assert len(preprocessing) >= 20
    assert {p: after[p] for p in preprocessing} == {p: before[p] for p in preprocessing}


def test_failed_stage_leaves_the_lock_and_earlier_outputs(demo_pipeline, tmp_path):
    project = copy_project(demo_pipeline, tmp_path / "project")
    freeze_demo(project)

    def lock_without_demo() -> dict:
        """dvc.lock less the frozen demo stage, whose output this test edits by hand (DVC records that)."""
        stages = yaml.safe_load((project / "dvc.lock").read_text())["stages"]
        return {name: stage for name, stage in stages.items() if name != "demo"}

    lock = lock_without_demo()
    video = sorted((project / "data/raw/demo/videos").iterdir())[0]
    good = video.read_bytes()
    video.unlink()
    video.write_bytes(b"this is not a video" * 100)
    failed = dvc(project, "repro", check=False)
    assert failed.returncode != 0
    assert video.name in failed.stdout + failed.stderr, "the error names the broken file"
    assert lock_without_demo() == lock
    assert (project / "data/models/scrfd_2.5g/det.onnx").is_file()
    video.unlink()
    video.write_bytes(good)
    dvc(project, "repro")  # the index's outputs come back (from the run-cache: same inputs as before)
    assert (project / "data/interim/index/videos.parquet").is_file()
    assert dvc(project, "status").stdout.strip().endswith("Data and pipelines are up to date.")
