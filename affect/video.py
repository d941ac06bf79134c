"""Read videos with ffmpeg: probe their streams, time their frames, stream their decoded frames.

Frames are the decoder's output frames in order (`-vsync passthrough`: none dropped, none duplicated).
Frame i's time is its presentation timestamp (ffprobe's best_effort_timestamp) minus that of frame 0,
so time 0 is the first video frame, and variable-frame-rate videos keep their real timing. Frames are
counted by decoding, never guessed from duration * fps. A truncated file gives the frames that decode.
Width and height are those of the decoded frames after ffmpeg's automatic rotation (display matrix).
"""

from __future__ import annotations

import json
import platform
import re
import shutil
import subprocess
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import ffmpeg
import numpy as np


# ffmpeg's float code (the AAC and MP3 encoders and decoders, the resampler) has one version per instruction set,
# and they round differently in the last bits. Pinned to the flags of every x86-64 processor since 2009
# (x86-64-v2), the same code runs on every x86-64 machine: ffmpeg calls whose output is stored pass these.
CPUFLAGS = (["-cpuflags", "mmx+mmxext+sse+sse2+sse3+ssse3+sse4.1+sse4.2+cmov"]
            if platform.machine().lower() in ("x86_64", "amd64") else [])


class VideoError(ValueError):
    """A file that ffmpeg cannot read as a video."""


@dataclass(frozen=True)
class VideoInfo:
    """One video's properties: the VIDEOS schema's fields, less video, path, part and fingerprint."""

    container: str
    codec: str
    width: int
    height: int
    fps_avg: float       # ffprobe's avg_frame_rate, else n_frames / duration
    fps_nominal: float   # ffprobe's r_frame_rate
    n_frames: int        # decoded frames
    duration: float      # seconds, the video stream's duration (else the container's)
    has_audio: bool
    audio_rate: int      # Hz, 0 without audio
    vfr: bool            # frame intervals differ by more than 2 ms (and 1%)
    errors: tuple[str, ...] = ()  # decoder errors while counting frames (damaged or truncated file)
    header_frames: int = 0        # frame count the container's header claims, 0 when it has none


def tool(name: str) -> str:
    """Path of ffmpeg / ffprobe, or an error saying how to install it."""
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"{name} not found on PATH: install ffmpeg (e.g. `apt-get install -y ffmpeg`, "
                           f"or `brew install ffmpeg`)")
    return path


def _rate(text: str | None) -> float:
    """'30000/1001' -> 29.97; '0/0' or missing -> 0."""
    if not text or text.startswith("0/") or text.endswith("/0"):
        return 0.0
    return float(Fraction(text))


def _streams(path: Path) -> dict:
    """ffprobe's format and streams of `path`, or VideoError naming the file."""
    if not path.is_file():
        raise VideoError(f"{path}: no such file")
    try:
        return ffmpeg.probe(str(path), cmd=tool("ffprobe"))
    except ffmpeg.Error as e:
        reason = e.stderr.decode(errors="replace").strip().splitlines()
        raise VideoError(f"{path}: not a readable video ({reason[-1] if reason else 'ffprobe failed'})") from None


def _video_stream(path: Path, info: dict) -> dict:
    video = [s for s in info["streams"] if s.get("codec_type") == "video"
             and not s.get("disposition", {}).get("attached_pic")]
    if not video:
        raise VideoError(f"{path}: no video stream")
    return video[0]


def _rotation(stream: dict) -> int:
    """Rotation in degrees from the display matrix side data (or the legacy rotate tag)."""
    for side in stream.get("side_data_list", []):
        if "rotation" in side:
            return int(round(float(side["rotation"]))) % 360
    return int(stream.get("tags", {}).get("rotate", 0)) % 360


