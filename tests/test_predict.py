"""`python -m affect predict` end to end on short real videos, with a tiny untrained checkpoint."""

import json
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
import torch

from affect import plots, predict, tsav
from affect.__main__ import main
from affect.annotations import read_annotation
from affect.pipeline import model_record
from affect.plots import runs
from affect.predict import TABLE_COLUMNS
from affect.render import PANEL_WIDTH
from affect.schema import AUS, EXPRESSIONS
from affect.tsav import TSAV, save_model
from affect.video import iter_frames, probe
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
    save_model(model, other, model_record(params({"mask": {"style": "tsav_lines"}, "clip": {"length": 8}}), data=""))
    assert run_cli(speaker, "--checkpoint", checkpoint, "--out", tmp_path / "same", "--models-dir", models_dir) == 0
    assert run_cli(speaker, "--checkpoint", other, "--out", tmp_path / "other", "--models-dir", models_dir) == 0
    warning = [r.getMessage() for r in caplog.records if "differs from the preprocessing" in r.getMessage()]
    assert len(warning) == 1 and str(other) in warning[0]
    assert "mask.style: model 'tsav_lines', params 'regions'" in warning[0]
    assert "clip.length: model 8, params 4" in warning[0]
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


# --- issue 14: errors before preprocessing, honest outputs, the table, the rendered video, one stream ---------


@pytest.fixture
def no_preprocessing(monkeypatch):
    """Fails the test if any preprocessing starts."""
    def refuse(*args, **kwargs):
        raise AssertionError("preprocessing started")
    monkeypatch.setattr(predict, "preprocess_videos", refuse)
    monkeypatch.setattr(predict, "probe", refuse)


def one_line_error(capsys, *expected: str) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: "), err
    for text in expected:
        assert text in err, err
    return err


def test_setup_errors_are_one_line_before_any_preprocessing(tmp_path, speaker, models_dir, checkpoint, capsys,
                                                             monkeypatch, no_preprocessing):
    out = tmp_path / "out"
    common = ["--checkpoint", checkpoint, "--models-dir", models_dir]
    # a file that is not a model
    assert run_cli(speaker, "--checkpoint", speaker, "--out", out) == 2
    one_line_error(capsys, f"{speaker}: not a model file")
    # a models folder without the face models
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run_cli(speaker, "--checkpoint", checkpoint, "--out", out, "--models-dir", empty) == 2
    one_line_error(capsys, f"{empty}/scrfd_2.5g/det.onnx", "--models-dir")
    # run from another folder with --params but without --models-dir (default data/models is not there)
    monkeypatch.chdir(tmp_path)
    assert run_cli(speaker, "--checkpoint", checkpoint, "--out", out) == 2
    one_line_error(capsys, "data/models/scrfd_2.5g/det.onnx", "--models-dir")
    # --out naming an existing file
    taken = tmp_path / "taken.txt"
    taken.write_text("mine")
    assert run_cli(speaker, *common, "--out", taken) == 2
    one_line_error(capsys, f"--out {taken} is an existing file")
    assert taken.read_text() == "mine"
    # a folder given as the video, and a missing video
    assert run_cli(tmp_path, *common, "--out", out) == 2
    one_line_error(capsys, f"{tmp_path} is a folder, not a video file")
    assert run_cli(tmp_path / "missing.mp4", *common, "--out", out) == 2
    one_line_error(capsys, f"{tmp_path / 'missing.mp4'}: no such file")
    # --batch-size 0: argparse refuses it
    with pytest.raises(SystemExit) as stop:
        run_cli(speaker, *common, "--out", out, "--batch-size", "0")
    assert stop.value.code == 2
    assert "--batch-size: 0 is not a positive integer" in capsys.readouterr().err
    assert not out.exists()


def test_same_name_from_two_folders_is_refused(tmp_path, speaker, models_dir, checkpoint, capsys, no_preprocessing):
    """Two videos named x.mp4 would write the same outputs: refused before any work, naming both."""
    first, second = tmp_path / "a" / "x.mp4", tmp_path / "b" / "x.mp4"
    for path in (first, second):
        path.parent.mkdir()
        path.write_bytes(speaker.read_bytes())
    out = tmp_path / "out"
    assert run_cli(first, second, "--checkpoint", checkpoint, "--out", out, "--models-dir", models_dir) == 2
    one_line_error(capsys, f"{first} and {second} have the same name 'x'", "refused")
    assert not out.exists()


