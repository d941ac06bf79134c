"""`affect predict` streams a long video: peak memory grows little with its length (bench.predict reports the
figures against length)."""

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

from affect.pipeline import model_record
from affect.tsav import TSAV, save_model
from tests.pipeline import params

ROOT = Path(__file__).resolve().parents[1]


def peak_rss_mib(video: Path, checkpoint: Path, models_dir: Path, out: Path) -> float:
    """Peak resident memory (MiB) of a fresh process that predicts `video` (bench.predict's measurement)."""
    done = subprocess.run([sys.executable, "-m", "bench.predict", "--one", str(video), str(checkpoint),
                           str(models_dir), str(out)], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])["peak_rss_mib"]


@pytest.mark.slow
def test_peak_memory_stays_bounded_on_a_longer_video(tmp_path, media, models_dir):
    """A real 3 s clip looped to 15 s and to 60 s: four times the frames, audio and predictions, and the peak
    resident memory differs by less than 100 MiB. Before the spectrogram was computed in chunks it differed by
    157 MiB; what remains (42 and 66 MiB in two runs, BENCHMARKS.md) is mostly the align step's JPEG crops of
    the video."""
    checkpoint = tmp_path / "model.pt"
    torch.manual_seed(0)
    save_model(TSAV(width=0.125), checkpoint, model_record(params(), data=""))
    for seconds in (15, 60):
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-stream_loop", "-1", "-i", str(media / "grid_lwbsza_h264.mp4"),
                        "-t", str(seconds), "-c", "copy", str(tmp_path / f"loop{seconds}.mp4")], check=True)
    with ThreadPoolExecutor(2) as pool:   # two processes at once: each measures its own peak
        peaks = dict(zip((15, 60), pool.map(lambda s: peak_rss_mib(tmp_path / f"loop{s}.mp4", checkpoint, models_dir,
                                                                    tmp_path / f"out{s}"), (15, 60))))
    assert peaks[60] - peaks[15] < 100, peaks
