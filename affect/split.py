"""Split videos into a frame timetable and a WAV: the `split` stage of one part (`split_part`).

For each video of a part (the index's `parts/part-<p>.json`; one video is one unit of work, `split_one`):
- every decoded frame's presentation time (seconds, 0 = first frame) goes into `frames.arrow` (FRAMES),
  from the real timestamps, so variable-frame-rate videos keep their timing;
- its first audio stream goes to `audio/<video>.wav`: mono 16-bit PCM at `sample_rate`, resampled by
  ffmpeg, where sample 0 is the time of the first video frame. An audio stream that starts after the
  first frame (per the container's start times) is padded at the start with silence, one that starts
  earlier is cut. A video without audio gets no WAV and a row with has_audio false, n_samples 0.
- `audio.arrow` (AUDIO) has one row per video.

A video whose bytes no longer match the index's fingerprint is an error (rerun the index). A video that
cannot be decoded: with on_error "fail" an error naming it; with "skip" it is logged, has no row in
frames.arrow nor audio.arrow, and is listed in `skipped.json` (always written, [] when none). A truncated
video keeps the frames (and audio) that decode. Nothing replaces the previous outputs until every video
is done: WAVs are written into a staging folder and moved into `audio/` at the end, stale ones removed.
Results are ordered by video, whatever `jobs`.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
import wave
from dataclasses import dataclass
from pathlib import Path

import ffmpeg
import numpy as np
import pyarrow as pa

from affect.parallel import run_units
from affect.schema import AUDIO, FRAMES, Layout, read_part
from affect.shards import atomic_path, sha256_of, write_arrow, write_json
from affect.video import CPUFLAGS, VideoError, frame_timestamps, tool

log = logging.getLogger(__name__)

CHUNK = 1 << 16  # samples read from ffmpeg at a time


class SplitError(ValueError):
    """A video the split stage cannot process; the message names it."""


@dataclass
class SplitResult:
    """One video's frame times and audio (or the reason it was skipped)."""

    video: str
    pts: np.ndarray | None = None
    has_audio: bool = False
    n_samples: int = 0
    error: str = ""


def _audio_start(path: Path) -> float | None:
    """Container start time in seconds of the first audio stream, None without audio."""
    try:
        info = ffmpeg.probe(str(path), cmd=tool("ffprobe"), select_streams="a:0")
    except ffmpeg.Error as e:
        raise VideoError(f"{path}: not readable ({e.stderr.decode(errors='replace').strip()})") from None
    if not info["streams"]:
        return None
    for start in (info["streams"][0].get("start_time"), info["format"].get("start_time")):
        if start not in (None, "N/A"):
            return float(start)
    return 0.0


def extract_audio(video_path: str | os.PathLike, wav_path: str | os.PathLike, sample_rate: int,
                  origin: float | None = None) -> int:
    """Write the video's audio as mono s16 WAV, sample 0 = first video frame; return samples written (0: no audio).

    `origin` is the container time of the first video frame (computed when not given).
    """
    video_path = Path(video_path)
    start = _audio_start(video_path)
    if start is None:
        return 0
    if origin is None:
        origin = float(frame_timestamps(video_path)[0])
    shift = int(round((start - origin) * sample_rate))
    cmd = [tool("ffmpeg"), *CPUFLAGS, "-v", "error", "-nostdin", "-i", str(video_path), "-map", "0:a:0", "-vn", "-ac", "1",
           "-ar", str(sample_rate), "-f", "s16le", "-acodec", "pcm_s16le", "pipe:"]
    n_samples = 0
    with tempfile.TemporaryFile() as stderr, atomic_path(wav_path) as tmp:
        process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=stderr)
        with wave.open(str(tmp), "wb") as wav:
            wav.setnchannels(1)
            wav.setsampwidth(2)
            wav.setframerate(sample_rate)
            if shift > 0:
                wav.writeframes(bytes(2 * shift))
                n_samples += shift
            cut = max(0, -shift) * 2
            while chunk := process.stdout.read(2 * CHUNK):
                if cut:
                    dropped = min(cut, len(chunk))
                    chunk, cut = chunk[dropped:], cut - dropped
                wav.writeframes(chunk)
                n_samples += len(chunk) // 2
        process.stdout.close()
        failed = process.wait() != 0
        stderr.seek(0)
        errors = stderr.read().decode(errors="replace").strip()
        if failed and n_samples <= max(shift, 0):
            raise VideoError(f"{video_path}: audio does not decode ({errors.splitlines()[-1] if errors else '?'})")
    if errors:
        log.warning("%s: audio decoder errors, kept what decodes: %s", video_path, errors.splitlines()[0])
    return n_samples


