"""Every GPU measurement in one short run (under 5 minutes on one GPU and 16 cores), for whoever has a GPU:
`nice -n 0 .venv/bin/python -m bench.gpu` prints the rows BENCHMARKS.md keeps under "GPU".

1. Face models, frames/s: SCRFD-2.5G at 640 (`FaceDetector.detect`, pre- and post-processing included) and
   PFLD-106 (`LandmarkModel.predict_in_box`) on 150 GRID frames, ONNX Runtime's CPU provider (one thread)
   against CUDA (needs onnxruntime-gpu: README, GPU), one frame at a time as the align stage runs them.
2. Training step at TSAV's full size (width 1.0, 112 px crops, clips of 8, 2 s of mel), random tensors of the
   loader's shapes on the GPU (no loader): clips/s of `supervised` and `mean_teacher` with bf16 autocast,
   + channels-last 3D, + torch.compile (compile time excluded: warm-up steps first).
3. The loader feeding it: a small demo preprocessed at 112 px (the pipeline's own steps), ClipDataset with
   `workers` processes and pinned memory, the Mean Teacher step with the best layout of 2.; clips/s and the
   share of the wall time the training loop waits for the next batch (time inside the DataLoader's `next`).
4. JPEG decoding of the crops, the loader's main cost: OpenCV on one CPU core against
   `torchvision.io.decode_jpeg` on CUDA in batches of 256 crops.

Without CUDA it runs the same code on the CPU at toy sizes (`--smoke`, automatic), to check the script itself;
those numbers are not GPU figures.

A GPU machine without ffmpeg or the model mirror (a bare cloud node) takes what needs them from a CPU machine:
`python -m bench.gpu --prepare DIR` there writes the face models, the GRID frames (JPEG) and the preprocessed
demo into DIR (about 14 MB: no raw frames, no videos), and `python -m bench.gpu --prepared DIR` on the GPU
machine measures with them. ONNX Runtime's CUDA row needs onnxruntime-gpu; without it the script says so.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
import torchvision

from affect.detect import FaceDetector
from affect.images import decode_image, encode_jpeg
from affect.index import build_index, find_annotations, write_index
from affect.labels import build_labels
from affect.landmarks import LandmarkModel
from affect.mean_teacher import clip_brightness
from affect.models import materialise, model_file
from affect.partition import partition
from affect.pipeline import loader_options, preprocess
from affect.schema import TASKS, Layout
from affect.shards import read_arrow, read_shards, write_arrow, write_parquet
from affect.synth import generate
from affect.train import TrainConfig, clip_batches, fit
from affect.tsav import TSAV
from affect.video import iter_frames
from bench.faces import GRID, MEDIA
from stages import load_params

ROOT = Path(__file__).resolve().parents[1]
GPU = torch.cuda.is_available()
SMOKE = "--smoke" in sys.argv or not GPU
WIDTH, BATCH, STEPS, WARM_UP = (0.125, 4, 2, 1) if SMOKE else (1.0, 64, 30, 5)
WORKERS = (0, 2) if SMOKE else (4, 8, 14)


def synchronize() -> None:
    if GPU:
        torch.cuda.synchronize()


def grid_frames() -> list[np.ndarray]:
    """The RGB frames part 1 runs the face models on: the first 150 of two GRID videos."""
    return [f for g in GRID[:2] for f in iter_frames(MEDIA / f"{g}.mpg")][:150]


def face_models(models: Path, frames: list[np.ndarray]) -> list[str]:
    """Rows of part 1: frames/s per provider."""
    frames = frames[:20 if SMOKE else 150]
    rows = []
    cuda = "CUDAExecutionProvider" in ort.get_available_providers()
    if GPU and not cuda:
        print(f"ONNX Runtime {ort.__version__} has no CUDA provider here (onnxruntime-gpu): CPU row only\n")
    for providers in ("cpu", "cuda") if GPU and cuda else ("cpu",):
        detector = FaceDetector(model_file("scrfd_2.5g", "det", models), 640, 0.5, providers=providers)
        landmarks = LandmarkModel(model_file("pfld106", "landmarks", models), providers=providers)
        boxes = [detector.detect(f)[0] for f in frames[:3]]  # warm-up (CUDA: kernels, memory)
        start = time.perf_counter()
        boxes = [detector.detect(f)[0] for f in frames]
        detect_s = time.perf_counter() - start
        start = time.perf_counter()
        for frame, found in zip(frames, boxes):
            for box in found[:1]:
                landmarks.predict_in_box(frame, box)
        landmarks_s = time.perf_counter() - start
        rows.append(f"| {providers} | {len(frames)} | {len(frames) / detect_s:.0f} "
                    f"| {len(frames) / landmarks_s:.0f} |")
    return rows


def random_batches(clip_length: int, n_mels: int, columns: int, steps: int):
    """bench.train's batches at 112 px: half labelled, half unlabelled for every task, one batch reused."""
    g = torch.Generator().manual_seed(0)
    half = BATCH // 2
    batch = {"clip": torch.randn(BATCH, 4, clip_length, 112, 112, generator=g),
             "mel": torch.randn(BATCH, 1, n_mels, columns, generator=g),
             "expr": torch.cat([torch.randint(0, 7, (half,), generator=g), torch.full((BATCH - half,), -1)]),
             "au": torch.cat([torch.randint(0, 2, (half, 12), generator=g).float(), -torch.ones(BATCH - half, 12)]),
             "va": torch.cat([torch.rand(half, 2, generator=g) * 2 - 1, torch.full((BATCH - half, 2), float("nan"))]),
             "unlabelled": torch.cat([torch.zeros(half, len(TASKS), dtype=torch.bool),
                                      torch.ones(BATCH - half, len(TASKS), dtype=torch.bool)])}
    device = torch.device("cuda" if GPU else "cpu")
    batch = {k: v.to(device) for k, v in batch.items()}
    return lambda start: (batch for _ in range(start, steps))


