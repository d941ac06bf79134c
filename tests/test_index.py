"""The dataset index and video probing, on real media laid out as an ABAW2 tree."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from affect.annotations import AnnotationError, write_annotation
from affect.index import DatasetError, build_index, find_annotations, stable_part, write_index
from affect.video import VideoError, frame_times, frames_command, iter_frames, probe

ROOT = Path(__file__).resolve().parents[1]
GRID = ["grid_bbaf2n.mpg", "grid_lwbsza.mpg", "grid_sbwe5n.mpg", "grid_swiz3n.mpg",
        "grid_lwbsza_h264.mp4", "grid_bbaf2n_xvid.avi"]
TWO = "two_person_grid_bbaf2n_swiz3n_sbs.mp4"
PYFEAT = "pyfeat_single_face.mp4"
TASK_FOLDERS = {"va": "VA_Set", "expr": "EXPR_Set", "au": "AU_Set"}


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", *args], check=True)


def annotate(root: Path, task: str, set_name: str, track: str, n_rows: int, labelled_every: int = 1) -> Path:
    """Write an annotation of `n_rows` rows; every `labelled_every`-th row labelled."""
    rng = np.random.default_rng(n_rows)
    if task == "va":
        values = rng.uniform(-1, 1, (n_rows, 2)).astype(np.float32)
    elif task == "expr":
        values = rng.integers(0, 7, n_rows).astype(np.int8)
    else:
        values = rng.integers(0, 2, (n_rows, 12)).astype(np.int8)
    values[np.arange(n_rows) % labelled_every != 0] = -5 if task == "va" else -1
    path = root / "annotations" / TASK_FOLDERS[task] / set_name / f"{track}.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_annotation(values, path, task)
    return path


def place(media: Path, root: Path, name: str, folder: str = "videos", as_name: str | None = None) -> Path:
    target = root / folder / (as_name or name)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(media / name, target)
    return target


@pytest.fixture(scope="module")
def tree(media, tmp_path_factory) -> Path:
    """Real media in the four video folders, annotated in every way the index must understand."""
    root = tmp_path_factory.mktemp("abaw2")
    for name in GRID[:4]:
        place(media, root, name, "videos")
    place(media, root, GRID[4], "raw_video")
    place(media, root, GRID[5], "batch1")
    place(media, root, TWO, "batch2", "two.mp4")
    place(media, root, PYFEAT, "batch2", "sub/pyfeat.mp4")
    (root / "videos" / "notes.txt").write_text("not a video, ignored and reported")
    annotate(root, "va", "Train_Set", "grid_bbaf2n", 75)
    annotate(root, "expr", "Validation_Set", "grid_bbaf2n", 80, labelled_every=2)  # 5 extra rows
    annotate(root, "au", "Train_Set", "grid_lwbsza", 70)                          # 5 missing rows
    annotate(root, "va", "Validation_Set", "two_left", 75)
    annotate(root, "expr", "Train_Set", "two_right", 75, labelled_every=3)
    annotate(root, "va", "Train_Set", "pyfeat", 72)
    return root


@pytest.fixture(scope="module")
def index(tree):
    return build_index(tree, n_parts=3, jobs=1)


def test_shared_media_frames_counted_by_decoding(media):
    for name in [*GRID, TWO, PYFEAT]:
        times = frame_times(media / name)
        frames = iter_frames(media / name)
        first = next(frames)
        assert 1 + sum(1 for _ in frames) == len(times), name
        size = {TWO: (288, 720), PYFEAT: (360, 640)}.get(name, (288, 360))
        assert first.dtype == np.uint8 and first.shape == (*size, 3), name
        assert times[0] == 0 and np.all(np.diff(times) > 0)
    info = probe(media / PYFEAT)
    assert (info.n_frames, info.fps_avg, info.width, info.height, info.has_audio) == (72, 30, 640, 360, True)
    assert info.codec == "h264" and not info.vfr and info.errors == ()


def test_frames_decode_to_the_same_bytes_with_every_simd_path_off(media):
    """A frame is the same bytes on any processor: iter_frames (ffmpeg at the pinned CPU flags) gives exactly
    what ffmpeg gives with `-cpuflags 0` (no SIMD code at all, as on a processor ffmpeg has no assembly for),
    for MPEG-1, MPEG-4 (Xvid) and H.264. Without `EXACT_RGB` the YUV -> RGB conversion differs."""
    for name in ("grid_bbaf2n.mpg", "grid_bbaf2n_xvid.avi", PYFEAT):
        frames = b"".join(frame.tobytes() for frame in iter_frames(media / name))
        plain = subprocess.run(frames_command(media / name, ["-cpuflags", "0"]), capture_output=True, check=True).stdout
        assert len(frames) > 0 and frames == plain, name


def test_rotated_video_frames_come_upright_with_the_probed_size(media, tmp_path):
    rotated = tmp_path / "rotated.mp4"
    ffmpeg("-i", str(media / GRID[4]), "-c", "copy", "-metadata:s:v", "rotate=90", str(rotated))
    info = probe(rotated)
    assert (info.width, info.height) == (288, 360)
    assert next(iter_frames(rotated)).shape == (360, 288, 3)


def test_variable_frame_rate_video_keeps_its_timestamps(media, tmp_path):
    vfr = tmp_path / "vfr.mp4"  # 25 frames at 25 fps, then 50 frames at 12.5 fps
    ffmpeg("-i", str(media / GRID[4]), "-vf", "setpts='if(lt(N,25),N/25,1+(N-25)*2/25)/TB'",
           "-fps_mode", "vfr", "-an", "-c:v", "libx264", "-preset", "ultrafast", str(vfr))
    times = frame_times(vfr)
    expected = np.concatenate([np.arange(25) / 25, 1 + np.arange(50) * 2 / 25])
    np.testing.assert_allclose(times, expected, atol=1e-3)
    info = probe(vfr)
    assert info.vfr and info.n_frames == 75 and not info.has_audio
    assert sum(1 for _ in iter_frames(vfr)) == 75
    assert not probe(media / GRID[0]).vfr


def test_index_reports_grid_clips_two_person_and_unlabelled_videos(index, tree):
    videos = {row["video"]: row for row in index.videos.to_pylist()}
    assert sorted(videos) == ["grid_bbaf2n", "grid_bbaf2n_xvid", "grid_lwbsza", "grid_lwbsza_h264",
                              "grid_sbwe5n", "grid_swiz3n", "pyfeat", "two"]
    for name in GRID:
        row = videos[Path(name).stem]
        assert row["n_frames"] == 75 and row["fps_nominal"] == 25 and row["fps_avg"] == 25, name
        assert row["has_audio"] and row["audio_rate"] == 44100 and row["width"] == 360, name
        assert row["part"] == stable_part(row["video"], 3)
    assert videos["pyfeat"]["path"] == (tree / "batch2" / "sub" / "pyfeat.mp4").as_posix()
    assert videos["pyfeat"]["n_frames"] == 72 and videos["two"]["width"] == 720

    tracks = {row["track"]: row for row in index.tracks.to_pylist()}
    assert (tracks["two_left"]["video"], tracks["two_left"]["person"]) == ("two", "left")
    assert (tracks["two_right"]["video"], tracks["two_right"]["person"]) == ("two", "right")
    assert "two" not in tracks
    assert tracks["two_right"]["expr_set"] == "Train_Set" and tracks["two_right"]["expr_labelled"] == 25
    bbaf = tracks["grid_bbaf2n"]
    assert (bbaf["va_set"], bbaf["va_rows"], bbaf["va_labelled"]) == ("Train_Set", 75, 75)
    assert (bbaf["expr_set"], bbaf["expr_rows"], bbaf["expr_labelled"]) == ("Validation_Set", 80, 38)
    assert (bbaf["au_set"], bbaf["au_rows"], bbaf["au_labelled"]) == ("", 0, 0)
    assert (tracks["grid_lwbsza"]["au_rows"], tracks["grid_lwbsza"]["au_labelled"]) == (70, 70)
    unlabelled = tracks["grid_swiz3n"]
    assert unlabelled["person"] == "main" and unlabelled["n_frames"] == 75
    assert not any(unlabelled[f"{t}_set"] or unlabelled[f"{t}_labelled"] for t in ("va", "expr", "au"))

    report = index.report
    assert "80 annotation rows for 75 video frames" in " ".join(report["tracks"]["grid_bbaf2n"])
    assert "the last 5 frames are unlabelled" in " ".join(report["tracks"]["grid_lwbsza"])
    assert "unlabelled" in report["tracks"]["grid_swiz3n"][0]
    assert report["ignored_files"] == [(tree / "videos" / "notes.txt").as_posix()]

    listed = [v for p in sorted(index.parts) for v in index.parts[p]["videos"]]
    assert sorted(v["video"] for v in listed) == sorted(videos)
    for p, document in index.parts.items():
        assert document["part"] == p and [v["video"] for v in document["videos"]] == sorted(
            v["video"] for v in document["videos"])
        for v in document["videos"]:
            assert videos[v["video"]]["part"] == p and v["fingerprint"] == videos[v["video"]]["fingerprint"]
    two = next(v for v in listed if v["video"] == "two")
    assert two["tracks"] == [{"track": "two_left", "person": "left"}, {"track": "two_right", "person": "right"}]


def test_find_annotations(tree):
    found = find_annotations(tree)
    assert sorted(found) == ["au", "expr", "va"]
    assert found["va"]["two_left"] == ("Validation_Set", tree / "annotations/VA_Set/Validation_Set/two_left.txt")
    assert list(found["va"]) == sorted(found["va"])


def test_index_is_deterministic_whatever_jobs(tree, index, tmp_path):
    write_index(index, tmp_path / "a")
    write_index(build_index(tree, n_parts=3, jobs=2), tmp_path / "b")
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert [str(p) for p in files] == ["parts/part-0.json", "parts/part-1.json", "parts/part-2.json",
                                       "report.json", "tracks.parquet", "videos.parquet"]
    for name in files:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert pq.read_table(tmp_path / "a" / "tracks.parquet").equals(index.tracks)


def small_tree(media: Path, root: Path) -> Path:
    place(media, root, GRID[0])
    annotate(root, "va", "Train_Set", "grid_bbaf2n", 75)
    return root


def test_annotation_without_video_is_an_error(media, tmp_path):
    orphan = annotate(small_tree(media, tmp_path), "expr", "Train_Set", "lost_video_left", 75)
    with pytest.raises(DatasetError, match=str(orphan)):
        build_index(tmp_path, 2, jobs=1)


def test_two_videos_with_the_same_stem_are_an_error(media, tmp_path):
    small_tree(media, tmp_path)
    other = place(media, tmp_path, GRID[5], "batch1", "grid_bbaf2n.avi")
    with pytest.raises(DatasetError, match="two videos named grid_bbaf2n") as error:
        build_index(tmp_path, 2, jobs=1)
    assert str(other) in str(error.value) and str(tmp_path / "videos" / "grid_bbaf2n.mpg") in str(error.value)


def test_one_and_two_person_annotations_of_one_video_are_an_error(media, tmp_path):
    annotate(small_tree(media, tmp_path), "au", "Train_Set", "grid_bbaf2n_left", 75)
    with pytest.raises(DatasetError, match="both as one person"):
        build_index(tmp_path, 2, jobs=1)


def test_track_in_train_and_validation_is_an_error(media, tmp_path):
    annotate(small_tree(media, tmp_path), "va", "Validation_Set", "grid_bbaf2n", 75)
    with pytest.raises(DatasetError, match="annotated twice for va"):
        build_index(tmp_path, 2, jobs=1)


def test_bad_annotation_names_file_and_line(media, tmp_path):
    path = annotate(small_tree(media, tmp_path), "expr", "Train_Set", "grid_bbaf2n", 75)
    path.write_text(path.read_text().replace("\n3\n", "\nthree\n", 1))
    with pytest.raises(AnnotationError, match=rf"{path}:\d+: cell 'three' is not an integer"):
        build_index(tmp_path, 2, jobs=1)


def test_file_that_is_not_a_video_is_an_error(media, tmp_path):
    fake = small_tree(media, tmp_path) / "batch2" / "fake.mp4"
    fake.parent.mkdir()
    fake.write_bytes(b"this is text, not a video\n" * 100)
    with pytest.raises(VideoError, match=str(fake)):
        build_index(tmp_path, 2, jobs=1)


def test_truncated_video_and_video_without_audio_are_kept_and_reported(media, tmp_path):
    small_tree(media, tmp_path)
    (tmp_path / "videos" / "cut.mpg").write_bytes((media / GRID[1]).read_bytes()[:200_000])
    (tmp_path / "videos" / "cut_avi.avi").write_bytes((media / GRID[5]).read_bytes()[:100_000])
    ffmpeg("-i", str(media / GRID[4]), "-an", "-c", "copy", str(tmp_path / "videos" / "mute.mp4"))
    index = build_index(tmp_path, 2, jobs=1)
    videos = {row["video"]: row for row in index.videos.to_pylist()}
    assert 0 < videos["cut"]["n_frames"] < 75
    assert "truncated or damaged" in index.report["videos"]["cut"][0]
    assert 0 < videos["cut_avi"]["n_frames"] < 75
    assert "container suggests 76" in index.report["videos"]["cut_avi"][0]  # the AVI header's frame count
    assert "grid_bbaf2n" not in index.report["videos"]
    assert not videos["mute"]["has_audio"] and videos["mute"]["audio_rate"] == 0
    assert videos["mute"]["n_frames"] == 75
    assert "no audio stream" in index.report["videos"]["mute"][0]


def run_stage(cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "stages.index"], cwd=cwd, env=env, capture_output=True, text=True)


def test_stage_keeps_previous_outputs_when_it_fails(media, tmp_path):
    small_tree(media, tmp_path / "raw")
    (tmp_path / "params.yaml").write_text("parts: [0, 1]\ndataset: {root: raw}\nindex: {jobs: 1}\n")
    assert run_stage(tmp_path).returncode == 0
    out = tmp_path / "data" / "interim" / "index"
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert len(before) == 5
    listed = [v for p in (0, 1) for v in json.loads((out / "parts" / f"part-{p}.json").read_text())["videos"]]
    assert [v["path"] for v in listed] == ["raw/videos/grid_bbaf2n.mpg"]

    place(media, tmp_path / "raw", GRID[2])
    annotate(tmp_path / "raw", "au", "Train_Set", "nobody", 10)
    failed = run_stage(tmp_path)
    assert failed.returncode != 0 and "nobody.txt" in failed.stderr
    after = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before