def test_track_names_that_collide_are_refused(tmp_path, media, speaker, models_dir, checkpoint, capsys,
                                              monkeypatch):
    """x.mp4 showing two people gives the track x_left, which the one person of x_left.mp4 gives too: refused
    before preprocessing."""
    monkeypatch.setattr(predict, "preprocess_videos", lambda *a, **k: pytest.fail("preprocessing started"))
    pair, left = tmp_path / "x.mp4", tmp_path / "x_left.mp4"
    pair.write_bytes((media / "two_person_grid_bbaf2n_swiz3n_sbs.mp4").read_bytes())
    left.write_bytes(speaker.read_bytes())
    out = tmp_path / "out"
    assert run_cli(pair, left, "--checkpoint", checkpoint, "--out", out, "--models-dir", models_dir) == 2
    one_line_error(capsys, f"{pair} and {left} both give a track named 'x_left'")
    assert not out.exists()


def test_errors_name_the_path_once(tmp_path, models_dir, checkpoint, capsys):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"this is not a video" * 100)
    assert run_cli(broken, "--checkpoint", checkpoint, "--out", tmp_path / "out", "--models-dir", models_dir) == 1
    err = one_line_error(capsys, f"{broken}: cannot read the video")
    assert err.count(broken.name) == 1, err


def test_allow_silence_warns_once(tmp_path, media, models_dir, checkpoint, caplog):
    silent = tmp_path / "silent.mp4"
    ffmpeg("-i", str(media / "grid_lwbsza_h264.mp4"), "-t", "0.5", "-an", "-c:v", "libx264", "-preset",
           "ultrafast", str(silent))
    assert run_cli(silent, "--checkpoint", checkpoint, "--out", tmp_path / "out", "--models-dir", models_dir,
                   "--allow-silence", "--one-person") == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert [w for w in warnings if "predicting with silence" in w] == [
        f"{silent}: no audio track, predicting with silence as the audio input"]
    assert not [w for w in warnings if "gives no samples" in w]


def table(out: Path, track: str) -> pa.Table:
    return pq.read_table(out / "table" / f"{track}.parquet")


def test_per_frame_table(tmp_path, speaker, models_dir, checkpoint):
    """One row per frame with the issue's columns, matching the ABAW2 files; CSV on request, the same rows."""
    out = tmp_path / "out"
    assert run_cli(speaker, "--checkpoint", checkpoint, "--out", out, "--models-dir", models_dir, "--csv") == 0
    rows = table(out, "speaker")
    assert rows.column_names == list(TABLE_COLUMNS)
    assert rows.num_rows == 25 and rows.column("frame").to_pylist() == list(range(25))
    assert np.allclose(np.diff(rows.column("time_s").to_numpy()), 0.04)
    assert all(rows.column("face_found").to_pylist())
    box = np.stack([rows.column(c).to_numpy() for c in ("box_x1", "box_y1", "box_x2", "box_y2")], 1)
    assert np.all(box[:, 2] > box[:, 0]) and np.all(box[:, 3] > box[:, 1])
    nose = np.stack([rows.column("nose_x").to_numpy(), rows.column("nose_y").to_numpy()], 1)
    assert np.all((nose > box[:, :2]) & (nose < box[:, 2:])), "the nose lies inside the face box"
    probs = np.stack([rows.column(f"p_{e}").to_numpy() for e in EXPRESSIONS], 1)
    assert np.allclose(probs.sum(1), 1, atol=1e-5)
    assert rows.column("expression").to_pylist() == [EXPRESSIONS[k] for k in probs.argmax(1)]
    assert np.array_equal(read_annotation(out / "EXPR" / "speaker.txt", "expr").values, probs.argmax(1))
    au = np.stack([rows.column(a).to_numpy() for a in AUS], 1)
    assert np.array_equal(au, np.stack([rows.column(f"p_{a}").to_numpy() >= 0.5 for a in AUS], 1))
    assert np.array_equal(read_annotation(out / "AU" / "speaker.txt", "au").values, au)
    va = np.stack([rows.column("valence").to_numpy(), rows.column("arousal").to_numpy()], 1)
    assert np.allclose(read_annotation(out / "VA" / "speaker.txt", "va").values, va, atol=1e-6)
    csv = pacsv.read_csv(out / "table" / "speaker.csv")
    assert csv.column_names == rows.column_names and csv.num_rows == 25
    assert np.allclose(csv.column("valence").to_numpy(), rows.column("valence").to_numpy(), atol=1e-6)


