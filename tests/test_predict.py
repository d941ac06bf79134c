"""`python -m affect predict` end to end on short real videos, with a tiny untrained checkpoint."""

import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from affect.__main__ import main
from affect.annotations import read_annotation
from affect.pipeline import model_record
from affect.schema import AUS, EXPRESSIONS
from affect.tsav import TSAV, save_model
from tests.pipeline import params

ROOT = Path(__file__).resolve().parents[1]
HEADERS = {"VA": "valence,arousal", "EXPR": ",".join(EXPRESSIONS), "AU": ",".join(AUS)}


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-y", *args], check=True)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A narrow, untrained TSAV saved as the train stage saves it, with params.yaml's record."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("checkpoint") / "teacher.pt"
    save_model(TSAV(width=0.125), path, model_record(params(), data=""))
    return path


def run_cli(*args) -> int:
    return main(["predict", *map(str, args), "--params", str(ROOT / "params.yaml")])


def check_files(out: Path, track: str, n_frames: int) -> None:
    """Complete ABAW2 prediction files: header, one valid row per frame; and a timeline picture."""
    for folder, task in (("VA", "va"), ("EXPR", "expr"), ("AU", "au")):
        path = out / folder / f"{track}.txt"
        lines = path.read_text().splitlines()
        assert lines[0] == HEADERS[folder]
        assert len(lines) == n_frames + 1
        annotation = read_annotation(path, task)
        assert annotation.labelled.all(), f"{path}: every frame must carry a prediction"
        values = np.asarray(annotation.values)
        if task == "va":
            assert np.all(np.abs(values) <= 1)
        elif task == "expr":
            assert set(values.tolist()) <= set(range(len(EXPRESSIONS)))
        else:
            assert set(np.unique(values).tolist()) <= {0, 1}
    assert (out / "timeline" / f"{track}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def speaker(tmp_path_factory, media) -> Path:
    """One second of a real speaker, with audio."""
    video = tmp_path_factory.mktemp("speaker") / "speaker.mp4"
    ffmpeg("-i", str(media / "grid_lwbsza_h264.mp4"), "-t", "1", "-c:v", "libx264", "-preset", "ultrafast",
           "-c:a", "aac", str(video))
    return video


def test_predict_one_person(tmp_path, speaker, models_dir, checkpoint, caplog):
    out = tmp_path / "out"
    assert run_cli(speaker, "--checkpoint", checkpoint, "--out", out, "--models-dir", models_dir) == 0
    check_files(out, "speaker", 25)
    assert sorted(p.name for p in (out / "VA").iterdir()) == ["speaker.txt"]
    assert not [r for r in caplog.records if "differs from the preprocessing" in r.getMessage()]


def test_the_model_file_decides_the_preprocessing(tmp_path, speaker, models_dir, checkpoint, caplog):
    """The same weights recorded with another mask style and clip length: predict takes both from the model
    file (its predictions change), and says that params.yaml differs, naming the keys."""
    other = tmp_path / "other.pt"
    state = torch.load(checkpoint, weights_only=True)
    model = TSAV(width=0.125)
    model.load_state_dict(state["state_dict"])
    save_model(model, other, model_record(params({"mask": {"style": "tsav_lines"}, "clip": {"length": 4}}), data=""))
    assert run_cli(speaker, "--checkpoint", checkpoint, "--out", tmp_path / "same", "--models-dir", models_dir) == 0
    assert run_cli(speaker, "--checkpoint", other, "--out", tmp_path / "other", "--models-dir", models_dir) == 0
    warning = [r.getMessage() for r in caplog.records if "differs from the preprocessing" in r.getMessage()]
    assert len(warning) == 1 and str(other) in warning[0]
    assert "mask.style: model 'tsav_lines', params 'regions'" in warning[0]
    assert "clip.length: model 4, params 8" in warning[0]
    check_files(tmp_path / "other", "speaker", 25)
    same, changed = (read_annotation(tmp_path / name / "VA" / "speaker.txt", "va").values for name in ("same", "other"))
    assert not np.array_equal(same, changed)


def test_old_or_foreign_checkpoints_fail_in_one_line(tmp_path, speaker, checkpoint, capsys):
    """A model file without the record (as saved before it existed) and a file that is no model at all: a
    one-line error naming the file, exit code 2, before any preprocessing."""
    old = tmp_path / "old.pt"
    state = torch.load(checkpoint, weights_only=True)
    torch.save({"config": state["config"], "state_dict": state["state_dict"]}, old)
    out = tmp_path / "out"
    assert run_cli(speaker, "--checkpoint", old, "--out", out) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{old}: an old model file without the record of its preprocessing" in err
    assert run_cli(speaker, "--checkpoint", speaker, "--out", out) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{speaker}: not a model file" in err
    assert not out.exists()


def test_two_person_without_audio(tmp_path, media, models_dir, checkpoint, capsys):
    video = tmp_path / "pair.mp4"
    ffmpeg("-i", str(media / "two_person_grid_bbaf2n_swiz3n_sbs.mp4"), "-t", "1", "-an", "-c:v", "libx264",
           "-preset", "ultrafast", str(video))
    out = tmp_path / "out"
    common = [video, "--checkpoint", checkpoint, "--out", out, "--models-dir", models_dir]
    assert run_cli(*common) == 1
    assert "no audio track" in capsys.readouterr().err
    assert not out.exists()
    assert run_cli(*common, "--allow-silence") == 0  # two people detected, audio fed silence
    for side in ("left", "right"):
        check_files(out, f"pair_{side}", 25)
    assert not (out / "VA" / "pair.txt").exists()


def test_unreadable_and_faceless_videos_fail_clearly(tmp_path, models_dir, checkpoint, capsys):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"this is not a video" * 100)
    faceless = tmp_path / "pattern.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=320x240:rate=25:duration=1", "-f", "lavfi", "-i",
           "sine=frequency=440:duration=1", "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", "-shortest",
           str(faceless))
    out = tmp_path / "out"
    assert run_cli(broken, "--checkpoint", checkpoint, "--out", out, "--models-dir", models_dir) == 1
    assert f"{broken}: cannot read the video" in capsys.readouterr().err
    assert run_cli(faceless, "--checkpoint", checkpoint, "--out", out, "--models-dir", models_dir,
                   "--one-person") == 1
    assert f"{faceless}: no face found in any of its 25 frames" in capsys.readouterr().err
    assert not out.exists()
    assert run_cli(faceless, "--checkpoint", tmp_path / "missing.pt", "--out", out) == 2
