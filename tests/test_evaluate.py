"""The evaluate step on a real preprocessed video, hand-made labels and partition, and tiny untrained models."""

import csv
import json
import subprocess
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch
import yaml

from affect.annotations import read_annotation
from affect.evaluate import evaluate
from affect.metrics import expr_criterion, va_criterion
from affect.pipeline import model_record, preprocess_video, recorded_params, track_batches
from affect.schema import AUS, LABELS, PARTITION, Layout
from affect.shards import write_parquet
from affect.tsav import TSAV, CheckpointError, save_model
from tests.pipeline import dvc, params as project_params

ROOT = Path(__file__).resolve().parents[1]
N = 50  # frames of the 2 s test video
VA_VAL, VA_TRAIN, EXPR_VAL = range(0, 20), range(30, 40), range(10, 30)


@pytest.fixture(scope="module")
def project(tmp_path_factory, media, models_dir) -> dict:
    """data/interim of one real video (the pipeline's preprocessing), labels, partition, two tiny checkpoints."""
    folder = tmp_path_factory.mktemp("evaluate")
    video = folder / "speaker.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(media / "grid_lwbsza_h264.mp4"), "-t", "2", "-c:v", "libx264",
                    "-preset", "ultrafast", "-c:a", "aac", str(video)], check=True)
    params = project_params()
    record = model_record(params, data="")
    layout = Layout(folder / "data", models_dir)
    preprocess_video(video, [("speaker", "main")], recorded_params(record), layout)

    rng = np.random.default_rng(0)
    va = np.full((N, 2), np.nan, np.float32)
    va[:40] = rng.uniform(-1, 1, (40, 2))
    expr = np.full(N, -1, np.int8)
    expr[10:50] = rng.integers(0, 7, 40)
    labels = pa.table({"track": ["speaker"] * N, "frame": np.arange(N, dtype=np.int32), "valence": va[:, 0],
                       "arousal": va[:, 1], "expr": expr, "au": [[-1] * len(AUS)] * N,
                       "va_set": ["Train_Set"] * N, "expr_set": ["Train_Set"] * N, "au_set": [""] * N}, LABELS)
    rows = ([("va", f, "val") for f in VA_VAL] + [("va", f, "train") for f in VA_TRAIN]
            + [("expr", f, "val") for f in EXPR_VAL])
    partition = pa.table({"track": ["speaker"] * len(rows), "frame": [f for _, f, _ in rows],
                          "task": [t for t, _, _ in rows], "side": [s for _, _, s in rows]}, PARTITION)
    write_parquet(labels, layout.labels)
    write_parquet(partition, layout.partition)
    models = {}
    for seed, name in enumerate(("teacher", "student")):
        torch.manual_seed(seed)
        models[name] = layout.model(name)
        save_model(TSAV(width=0.125), models[name], record)
    return {"folder": folder, "layout": layout, "params": params, "models": models, "va": va, "expr": expr}


def run(project: dict, out: Path, params: dict | None = None) -> dict:
    return evaluate(project["models"], project["layout"], params or project["params"], out, batch_size=16,
                    timeline_tracks=1)


def metrics_trivial_va(out: Path) -> float:
    trivial = json.loads((out / "metrics.json").read_text())["trivial"]["va"]
    assert trivial["frames"] == len(VA_VAL)
    return trivial["criterion"]


def test_evaluate_writes_metrics_plots_and_prediction_files(project, tmp_path):
    out = tmp_path / "evaluate"
    metrics = run(project, out)
    assert json.loads((out / "metrics.json").read_text()) == metrics
    assert set(metrics) == {"teacher", "student", "trivial"}
    # the trivial predictors from the training side's labels: VA frames only (a constant: CCC 0), no expression
    assert set(metrics.pop("trivial")) == {"va"} and metrics_trivial_va(out) == 0
    for model in metrics.values():
        assert set(model) == {"va", "expr"}  # no AU label on the validation side: absent, not 0
        assert model["va"]["frames"] == len(VA_VAL) and model["expr"]["frames"] == len(EXPR_VAL)

    # prediction files: every frame, only the tasks the track is validated on
    assert not (out / "predictions" / "AU").exists()
    va_file = read_annotation(out / "predictions" / "VA" / "speaker.txt", "va")
    expr_file = read_annotation(out / "predictions" / "EXPR" / "speaker.txt", "expr")
    assert len(va_file.values) == len(expr_file.values) == N
    # the teacher's files line up with the frames: scoring them on the validation frames gives its metrics
    va_val, expr_val = list(VA_VAL), list(EXPR_VAL)
    assert va_criterion(project["va"][va_val], va_file.values[va_val])["criterion"] == pytest.approx(
        metrics["teacher"]["va"]["criterion"], abs=1e-6)
    assert expr_criterion(project["expr"][expr_val], expr_file.values[expr_val])["criterion"] == pytest.approx(
        metrics["teacher"]["expr"]["criterion"])

    plots = out / "plots" / "teacher"
    with open(plots / "expr_confusion.csv") as f:
        confusion = list(csv.DictReader(f))
    assert len(confusion) == len(EXPR_VAL) and set(confusion[0]) == {"actual", "predicted"}
    with open(plots / "valence.csv") as f:
        assert len(list(csv.DictReader(f))) == len(VA_VAL)
    assert (plots / "au_f1.csv").read_text() == "au,f1\n"  # AU absent: the plot file exists, with no row
    assert (plots / "va_histogram.png").stat().st_size > 0
    assert (out / "plots" / "timeline" / "speaker.png").stat().st_size > 0

    again = tmp_path / "again"
    run(project, again)
    for path in ["metrics.json", "predictions/VA/speaker.txt", "predictions/EXPR/speaker.txt",
                 "plots/teacher/expr_confusion.csv", "plots/timeline/speaker.png"]:
        assert (out / path).read_bytes() == (again / path).read_bytes(), f"{path} differs between two runs"


