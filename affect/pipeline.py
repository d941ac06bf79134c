"""The pipeline's wiring: the per-part steps in order, what a model records of its inputs, the loader options
from params, and the one inference loop.

Where every output lives is `affect.schema.Layout`. Each per-part step is a function (part, params, layout)
of its own module, which reads its params group, runs its units of work (`affect.parallel.run_units`) and
writes its outputs and QA gallery atomically (STEPS, in order):

| stage       | step                              | params                   | writes (Layout)                       |
|-------------|-----------------------------------|--------------------------|---------------------------------------|
| split@p     | `affect.split.split_part`         | audio.sample_rate, split | split(p): frames.arrow, audio/        |
| align@p     | `affect.align.align_part`         | align, dataset.root      | faces(p), gallery("faces", p)         |
| landmarks@p | `affect.landmarks.landmarks_part` | landmarks                | landmarks(p), gallery("landmarks", p) |
| masks@p     | `affect.mask.masks_part`          | mask, align.crop_size    | masks(p), gallery("masks", p)         |
| mel@p       | `affect.mel.mel_part`             | audio, mel               | mel(p)                                |

Where the units run is the `executor` group (affect.parallel: a local process pool, or a Ray cluster) and, for
the face models, `executor.providers` (affect.models.ort_session); neither changes a step's outputs on the CPU.

A stage script calls its own step only, and imports only that step's module (and affect.schema for the
layout), so that DVC reruns a per-part stage when its own code changes and not when another step's does.
`preprocess` runs the five in order, outside DVC: for `affect predict`, the tests and the benchmarks. (The
train and evaluate stages import this module for `infer` and the record, so they depend on the code of every
step; they read every step's outputs anyway.)

Self-describing models: a model file records PREPROCESSING, the params that decide what the model is shown
(detector, landmark model, mask style, crop size, clip length / dilation / anchor, audio parameters and
normalisation), with its training params and a fingerprint of its training data (`model_record`).
`affect predict` preprocesses with the record (`recorded_params`); `disagreements` names the keys where a
params.yaml differs.

Inference: `infer` is the one loop that turns a model and clips into predictions, for the validation during
training, the evaluate stage and `affect predict`. Precision: bf16 autocast on CUDA and fp32 elsewhere, the
rule the training step uses too (`autocast`). A ClipDataset is batched track by track (a batch never holds two
tracks), so a frame's prediction does not depend on which other tracks are predicted with it: the evaluate
stage and `affect predict` give the same bytes for a video.
"""

from __future__ import annotations

import ast
import ctypes
import hashlib
import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from affect.align import align_part
from affect.index import index_videos, write_index
from affect.landmarks import landmarks_part
from affect.mask import masks_part
from affect.mel import mel_part
from affect.metrics import AU_THRESHOLD
from affect.schema import TASKS, Layout
from affect.shards import sha256_of, shard_paths
from affect.split import split_part

STEPS = (split_part, align_part, landmarks_part, masks_part, mel_part)  # the per-part stages, in order

# The params that decide what a model is shown: recorded in every model file, used by `affect predict`.
PREPROCESSING = (
    "align.detector", "align.det_size", "align.det_threshold", "align.reacquire_s", "align.template",
    "align.crop_size", "align.jpeg_quality", "landmarks.model", "mask.style",
    "audio.sample_rate", "audio.n_fft", "audio.win_length", "audio.hop_length", "audio.n_mels", "audio.top_db",
    "audio.mean", "audio.std", "audio.window_s", "clip.length", "clip.dilation", "clip.anchor",
)


def preprocess(part: int, params: dict, layout: Layout) -> None:
    """Every per-part step for one part of `layout`, in order: split, align, landmarks, masks, mel."""
    for step in STEPS:
        step(part, params, layout)


def preprocess_video(video: Path, tracks: list[tuple[str, str]], params: dict, layout: Layout) -> None:
    """`video` with its `tracks` [(track, person)] as the one-video dataset of part 0 of `layout`
    (`preprocess_videos`)."""
    preprocess_videos([video], {video.stem: tracks}, params, layout)


def preprocess_videos(videos: list[Path], tracks: dict[str, list[tuple[str, str]]], params: dict,
                      layout: Layout) -> None:
    """`videos` (distinct names) with their `tracks` (video name -> [(track, person)]) as the dataset of part 0
    of `layout`: indexed by the index stage's own code (no annotations), then preprocessed."""
    index = index_videos({video.stem: video.resolve() for video in videos}, tracks, {task: {} for task in TASKS},
                         n_parts=1, jobs=1)
    write_index(index, layout.index)
    preprocess(0, params, layout)