@pytest.fixture(scope="module")
def face_leaves(tmp_path_factory, media) -> tuple[Path, np.ndarray]:
    """Two seconds of a real speaker whose face is hidden (black) in frames 15-29 and 45-49: the video and
    the frames with a face."""
    video = tmp_path_factory.mktemp("leaves") / "leaves.mp4"
    ffmpeg("-i", str(media / "grid_lwbsza_h264.mp4"), "-t", "2", "-vf",
           "drawbox=enable='between(n,15,29)+between(n,45,49)':x=0:y=0:w=iw:h=ih:color=black:t=fill",
           "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", str(video))
    face = np.ones(50, bool)
    face[15:30] = face[45:50] = False
    return video, face


def test_faceless_frames_are_flagged_everywhere(tmp_path, face_leaves, models_dir, checkpoint, monkeypatch):
    """The table flags the frames without a face, the timeline shades exactly those stretches, and the rendered
    video has the same frames and duration, a green box and yellow landmarks where a face was found and
    neither where it was not, and the input's audio."""
    video, face = face_leaves
    shaded = []
    draw = plots.timeline

    def timeline(*args, **kwargs):
        draw(*args, **kwargs)
        shaded.append(kwargs["face"])
    monkeypatch.setattr(plots, "timeline", timeline)
    out = tmp_path / "out"
    assert run_cli(video, "--checkpoint", checkpoint, "--out", out, "--models-dir", models_dir, "--render",
                   "--one-person") == 0
    rows = table(out, "leaves")
    assert np.array_equal(rows.column("face_found").to_numpy(zero_copy_only=False), face)
    assert set(rows.filter(pc.invert(rows.column("face_found"))).column("face_reason").to_pylist()) <= {"no_face",
                                                                                                      "lost"}
    assert np.isnan(rows.column("box_x1").to_numpy()[~face]).all()
    assert np.array_equal(shaded[0], face)
    assert runs(~face) == [(15, 30), (45, 50)]
    report = json.loads((out / "report" / "leaves.json").read_text())
    assert report["tracks"]["leaves"] == {"frames": 50, "face_frames": 30}

    rendered = out / "render" / "leaves.mp4"
    source, result = probe(video), probe(rendered)
    assert result.n_frames == source.n_frames == 50
    assert abs(result.duration - source.duration) < 1 / 25 and result.has_audio
    assert result.width == source.width + PANEL_WIDTH and result.height == max(source.height, 440)
    box = np.stack([rows.column(c).to_numpy() for c in ("box_x1", "box_y1", "box_x2", "box_y2")], 1)
    for i, frame in enumerate(iter_frames(rendered)):
        picture = frame[:source.height, :source.width].astype(int)
        green = (picture[..., 1] > 180) & (picture[..., 0] < 90) & (picture[..., 2] < 90)
        yellow = (picture[..., 0] > 200) & (picture[..., 1] > 180) & (picture[..., 2] < 90)
        if face[i]:
            x1, y1, x2, y2 = np.round(box[i]).astype(int)
            edge = green[max(y1 - 2, 0):y1 + 3, x1:x2]  # the top side of the box
            assert edge.mean() > 0.5, f"frame {i}: no box drawn"
            assert yellow[y1:y2, x1:x2].sum() > 100, f"frame {i}: no landmarks drawn in the box"
        else:
            assert green.sum() == 0 and yellow.sum() == 0, f"frame {i}: a box or landmarks drawn without a face"


def test_shading_and_title(tmp_path, monkeypatch):
    """The timeline draws one shaded span per faceless stretch in each panel, says "predictions" without labels,
    and draws a one-frame video and a CJK name without a warning."""
    figures = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: figures.append(fig))
    n = 40
    rng = np.random.default_rng(0)
    pred = {"va": rng.uniform(-1, 1, (n, 2)), "expr": rng.integers(0, 7, n), "au": rng.uniform(0, 1, (n, 12))}
    face = np.ones(n, bool)
    face[5:9] = face[30:] = False
    plots.timeline("x", np.arange(n) / 25, pred, {}, tmp_path / "x.png", face=face)
    axes = figures[-1].axes
    spans = [[p.get_x() for p in ax.patches if p.get_hatch() == "//"] for ax in axes[:4]]
    assert all(np.allclose(s, [0.2, 1.2]) for s in spans), spans
    assert axes[0].get_title() == "x: predictions; face found in 26 of 40 frames (shaded: no face)"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        one = {"va": np.array([[0.5, -0.5]]), "expr": np.array([4]), "au": np.full((1, 12), 0.7)}
        plots.timeline("讲话 人", np.zeros(1), one, {}, tmp_path / "one.png", face=np.array([True]))
        figures[-1].canvas.draw()
    assert figures[-1].axes[0].get_title().startswith("\\u8bb2\\u8bdd \\u4eba: predictions")
    assert figures[-1].axes[0].lines[0].get_xydata()[:, 1].tolist() == [0.5, 0.5]