def clips_per_second(method: str, params: dict, batches, steps: int, **options) -> float:
    device = torch.device("cuda" if GPU else "cpu")
    torch.manual_seed(0)
    student = TSAV(width=WIDTH, n_mels=params["audio"]["n_mels"])
    noise = clip_brightness(params["train"]["brightness"])
    never = 10**9
    fit(student, batches, TrainConfig(method=method, steps=WARM_UP, eval_every=never, checkpoint_every=never),
        teacher_input=noise, device=device, progress=False, **options)
    synchronize()
    start = time.perf_counter()
    fit(student, batches, TrainConfig(method=method, steps=steps, eval_every=never, checkpoint_every=never),
        teacher_input=noise, device=device, progress=False, **options)
    synchronize()
    return steps * BATCH / (time.perf_counter() - start)


def training(params: dict) -> list[str]:
    audio = params["audio"]
    columns = int(round(audio["window_s"] * audio["sample_rate"] / audio["hop_length"])) + 1
    batches = random_batches(params["clip"]["length"], audio["n_mels"], columns, WARM_UP + STEPS)
    variants = {"bf16": {}, "bf16 + channels-last 3D": {"channels_last": True},
                "bf16 + channels-last 3D + compile": {"channels_last": True, "compile": True}}
    if SMOKE:
        variants.pop("bf16 + channels-last 3D + compile")  # compiling on a small CPU takes minutes
    rows = []
    for name, options in variants.items():
        supervised = clips_per_second("supervised", params, batches, STEPS, **options)
        mean_teacher = clips_per_second("mean_teacher", params, batches, STEPS, **options)
        rows.append(f"| {name} | {WIDTH} | {BATCH} | {supervised:.0f} | {mean_teacher:.0f} |")
    return rows


def demo_layout(folder: Path, models: Path, params: dict, small: bool) -> Layout:
    """A small demo preprocessed at TSAV's 112 px, labelled and partitioned: 6 videos of 3-4 s (`small`: 3 of
    2-3 s)."""
    root, layout = folder / "demo", Layout(folder / "data", models)
    generate(root, n_videos=3 if small else 6, seconds=(2, 3) if small else (3, 4), jobs=params["align"]["jobs"])
    write_index(build_index(root, 1, jobs=1), layout.index)
    preprocess(0, params | {"dataset": {"root": str(root)}}, layout)
    index = build_index(root, 1, jobs=1)
    labels = build_labels(index.tracks, find_annotations(root))
    write_parquet(labels, layout.labels)
    write_parquet(partition(labels, "by_video", 0.8, 0), layout.partition)
    return layout


def loader(params: dict, layout: Layout) -> list[str]:
    from affect.data import ClipDataset

    dataset = ClipDataset.from_partition(layout, "train", **loader_options(params))
    device = torch.device("cuda" if GPU else "cpu")
    rows = []
    for workers in WORKERS:
        make = clip_batches(dataset, BATCH, 0.5, 0, WARM_UP + STEPS, workers=workers)
        waited = [0.0]

        def timed(start: int):
            iterator = iter(make(start))
            while True:
                begin = time.perf_counter()
                try:
                    batch = next(iterator)
                except StopIteration:
                    return
                waited[0] += time.perf_counter() - begin
                yield batch

        torch.manual_seed(0)
        student = TSAV(width=WIDTH, n_mels=params["audio"]["n_mels"])
        config = TrainConfig(method="mean_teacher", steps=WARM_UP + STEPS, eval_every=10**9, checkpoint_every=10**9)
        start = time.perf_counter()
        fit(student, timed, config, teacher_input=clip_brightness(params["train"]["brightness"]), device=device,
            progress=False, channels_last=True)
        synchronize()
        wall = time.perf_counter() - start
        rows.append(f"| {workers} | {BATCH} | {(WARM_UP + STEPS) * BATCH / wall:.0f} | {waited[0] / wall:.0%} |")
    return rows


