"""The split stage: frame timestamps and WAVs aligned to the first video frame, on real media."""

import json
import shutil
import subprocess
import wave
from pathlib import Path

import numpy as np
import pytest

from affect.index import build_index, write_index
from affect.schema import Layout
from affect.shards import read_arrow
from affect.split import SplitError, extract_audio, split_part
from affect.shards import sha256_of as fingerprint
from affect.video import frame_times
from tests.pipeline import params

RATE = 16000
GRID_MP4 = "grid_lwbsza_h264.mp4"


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", *args], check=True)


def read_wav(path: Path) -> np.ndarray:
    with wave.open(str(path)) as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, RATE)
        return np.frombuffer(wav.readframes(wav.getnframes()), np.int16).astype(np.float64)


def split_to(part_json: Path, root: Path, jobs: int, on_error: str = "fail") -> Path:
    """The split step on the part file `part_json`, as part 0 of a layout rooted at `root`; returns its folder."""
    layout = Layout(root)
    if layout.part_json(0) != part_json:
        layout.part_json(0).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(part_json, layout.part_json(0))
    split_part(0, params({"audio": {"sample_rate": RATE}, "split": {"jobs": jobs, "on_error": on_error}}), layout)
    return layout.split(0)


def index_part(dataset: Path) -> Path:
    return Layout(dataset / "data").part_json(0)


def lag(signal: np.ndarray, reference: np.ndarray) -> int:
    """Samples by which `signal` is late against `reference` (cross-correlation peak)."""
    n = len(signal) + len(reference)
    corr = np.fft.irfft(np.fft.rfft(signal, n) * np.conj(np.fft.rfft(reference, n)), n)
    peak = int(np.argmax(corr))
    return peak if peak < n // 2 else peak - n


@pytest.fixture(scope="module")
def dataset(media, tmp_path_factory) -> Path:
    """Index outputs (one part) of real clips plus derived edge cases: VFR, late and early audio, no audio, cut."""
    base = tmp_path_factory.mktemp("split")
    videos = base / "raw" / "videos"
    videos.mkdir(parents=True)
    shutil.copyfile(media / "grid_bbaf2n.mpg", videos / "grid_bbaf2n.mpg")
    shutil.copyfile(media / "two_person_grid_bbaf2n_swiz3n_sbs.mp4", videos / "two.mp4")
    shutil.copyfile(media / GRID_MP4, videos / "grid.mp4")
    source = str(media / GRID_MP4)
    ffmpeg("-i", source, "-itsoffset", "0.5", "-i", source, "-map", "0:v", "-map", "1:a", "-c", "copy",
           str(videos / "late.mp4"))
    ffmpeg("-itsoffset", "0.5", "-i", source, "-i", source, "-map", "0:v", "-map", "1:a", "-c", "copy",
           str(videos / "early.mp4"))
    ffmpeg("-i", source, "-an", "-c", "copy", str(videos / "mute.mp4"))
    ffmpeg("-i", source, "-vf", "setpts='if(lt(N,25),N/25,1+(N-25)*2/25)/TB'", "-fps_mode", "vfr",
           "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "copy", str(videos / "vfr.mp4"))
    (videos / "cut.mpg").write_bytes((media / "grid_lwbsza.mpg").read_bytes()[:200_000])
    write_index(build_index(base / "raw", n_parts=1, jobs=1), Layout(base / "data").index)
    return base


@pytest.fixture(scope="module")
def split(dataset) -> Path:
    return split_to(index_part(dataset), dataset / "data", jobs=1)


def test_frames_are_the_decoded_timestamps(dataset, split):
    frames = read_arrow(split / "frames.arrow")
    part = json.loads(index_part(dataset).read_text())
    names = [v["video"] for v in part["videos"]]
    assert names == sorted(names) == ["cut", "early", "grid", "grid_bbaf2n", "late", "mute", "two", "vfr"]
    videos = frames.column("video").to_pylist()
    assert videos == sorted(videos)
    for entry in part["videos"]:
        rows = frames.filter(frames.column("video").to_numpy(zero_copy_only=False) == entry["video"])
        assert rows.column("frame").to_pylist() == list(range(entry["n_frames"]))
        np.testing.assert_array_equal(rows.column("pts").to_numpy(), frame_times(entry["path"]))
    vfr = frames.filter(frames.column("video").to_numpy(zero_copy_only=False) == "vfr").column("pts").to_numpy()
    np.testing.assert_allclose(vfr, np.concatenate([np.arange(25) / 25, 1 + np.arange(50) * 2 / 25]), atol=1e-3)
    cut = frames.filter(frames.column("video").to_numpy(zero_copy_only=False) == "cut")
    assert 0 < cut.num_rows < 75


def test_audio_starts_at_the_first_video_frame(dataset, split, tmp_path):
    audio = {row["video"]: row for row in read_arrow(split / "audio.arrow").to_pylist()}
    assert audio["mute"] == {"video": "mute", "has_audio": False, "wav": "", "sample_rate": RATE, "n_samples": 0}
    assert not (split / "audio" / "mute.wav").exists()
    for name in ("grid", "late", "early", "two", "vfr", "cut", "grid_bbaf2n"):
        assert audio[name]["has_audio"] and audio[name]["wav"] == f"{name}.wav"
        assert len(read_wav(split / "audio" / f"{name}.wav")) == audio[name]["n_samples"] > 0

    reference = read_wav(split / "audio" / "grid.wav")
    late = read_wav(split / "audio" / "late.wav")       # audio stream starts 0.5 s after the video
    assert abs(lag(late, reference) - 0.5 * RATE) <= 0.01 * RATE
    assert not late[: int(0.45 * RATE)].any()           # padded with silence
    early = read_wav(split / "audio" / "early.wav")     # video starts 0.5 s after the audio
    assert abs(lag(early, reference) + 0.5 * RATE) <= 0.01 * RATE
    assert abs(len(early) - (len(reference) - 0.5 * RATE)) <= 0.01 * RATE
    assert lag(read_wav(split / "audio" / "vfr.wav"), reference) == 0

    assert extract_audio(dataset / "raw" / "videos" / "early.mp4", tmp_path / "again.wav", RATE) == len(early)
    assert extract_audio(dataset / "raw" / "videos" / "mute.mp4", tmp_path / "none.wav", RATE) == 0
    assert not (tmp_path / "none.wav").exists()


def test_same_bytes_whatever_jobs(dataset, split, tmp_path):
    again = split_to(index_part(dataset), tmp_path, jobs=2)
    files = sorted(p.relative_to(split) for p in split.rglob("*") if p.is_file())
    assert [p for p in files if p.parent == Path(".")] == [Path("audio.arrow"), Path("frames.arrow"),
                                                           Path("skipped.json")]
    assert sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file()) == files
    for name in files:
        assert (split / name).read_bytes() == (again / name).read_bytes(), name