def loader_options(params: dict) -> dict:
    """ClipDataset's keyword arguments from the pipeline's parameter groups (params.yaml): clip length,
    dilation and anchor (`clip`), the mel window and its normalisation (`audio`), the crop side (`align`)."""
    clip, audio = params["clip"], params["audio"]
    return dict(clip_length=clip["length"], dilation=clip["dilation"], anchor=clip["anchor"],
                window_s=audio["window_s"], audio_mean=audio["mean"], audio_std=audio["std"],
                top_db=audio["top_db"], crop_size=params["align"]["crop_size"])


def flatten(groups: dict, prefix: str = "") -> dict:
    """{"a": {"b": 1}} -> {"a.b": 1}."""
    flat = {}
    for key, value in groups.items():
        if isinstance(value, dict):
            flat |= flatten(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def nest(flat: dict) -> dict:
    """{"a.b": 1} -> {"a": {"b": 1}}."""
    groups: dict = {}
    for key, value in flat.items():
        *path, last = key.split(".")
        node = groups
        for name in path:
            node = node.setdefault(name, {})
        node[last] = value
    return groups


TRAINING_CODE = ("train", "tsav", "pipeline", "data", "losses", "mean_teacher", "schema")
"""The `affect` modules the train stage calls (stages/train.py imports these): with the `affect` modules they
import, the code a model file depends on."""


def imported_files(sources: Iterable[str | os.PathLike],
                   package: str | os.PathLike = Path(__file__).parent) -> list[Path]:
    """The files of the `affect` package (its folder: `package`) that the Python files `sources` import,
    directly or through one another, read from the sources (`ast`; an import inside a function counts too),
    with the sources that are in the package. Returns paths under `package`, sorted."""
    package = Path(package)
    todo, seen = [Path(source) for source in sources], set()
    while todo:
        path = todo.pop()
        if path in seen or not path.is_file():
            continue
        if path.parent == package:
            seen.add(path)
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            todo += [package / f"{name.split('.')[1]}.py" for name in names if name.startswith("affect.")]
    return sorted(seen)


def code_fingerprint(package: str | os.PathLike = Path(__file__).parent,
                     modules: Iterable[str] = TRAINING_CODE) -> str:
    """sha256 of the names and contents of the files of `modules` (names in the `affect` package, its folder:
    `package`) and of the `affect` files they import (`imported_files`): the code a model file depends on and
    no other, the same files as the train stage's code dependencies in dvc.yaml."""
    package, digest = Path(package), hashlib.sha256()
    for path in imported_files([package / f"{module}.py" for module in modules], package):
        digest.update(f"{path.relative_to(package).as_posix()}\t{sha256_of(path)}\n".encode())
    return digest.hexdigest()


def model_record(params: dict, data: str) -> dict:
    """What a model file records of how it was made: the PREPROCESSING params, the `model` and `train`
    groups, `data`, the fingerprint of its training data (`data_fingerprint`), and `code`, that of the code
    (`code_fingerprint`). The train stage resumes a checkpoint only for the same record: a run is never
    continued, or taken as finished, under other code."""
    flat = flatten(params)
    missing = [key for key in PREPROCESSING if key not in flat]
    if missing:
        raise KeyError(f"params lack {', '.join(missing)}")
    return {"preprocessing": {key: flat[key] for key in PREPROCESSING}, "model": dict(params["model"]),
            "train": dict(params["train"]), "data": data, "code": code_fingerprint()}


def recorded_params(record: dict) -> dict:
    """The params that make a model's inputs again: the record's preprocessing, run in this process and failing
    on the first error (the keys that do not change a step's outputs are set here)."""
    params = nest(record["preprocessing"])
    params["align"] |= {"shard_rows": 4096, "on_error": "fail", "jobs": 1}
    for group in ("split", "landmarks", "mask", "mel"):
        params.setdefault(group, {})["jobs"] = 1
    params["split"]["on_error"] = "fail"
    params["dataset"] = {"root": "."}
    return params


def record_fingerprint(record: dict) -> str:
    """sha256 of a model record: the same for the same params and data."""
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()


def disagreements(record: dict, params: dict) -> list[str]:
    """One "key: model <value>, params <value>" line per PREPROCESSING key where `params` differ from the
    model's record (a key missing from `params` counts)."""
    flat = flatten(params)
    return [f"{key}: model {value!r}, params {flat.get(key, '(missing)')!r}"
            for key, value in record["preprocessing"].items() if flat.get(key, "(missing)") != value]


def data_fingerprint(layout: Layout) -> str:
    """sha256 of the names (relative to the layout's root) and contents of every file the training loader
    reads: tracks, labels, partition, and each part's frame times, faces, masks and spectrograms. The same
    data gives the same fingerprint on any machine."""
    parts = sorted(set(pq.read_table(layout.tracks, columns=["part"]).column("part").to_pylist()))
    files = [layout.tracks, layout.labels, layout.partition]
    for part in parts:
        files += [layout.frames(part), *shard_paths(layout.faces(part)), *shard_paths(layout.masks(part)),
                  layout.mel(part)]
    digest = hashlib.sha256()
    for file in files:
        digest.update(f"{Path(file).relative_to(layout.root).as_posix()}\t{sha256_of(file)}\n".encode())
    return digest.hexdigest()


def inference_device() -> torch.device:
    """Where evaluation and prediction run: the first GPU when there is one, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def autocast(device: torch.device):
    """The precision rule of training and inference: bf16 autocast on CUDA, fp32 everywhere else."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


def track_batches(sample_track: np.ndarray, batch_size: int) -> list[list[int]]:
    """Consecutive samples in batches of up to `batch_size` that never span two tracks: each track's run of
    samples is cut from its own start."""
    batches, start = [], 0
    for end in [*np.flatnonzero(np.diff(sample_track)) + 1, len(sample_track)]:
        batches += [list(range(i, min(i + batch_size, end))) for i in range(start, end, batch_size)]
        start = end
    return batches


def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's `malloc_trim`, or None where the C library has none (macOS, musl)."""
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


MALLOC_TRIM = _malloc_trim()
TRIM_EVERY = 10  # batches between `return_freed_memory` calls in `infer`: each costs the next batch page faults;
                 # every 10, a demo-size inference takes the same time as with none (46.9 s vs 49.4 s, 5,156 clips)


def return_freed_memory() -> None:
    """Hand the heap's free pages back to the system (glibc `malloc_trim`; nothing elsewhere).

    A forward pass allocates and frees a few hundred MB of temporaries. glibc keeps freed heap memory for
    reuse, and the small arrays that outlive a batch (the predictions) pin it in place, so without this the
    resident memory of a long inference grows with its length although nothing big is kept: about 40 kB per
    frame at the demo size, 1.8 GB over a 30-minute video (BENCHMARKS.md, "affect predict").
    """
    if MALLOC_TRIM is not None:
        MALLOC_TRIM(0)


@torch.no_grad()
def infer(model: nn.Module, data: Dataset | Iterable[dict], batch_size: int = 32,
          inputs: tuple[str, ...] = ("clip", "mel"), device: torch.device | str | None = None, workers: int = 0,
          desc: str = "infer", progress: bool = True) -> dict[str, np.ndarray]:
    """The model's predictions for every sample of `data`, in order: a ClipDataset (batched track by track, see
    the module docstring) or an iterable of batches (dicts holding `inputs`).

    Returns, for the tasks the model outputs: "expr_prob" (N, len(EXPRESSIONS)) softmax and "expr" (N,) its
    argmax, "au_prob" (N, 12) sigmoid and "au" (N, 12) int8 decisions (au_prob >= AU_THRESHOLD), "va" (N, 2);
    and what the batches carry of "track" (N,) str, "frame" (N,) int64 and the labels "true_expr" (N,),
    "true_au" (N, 12), "true_va" (N, 2). The model runs on `device` (default: where its parameters are) in
    eval mode, and is left in the mode it was in.
    """
    device = torch.device(device) if device is not None else next(model.parameters()).device
    if isinstance(data, Dataset) and hasattr(data, "sample_track"):
        data = DataLoader(data, batch_sampler=track_batches(data.sample_track, batch_size), num_workers=workers)
    elif isinstance(data, Dataset):
        data = DataLoader(data, batch_size=batch_size, num_workers=workers)
    training = model.training
    model.to(device).eval()
    parts: dict[str, list] = {}
    for k, batch in enumerate(tqdm(data, desc=desc, unit="batch", disable=not progress)):
        with autocast(device):
            out = model(*[batch[name].to(device) for name in inputs])
        out = {task: value.float().cpu() for task, value in out.items()}
        if "expr" in out:
            parts.setdefault("expr_prob", []).append(torch.softmax(out["expr"], dim=1).numpy())
        if "au" in out:
            parts.setdefault("au_prob", []).append(torch.sigmoid(out["au"]).numpy())
        if "va" in out:
            parts.setdefault("va", []).append(out["va"].numpy())
        if "track" in batch:
            parts.setdefault("track", []).append(np.asarray(list(batch["track"]), dtype=object))
        if "frame" in batch:
            parts.setdefault("frame", []).append(batch["frame"].numpy().astype(np.int64))
        for task in ("expr", "au", "va"):
            if task in batch and task in out:
                parts.setdefault(f"true_{task}", []).append(batch[task].numpy())
        if k % TRIM_EVERY == TRIM_EVERY - 1:
            return_freed_memory()
    model.train(training)
    result = {key: np.concatenate(chunks) for key, chunks in parts.items()}
    if "expr_prob" in result:
        result["expr"] = result["expr_prob"].argmax(axis=1)
    if "au_prob" in result:
        result["au"] = (result["au_prob"] >= AU_THRESHOLD).astype(np.int8)
    return result
