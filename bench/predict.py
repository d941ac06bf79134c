"""`affect predict`: peak memory against video length, and speed at the demo's and at TSAV's full model size.

Inputs are a real clip (`../shared/media/grid_lwbsza_h264.mp4`, 3 s, 360x288, 25 fps, AAC) looped with ffmpeg
`-stream_loop` to each length (stream copy: the same frames again). Each measurement runs `affect predict`'s
library call (`affect.predict.predict_videos`) in a fresh Python process and reports its peak resident memory
(`ru_maxrss`; the ffmpeg child processes not included) and the seconds it spent in preprocessing (probe, split,
align, landmarks, masks, mel), inference (loader and model) and writing (files, timeline), as video seconds
processed per wall second. Models: untrained TSAVs saved with the project's `save_model` and the record of
params.yaml (speed does not depend on the weights): the demo size (params.yaml: model.width 0.125,
align.crop_size 64) and TSAV's full size (width 1.0, crop 112). CPU, one thread (OMP_NUM_THREADS=1, the
preprocessing's own setting); GPU rows say "not measured" where there is no GPU.

`python -m bench.predict [--lengths 15 60 300 1800] [--speed-length 5] [--work DIR]` (TSAV at full size predicts
about 0.02 video seconds per wall second on this CPU, hence the short speed clip)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
CLIP = ROOT.parent / "shared" / "media" / "grid_lwbsza_h264.mp4"
MODELS = {"demo": {}, "full": {"model": {"width": 1.0}, "align": {"crop_size": 112}}}


def loop(clip: Path, seconds: float, path: Path) -> Path:
    """`clip` looped to `seconds` (stream copy), at `path`."""
    if not path.exists():
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-stream_loop", "-1", "-i", str(clip), "-t", str(seconds),
                        "-c", "copy", str(path)], check=True)
    return path


def checkpoint(size: str, folder: Path) -> Path:
    """An untrained TSAV of `size` (MODELS) saved as the train stage saves it."""
    from affect.pipeline import model_record
    from affect.tsav import TSAV, save_model
    from tests.pipeline import params

    path = folder / f"{size}.pt"
    if not path.exists():
        used = params(MODELS[size])
        torch.manual_seed(0)
        save_model(TSAV(width=used["model"]["width"], n_mels=used["audio"]["n_mels"]), path,
                   model_record(used, data=""))
    return path


def measure_one(video: Path, model_path: Path, models_dir: Path, out: Path) -> dict:
    """Run in a fresh process: predict `video`, return seconds and peak RSS."""
    from affect.predict import predict_videos
    from affect.tsav import load_checkpoint

    start = time.perf_counter()
    model, record = load_checkpoint(model_path)
    result = predict_videos([video], model, record, out, models_dir=models_dir, two_person=False, threads=1)
    if result.errors:
        raise RuntimeError("; ".join(result.errors))
    return {**result.seconds, "wall": time.perf_counter() - start,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def run(video: Path, model_path: Path, models_dir: Path, work: Path) -> dict:
    out = Path(tempfile.mkdtemp(prefix="out-", dir=work))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "bench.predict", "--one", str(video), str(model_path),
                           str(models_dir), str(out)], cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(done.stderr[-2000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def models_folder(work: Path) -> Path:
    """The face models of params.yaml, materialised from the mirror (as the models stage does)."""
    from affect.models import materialise
    from tests.pipeline import params

    folder = work / "models"
    materialise(params()["models"]["names"], folder, ROOT.parent / "shared" / "models")
    return folder


def rate(row: dict) -> str:
    busy = row["preprocess"] + row["infer"] + row["write"]
    return (f"{row['video'] / busy:.2f} | {row['video'] / row['preprocess']:.2f} | {row['video'] / row['infer']:.2f}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=float, nargs="+", default=[15, 60, 300, 1800])
    parser.add_argument("--speed-length", type=float, default=5)
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--one", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args(sys.argv[2:] if argv is None and sys.argv[1:2] == ["predict"] else argv)
    if args.one:
        video, model_path, models_dir, out = map(Path, args.one)
        print(json.dumps(measure_one(video, model_path, models_dir, out)))
        return
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-predict-"))
    work.mkdir(parents=True, exist_ok=True)
    models_dir = models_folder(work)
    demo, full = checkpoint("demo", work), checkpoint("full", work)
    print(f"clip {CLIP.name} looped; CPU, OMP_NUM_THREADS=1; work folder {work}\n")
    print("Speed, video seconds per wall second (preprocessing, inference and writing together | preprocessing "
          "alone | inference alone):\n")
    print("| model | device | video | all | preprocessing | inference | peak RSS |")
    print("|---|---|---|---|---|---|---|")
    video = loop(CLIP, args.speed_length, work / f"loop{args.speed_length:g}.mp4")
    for name, path in (("demo (width 0.125, crop 64)", demo), ("TSAV full (width 1.0, crop 112)", full)):
        row = run(video, path, models_dir, work)
        print(f"| {name} | CPU | {args.speed_length:g} s | {rate(row)} | {row['peak_rss_mib']:.0f} MiB |",
              flush=True)
        print(f"| {name} | GPU | - | not measured (no GPU on this machine) | | | |", flush=True)
    print("\nPeak memory against video length (demo model):\n")
    print("| video | frames | peak RSS | preprocessing s | inference s | wall s |")
    print("|---|---|---|---|---|---|")
    for seconds in args.lengths:
        video = loop(CLIP, seconds, work / f"loop{seconds:g}.mp4")
        row = run(video, demo, models_dir, work)
        print(f"| {seconds:g} s | {round(seconds * 25)} | {row['peak_rss_mib']:.0f} MiB | {row['preprocess']:.1f} | "
              f"{row['infer']:.1f} | {row['wall']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