def _decode(path: Path) -> tuple[np.ndarray, list[str]]:
    """Decode the video stream: frame timestamps in seconds (integer pts x time base) and decoder errors."""
    cmd = [tool("ffprobe"), "-v", "error", "-select_streams", "v:0", "-show_entries",
           "stream=time_base:frame=best_effort_timestamp,pts,pkt_dts", "-of", "json", str(path)]
    run = subprocess.run(cmd, capture_output=True)
    errors = [re.sub(r" @ 0x[0-9a-f]+", "", line) for line in run.stderr.decode(errors="replace").splitlines()]
    out = json.loads(run.stdout or b"{}")
    if not out.get("streams"):
        raise VideoError(f"{path}: no video stream")
    time_base = Fraction(out["streams"][0]["time_base"])
    ticks = []
    for i, frame in enumerate(out.get("frames", [])):
        tick = next((frame[k] for k in ("best_effort_timestamp", "pts", "pkt_dts") if k in frame), None)
        if tick is None:
            raise VideoError(f"{path}: frame {i} has no timestamp")
        ticks.append(int(tick))
    if not ticks:
        raise VideoError(f"{path}: no frame decodes")
    return np.asarray(ticks, dtype=np.int64) * float(time_base), errors


def frame_timestamps(path: str | Path) -> np.ndarray:
    """Container timestamps in seconds of the decoded video frames (the first one is the origin of the timeline)."""
    return _decode(Path(path))[0]


def frame_times(path: str | Path) -> np.ndarray:
    """Presentation time in seconds of every decoded frame, 0 = the first frame (float64)."""
    path = Path(path)
    _video_stream(path, _streams(path))
    times = frame_timestamps(path)
    return times - times[0]


def frame_size(path: str | Path) -> tuple[int, int]:
    """(width, height) of the decoded frames, after automatic rotation."""
    path = Path(path)
    stream = _video_stream(path, _streams(path))
    width, height = int(stream["width"]), int(stream["height"])
    return (height, width) if _rotation(stream) in (90, 270) else (width, height)


def probe(path: str | Path) -> VideoInfo:
    """Container, codecs, size, rates, decoded frame count, audio and VFR flag of one video."""
    path = Path(path)
    info = _streams(path)
    stream = _video_stream(path, info)
    audio = [s for s in info["streams"] if s.get("codec_type") == "audio"]
    times, errors = _decode(path)
    width, height = int(stream["width"]), int(stream["height"])
    width, height = (height, width) if _rotation(stream) in (90, 270) else (width, height)
    duration = float(stream.get("duration") or info["format"].get("duration") or 0.0)
    steps = np.diff(times)
    vfr = bool(steps.size and np.ptp(steps) > max(0.002, 0.01 * float(np.median(steps))))
    return VideoInfo(
        container=info["format"]["format_name"],
        codec=stream.get("codec_name", ""),
        width=width,
        height=height,
        fps_avg=_rate(stream.get("avg_frame_rate")) or (len(times) / duration if duration else 0.0),
        fps_nominal=_rate(stream.get("r_frame_rate")),
        n_frames=len(times),
        duration=duration,
        has_audio=bool(audio),
        audio_rate=int(audio[0].get("sample_rate", 0)) if audio else 0,
        vfr=vfr,
        errors=tuple(errors),
        header_frames=int(stream["nb_frames"]) if str(stream.get("nb_frames", "")).isdigit() else 0,
    )


# swscale's YUV -> RGB conversion has SIMD versions (x86, ARM) that round differently from its C code; with
# these flags it takes the exact path, and a frame decodes to the same bytes with every SIMD path off.
EXACT_RGB = ["-sws_flags", "accurate_rnd+bitexact"]


def frames_command(path: str | Path, cpuflags: list[str] = CPUFLAGS) -> list[str]:
    """The ffmpeg command that writes the video stream of `path` as raw RGB24 frames to stdout, one per
    entry of `frame_times`; `cpuflags`: ffmpeg's CPU flag options (default: the pinned `CPUFLAGS`)."""
    return [tool("ffmpeg"), *cpuflags, "-v", "error", "-nostdin", "-i", str(path), "-map", "0:v:0",
            "-vsync", "passthrough", *EXACT_RGB, "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:"]


def iter_frames(path: str | Path) -> Iterator[np.ndarray]:
    """Decoded RGB uint8 (H, W, 3) frames, streamed from an ffmpeg pipe (`frames_command`), one per entry of
    `frame_times`. Never holds more than one frame; a truncated file yields the frames that decode, then stops.
    """
    path = Path(path)
    width, height = frame_size(path)
    cmd = frames_command(path)
    size = width * height * 3
    process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, bufsize=size)
    try:
        while True:
            data = process.stdout.read(size)
            if len(data) < size:
                break
            yield np.frombuffer(data, np.uint8).reshape(height, width, 3)
    finally:
        process.stdout.close()
        process.kill()
        process.wait()