def test_batches_never_span_two_tracks():
    """What makes `affect predict` give the evaluate stage's bytes: each track's samples are batched from
    the track's own first sample, whatever comes before it."""
    assert track_batches(np.array([0, 0, 0, 1, 1, 2]), 2) == [[0, 1], [2], [3, 4], [5]]
    assert track_batches(np.array([5, 5, 5, 5, 5]), 2) == [[0, 1], [2, 3], [4]]
    assert track_batches(np.array([], np.int32), 4) == []


def test_a_model_made_with_other_preprocessing_is_refused(project, tmp_path):
    """The checkpoints record params.yaml's preprocessing: evaluating them on data read with another mask
    style and clip length would feed them other inputs, and the error names both keys."""
    params = project["params"] | {"mask": {**project["params"]["mask"], "style": "tsav_lines"},
                                  "clip": {**project["params"]["clip"], "length": 8}}
    with pytest.raises(CheckpointError, match=r"teacher.pt: made with other preprocessing.*mask.style: model "
                                              r"'regions', params 'tsav_lines'; clip.length: model 4, params 8"):
        run(project, tmp_path / "evaluate", params)
    assert not (tmp_path / "evaluate").exists()


@pytest.mark.slow
def test_predict_reproduces_the_evaluate_stage_exactly(demo_pipeline, tmp_path, caplog):
    """The done-when test of the architecture issue. A copy of the DVC-run demo is retrained with a mask style
    and a clip length that are not params.yaml's (`dvc repro` reruns masks, train and evaluate only);
    `affect predict` run with the project's own params.yaml takes both from the model file, warns that the
    params differ, and writes for a validation video exactly the bytes of the evaluate stage's prediction files
    (the same preprocessing code, the same inference function)."""
    import pyarrow.parquet as pq

    from affect.__main__ import main
    from affect.tsav import load_checkpoint
    from tests.test_dvc import copy_project, ran, set_param

    project = copy_project(demo_pipeline, tmp_path / "project")
    set_param(project, "mask.style", "tsav_lines")
    set_param(project, "clip.length", 8)
    assert ran(dvc(project, "repro").stdout) == {"masks@0", "masks@1", "train", "evaluate"}
    metrics = json.loads((project / "data/evaluate/metrics.json").read_text())
    assert set(metrics) == {"teacher", "student", "trivial"}
    for tasks in metrics.values():
        assert tasks and set(tasks) <= {"va", "expr", "au"}
        for result in tasks.values():
            assert -1 <= result["criterion"] <= 1 and result["frames"] > 0
    _, record = load_checkpoint(project / "data/train/teacher.pt")
    assert record["preprocessing"]["mask.style"] == "tsav_lines" and record["preprocessing"]["clip.length"] == 8
    tracks = {r["track"]: r for r in pq.read_table(project / "data/interim/index/tracks.parquet").to_pylist()}
    files = sorted((project / "data/evaluate/predictions").glob("*/*.txt"))
    assert files
    for path in files:
        assert len(path.read_text().splitlines()) == tracks[path.stem]["n_frames"] + 1, path

    track = files[0].stem
    person = tracks[track]["person"]
    videos = {r["video"]: r for r in pq.read_table(project / "data/interim/index/videos.parquet").to_pylist()}
    video = videos[tracks[track]["video"]]
    out = tmp_path / "out"
    args = ["predict", str(project / video["path"]), "--checkpoint", str(project / "data/train/teacher.pt"),
            "--out", str(out), "--params", str(ROOT / "params.yaml"), "--models-dir", str(project / "data/models"),
            "--batch-size", str(yaml.safe_load((project / "params.yaml").read_text())["evaluate"]["batch_size"]),
            "--one-person" if person == "main" else "--two-person"]
    assert main(args + ([] if video["has_audio"] else ["--allow-silence"])) == 0
    warning = next(r.getMessage() for r in caplog.records if "differs from the preprocessing" in r.getMessage())
    assert "clip.length: model 8, params 4" in warning and "mask.style: model 'tsav_lines', params 'regions'" in warning
    compared = [path for path in files if path.stem == track]
    assert compared
    for path in compared:
        mine = out / path.parent.name / path.name
        assert mine.read_bytes() == path.read_bytes(), f"{path.name} ({path.parent.name}): predict and evaluate differ"