def bad_part(dataset: Path, tmp_path: Path) -> Path:
    """A part listing one good video and a file that does not decode (with its true fingerprint)."""
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(5000))
    good = dataset / "raw" / "videos" / "grid_bbaf2n.mpg"
    part = {"part": 0, "videos": [
        {"video": "broken", "path": str(broken), "fingerprint": fingerprint(broken), "n_frames": 75,
         "has_audio": True, "tracks": [{"track": "broken", "person": "main"}]},
        {"video": "grid_bbaf2n", "path": str(good), "fingerprint": fingerprint(good), "n_frames": 75,
         "has_audio": True, "tracks": [{"track": "grid_bbaf2n", "person": "main"}]}]}
    path = tmp_path / "part-0.json"
    path.write_text(json.dumps(part))
    return path


def test_undecodable_video_fails_or_is_skipped(dataset, tmp_path):
    part = bad_part(dataset, tmp_path)
    out = split_to(index_part(dataset), tmp_path / "data", jobs=1)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    with pytest.raises(SplitError, match=str(tmp_path / "broken.mp4")):
        split_to(part, tmp_path / "data", jobs=1)
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before  # previous outputs intact

    split_to(part, tmp_path / "data", jobs=2, on_error="skip")
    skipped = json.loads((out / "skipped.json").read_text())
    assert [s["video"] for s in skipped] == ["broken"] and "broken.mp4" in skipped[0]["error"]
    assert set(read_arrow(out / "frames.arrow").column("video").to_pylist()) == {"grid_bbaf2n"}
    assert read_arrow(out / "audio.arrow").column("video").to_pylist() == ["grid_bbaf2n"]
    assert sorted(p.name for p in (out / "audio").iterdir()) == ["grid_bbaf2n.wav"]  # stale WAVs removed


def test_video_changed_since_the_index_is_an_error(dataset, tmp_path):
    part = json.loads(index_part(dataset).read_text())
    part["videos"][0]["fingerprint"] = "0" * 64
    (tmp_path / "part.json").write_text(json.dumps(part))
    with pytest.raises(SplitError, match="changed since the index stage"):
        split_to(tmp_path / "part.json", tmp_path / "out", jobs=1, on_error="skip")