def jpeg(layout: Layout) -> list[str]:
    crops = [c for c in read_shards(layout.faces(0)).column("crop").to_pylist() if c][:256 if SMOKE else 2048]
    start = time.perf_counter()
    for crop in crops:
        decode_image(crop)
    rows = [f"| OpenCV, one CPU core | {len(crops) / (time.perf_counter() - start):.0f} |"]
    if GPU:
        tensors = [torch.frombuffer(bytearray(c), dtype=torch.uint8) for c in crops]
        torchvision.io.decode_jpeg(tensors[:256], device="cuda")  # warm-up
        synchronize()
        start = time.perf_counter()
        for i in range(0, len(tensors), 256):
            torchvision.io.decode_jpeg(tensors[i:i + 256], device="cuda")
        synchronize()
        rate = len(crops) / (time.perf_counter() - start)
        rows.append(f"| torchvision decode_jpeg on CUDA, batches of 256 | {rate:.0f} |")
    return rows


def table(header: str, rows: list[str]) -> None:
    """A markdown table: the header, its rule (first column left, the others right), the rows, a blank line."""
    columns = header.count("|") - 1
    print(header, "|---|" + "---:|" * (columns - 1), *rows, "", sep="\n", flush=True)


def prepare(folder: Path, params: dict, small: bool) -> None:
    """What needs ffmpeg and the model mirror, into `folder`: the face models, the GRID frames (JPEG) and the
    demo layout (`small`: demo_layout's), without what the measurements do not read (videos, raw frames, QA)."""
    models = folder / "models"
    materialise(["scrfd_2.5g", "pfld106"], models, mirror=ROOT / params["models"]["mirror"], download=False)
    (folder / "frames").mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(grid_frames()):
        (folder / "frames" / f"{i:03d}.jpg").write_bytes(encode_jpeg(frame, 95))
    layout = demo_layout(folder, models, params, small)
    shutil.rmtree(folder / "demo")
    times = read_arrow(layout.frames(0)).select(["video", "frame", "pts"])  # what the loader reads of it
    shutil.rmtree(layout.split(0))
    write_arrow(times, layout.frames(0))
    shutil.rmtree(layout.root / "qa")


def prepared(folder: Path) -> tuple[Path, list[np.ndarray], Layout]:
    """What `prepare` wrote into `folder`: (models folder, GRID frames, demo layout)."""
    frames = [decode_image(p.read_bytes()) for p in sorted((folder / "frames").glob("*.jpg"))]
    return folder / "models", frames, Layout(folder / "data", folder / "models")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu", description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="toy sizes on the CPU (automatic without CUDA)")
    parser.add_argument("--prepare", type=Path, metavar="DIR",
                        help="write the models, the GRID frames and the preprocessed demo into DIR, then stop")
    parser.add_argument("--prepared", type=Path, metavar="DIR", help="measure with what --prepare wrote in DIR")
    args = parser.parse_args()
    params = load_params()
    params["align"] = params["align"] | {"crop_size": 112, "jobs": 1 if SMOKE else 0}
    if args.prepare:
        prepare(args.prepare, params | {"align": params["align"] | {"jobs": 0}}, small=args.smoke)
        print(f"{args.prepare}: models, GRID frames and the demo preprocessed at 112 px for --prepared")
        return
    device = torch.cuda.get_device_name() if GPU else "no GPU: smoke run on the CPU, not GPU figures"
    print(f"{device}; torch {torch.__version__}; TSAV width {WIDTH}, batch {BATCH}, {STEPS} timed steps\n")
    with tempfile.TemporaryDirectory() as tmp:
        if args.prepared:
            models, frames, layout = prepared(args.prepared)
        else:
            models, frames, layout = Path(tmp) / "models", grid_frames(), None
            materialise(["scrfd_2.5g", "pfld106"], models, mirror=ROOT / params["models"]["mirror"], download=False)
        table("| ONNX Runtime provider | frames | detector frames/s | landmarks faces/s |",
              face_models(models, frames))
        table("| training step | width | batch | supervised clips/s | mean_teacher clips/s |", training(params))
        layout = layout or demo_layout(Path(tmp), models, params, small=SMOKE)
        table("| loader workers | batch | mean_teacher clips/s with the loader | time waiting for data |",
              loader(params, layout))
        table("| JPEG decoding of 112 px crops | crops/s |", jpeg(layout))


if __name__ == "__main__":
    main()