def test_one_frame_video_with_a_cjk_name(tmp_path, media, models_dir, checkpoint, recwarn):
    video = tmp_path / "讲话 人 1.mp4"
    ffmpeg("-i", str(media / "grid_lwbsza_h264.mp4"), "-frames:v", "1", "-c:v", "libx264", "-c:a", "aac",
           str(video))
    out = tmp_path / "out"
    assert run_cli(video, "--checkpoint", checkpoint, "--out", out, "--models-dir", models_dir, "--one-person",
                   "--render") == 0
    check_files(out, "讲话 人 1", 1)
    assert table(out, "讲话 人 1").num_rows == 1
    assert probe(out / "render" / "讲话 人 1.mp4").n_frames == 1
    assert not [w for w in recwarn if "glyph" in str(w.message).lower()]


def test_truncated_file_is_warned_and_recorded(tmp_path, media, models_dir, checkpoint, caplog):
    whole = tmp_path / "whole.mp4"
    ffmpeg("-i", str(media / "grid_lwbsza_h264.mp4"), "-t", "2", "-c:v", "libx264", "-preset", "ultrafast",
           "-c:a", "aac", "-movflags", "+faststart", str(whole))
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[:int(whole.stat().st_size * 0.5)])
    decoded = probe(cut).n_frames
    assert 0 < decoded < 50
    out = tmp_path / "out"
    assert run_cli(cut, "--checkpoint", checkpoint, "--out", out, "--models-dir", models_dir, "--one-person") == 0
    warning = [r.getMessage() for r in caplog.records if r.levelname == "WARNING" and "truncated" in r.getMessage()]
    assert warning and f"the container announces 50 frames, {decoded} decode" in warning[0]
    report = json.loads((out / "report" / "cut.json").read_text())
    assert report["frames"] == decoded and report["announced_frames"] == 50 and report["damaged"]
    rows = table(out, "cut")
    assert rows.num_rows == decoded
    assert json.loads(rows.schema.metadata[b"affect"])["damaged"] == report["damaged"]


def test_several_videos_share_one_model_load_and_one_stream(tmp_path, media, speaker, models_dir, checkpoint,
                                                           monkeypatch):
    """Two videos in one call: the model file is loaded once and `infer` runs once over both; each video's
    predictions are the bytes it gets alone."""
    other = tmp_path / "other.mp4"
    ffmpeg("-i", str(media / "pyfeat_single_face.mp4"), "-t", "1", "-c:v", "libx264", "-preset", "ultrafast",
           "-c:a", "aac", str(other))
    calls = {"load": 0, "infer": 0}
    load, infer = tsav.load_checkpoint, predict.infer

    def counted(name, function):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return function(*args, **kwargs)
        return wrapper
    monkeypatch.setattr(tsav, "load_checkpoint", counted("load", load))
    monkeypatch.setattr(predict, "infer", counted("infer", infer))
    common = ["--checkpoint", checkpoint, "--models-dir", models_dir, "--one-person"]
    assert run_cli(speaker, other, *common, "--out", tmp_path / "both") == 0
    assert calls == {"load": 1, "infer": 1}
    assert run_cli(other, *common, "--out", tmp_path / "alone") == 0
    for folder in ("VA", "EXPR", "AU"):
        assert (tmp_path / "both" / folder / "other.txt").read_bytes() == \
               (tmp_path / "alone" / folder / "other.txt").read_bytes()
    check_files(tmp_path / "both", "speaker", 25)


def test_landmarks_go_back_to_the_frame():
    """unalign_points inverts the alignment: frame points taken into the crop by align_matrix come back."""
    from affect.align import align_matrix, unalign_points
    kps = np.array([[130.6, 154.1], [179.1, 152.9], [158.5, 183.1], [139.2, 211.0], [176.4, 209.9]])
    points = np.random.default_rng(0).uniform(100, 250, (106, 2))
    matrix = align_matrix(kps, 64)
    in_crop = points @ matrix[:, :2].T + matrix[:, 2]
    assert np.allclose(unalign_points(in_crop, kps, 64), points, atol=1e-9)
    assert np.allclose(unalign_points(align_matrix(kps, 112)[:, :2] @ kps[0] + align_matrix(kps, 112)[:, 2], kps),
                       kps[0], atol=1e-9)