def split_video(entry: dict, audio_dir: str | os.PathLike, sample_rate: int) -> SplitResult:
    """Frame times and WAV (into `audio_dir`) of one video entry of a part JSON."""
    path = Path(entry["path"])
    if not path.is_file():
        raise SplitError(f"{path}: video {entry['video']} is missing (listed in the index)")
    if sha256_of(path) != entry["fingerprint"]:
        raise SplitError(f"{path}: changed since the index stage (fingerprint differs): rerun the index stage")
    stamps = frame_timestamps(path)
    if len(stamps) != entry["n_frames"]:
        log.warning("%s: %d frames decode, the index counted %d", path, len(stamps), entry["n_frames"])
    n_samples = extract_audio(path, Path(audio_dir) / f"{entry['video']}.wav", sample_rate, origin=float(stamps[0]))
    return SplitResult(entry["video"], stamps - stamps[0], bool(n_samples), n_samples)


def split_one(unit: tuple[dict, str, int, str]) -> SplitResult:
    """One unit of work: (part entry, staging folder for the WAV, sample rate, on_error) -> its SplitResult
    (with `error` set when the video is skipped)."""
    entry, audio_dir, sample_rate, on_error = unit
    try:
        return split_video(entry, audio_dir, sample_rate)
    except VideoError as e:
        if on_error == "fail":
            raise SplitError(f"{entry['path']}: cannot split video {entry['video']}: {e} "
                             f"(set split.on_error: skip to skip it)") from None
        return SplitResult(entry["video"], error=str(e))


def split_part(part: int, params: dict, layout: Layout) -> dict:
    """The split stage for one part: every video of `layout.part_json(part)` into `layout.split(part)`
    (frames.arrow, audio.arrow, audio/, skipped.json). Params: audio.sample_rate, split.on_error, split.jobs.
    Returns counts."""
    sample_rate, on_error = params["audio"]["sample_rate"], params["split"]["on_error"]
    if on_error not in ("fail", "skip"):
        raise ValueError(f"split.on_error must be fail or skip, got {on_error!r}")
    entries = sorted(read_part(layout.part_json(part))["videos"], key=lambda e: e["video"])
    out_dir = layout.split(part)
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".audio.", suffix=".tmp", dir=out_dir))
    try:
        units = [(entry, str(staging), sample_rate, on_error) for entry in entries]
        results = list(run_units(split_one, units, params["split"]["jobs"], f"split part {part}",
                                 executor=params.get("executor")))

        done = [r for r in results if not r.error]
        skipped = [{"video": r.video, "path": e["path"], "error": r.error}
                   for r, e in zip(results, entries) if r.error]
        for s in skipped:
            log.warning("skipped %s: %s", s["video"], s["error"])
        frames = pa.table({
            "video": pa.array([r.video for r in done for _ in range(len(r.pts))], pa.string()),
            "frame": pa.array(np.concatenate([np.arange(len(r.pts), dtype=np.int32) for r in done]
                                             or [np.zeros(0, np.int32)])),
            "pts": pa.array(np.concatenate([r.pts for r in done] or [np.zeros(0)])),
        }, schema=FRAMES)
        audio = pa.table({
            "video": [r.video for r in done],
            "has_audio": [r.has_audio for r in done],
            "wav": [f"{r.video}.wav" if r.has_audio else "" for r in done],
            "sample_rate": [sample_rate] * len(done),
            "n_samples": [r.n_samples for r in done],
        }, schema=AUDIO)

        audio_dir = out_dir / "audio"
        audio_dir.mkdir(exist_ok=True)
        keep = {f"{r.video}.wav" for r in done if r.has_audio}
        for name in sorted(keep):
            os.replace(staging / name, audio_dir / name)
        for stale in sorted(audio_dir.glob("*.wav")):
            if stale.name not in keep:
                stale.unlink()
        write_arrow(frames, out_dir / "frames.arrow")
        write_arrow(audio, out_dir / "audio.arrow")
        write_json(skipped, out_dir / "skipped.json")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {"videos": len(done), "frames": frames.num_rows, "skipped": len(skipped)}
