"""The training engine: supervised or multi-task Mean Teacher training of any model returning task outputs.

`fit` trains `student` on a stream of batches (dicts of tensors holding the model's inputs, the task
labels "expr" (-1 = none), "au" (-1 = none), "va" (NaN = none) and, for the Mean Teacher, the (B, 3)
"unlabelled" flags in TASKS order that say which (sample, task) pairs are unlabelled data); the model is called as
`model(*[batch[name] for name in config.inputs])` and returns a dict of task outputs, and the losses are
those of `affect.losses` for every task it returns. The same engine trains TSAV in the `train` stage and a
small MLP in the tests.

One step: the student's supervised losses on the samples labelled for each task; with `mean_teacher`, the
teacher (EMA of the student, eval mode or batch statistics: `teacher_bn`, `affect.mean_teacher`) sees the same
batch through `teacher_input` (random brightness for clips) and, per task, the student learns the teacher's
targets on the samples flagged unlabelled for that task (never on a pair that merely lacks a label, such as one
held out for validation): L = L_s + w(t) L_c. Adam, then the EMA update with the global step. With `supervised`
the same loop runs without the teacher's forward pass and consistency loss; the EMA teacher is still kept
(it costs one parameter average per step) so both methods write the same outputs.

Determinism and resume: the batches are a function of the step (`batches(start_step)`), the random
numbers of a step (teacher noise, dropout) come from generators seeded by (seed, step, rank), and a
checkpoint holds the student, teacher, optimiser, step, the next batch of the sampler and the log so far.
A run killed at any point and started again resumes from its last checkpoint and ends with bit-identical
weights on the CPU.

Several processes (`torchrun`): when torch.distributed is initialised the student is wrapped in
DistributedDataParallel; each rank takes its slice of every global batch (the caller's sampler), gradients
are averaged, so the students stay identical; the teacher's parameters follow from identical students and
its batch-norm buffers are broadcast from rank 0 after each update, so the teachers stay identical too.
Rank 0 validates, logs and writes checkpoints.

Precision: `affect.pipeline.autocast`, bf16 autocast on CUDA and fp32 elsewhere, for the step and for
validation alike (the one rule of `affect.pipeline.infer`).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from affect.data import ClipDataset, MixedBatchSampler
from affect.exact import torch_threads
from affect.losses import CONSISTENCY_LOSSES, CONSISTENCY_ON, consistency_losses, supervised_losses
from affect.mean_teacher import batch_statistics, consistency_weight, ema_update, make_teacher
from affect.metrics import evaluate_predictions
from affect.pipeline import autocast, flatten, infer
from affect.schema import TASKS
from affect.shards import atomic_path

log = logging.getLogger(__name__)

METHODS = ("mean_teacher", "supervised")
BN_CHUNKS = ("consecutive", "interleaved")
TEACHER_BN = ("running", "batch")
FIELD_TYPES = {"int": (int, "an integer"), "float": ((int, float), "a number"), "str": (str, "a string")}  # bool: no
CHECKPOINT = "last.pt"

Batch = dict[str, torch.Tensor]


def check_types(config) -> None:
    """Raise a one-line ValueError naming the first int, float or str field of the dataclass instance `config`
    whose value has another type (a bool is no integer; an integer is a number): params.yaml's values arrive
    as YAML parsed them, and an unquoted 1e-3 is a string there."""
    for field in dataclasses.fields(config):  # field.type: the annotation's text (from __future__ annotations)
        types, kind = FIELD_TYPES.get(field.type, (object, None))
        value = getattr(config, field.name)
        if kind and (isinstance(value, bool) or not isinstance(value, types)):
            raise ValueError(f"train.{field.name} {value!r}: expected {kind}")


@dataclass(frozen=True)
class DataConfig:
    """How the `train` stage draws each step's batch from the data and what it gives each model to see: the
    rest of params.yaml's `train` group (TrainConfig holds what `fit` does); the defaults are params.yaml's."""

    batch_size: int = 16             # samples per step, all processes together
    labelled_fraction: float = 0.75  # mean_teacher: share of each batch labelled for at least one task
    brightness: float = 0.2          # teacher input noise: brightness factor uniform in [1-b, 1+b]
    flip: float = 0.5                # student: probability of a horizontal mirror of the clip
    shift: int = 4                   # student: random translation of the clip, up to this many pixels
    augment_brightness: float = 0.0  # student: brightness factor uniform in [1-b, 1+b]
    mel_dropout: float = 0.5         # student: probability of a silent mel per sample
    au_balance: float = 0.5          # AU loss: positives weighted by (negatives / positives) ** this
    workers: int = 0                 # DataLoader worker processes

    def __post_init__(self):
        check_types(self)
        if self.batch_size < 1:
            raise ValueError(f"train.batch_size {self.batch_size}: expected at least 1")
        for name in ("labelled_fraction", "brightness", "flip", "augment_brightness", "mel_dropout"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"train.{name} {getattr(self, name)}: expected a number in [0, 1]")
        for name in ("shift", "au_balance", "workers"):
            if getattr(self, name) < 0:
                raise ValueError(f"train.{name} {getattr(self, name)}: expected 0 or more")


@dataclass(frozen=True)
class TrainConfig:
    """What `fit` does: the keys of params.yaml's `train` group that DataConfig does not hold, with their defaults
    (tests/test_train.py checks), and the AU loss's weights, which the stage computes from the training labels."""

    method: str = "mean_teacher"     # mean_teacher | supervised
    seed: int = 0
    steps: int = 2000                # optimiser steps
    lr: float = 1e-3                 # Adam, peak (paper: 5e-4)
    lr_schedule: str = "cosine"      # constant (paper) | cosine (to 0 at the last step)
    warmup: int = 100                # steps of linear warm-up from 0 to lr
    ema: float = 0.99                # teacher EMA eta
    consistency_weight: float = 1.0  # w in L = L_s + w(t) L_c
    consistency_rampup: int = 500    # steps of the exp(-5(1-t/T)^2) ramp-up, 0 = none (paper)
    consistency_targets: str = "soft"  # soft | hard (paper)
    consistency_confidence: float = 0.0  # teacher targets less sure than this get no consistency loss (0: all)
    consistency_loss: str = "mse"    # mse (of probabilities and values) | task (the task's own loss, paper)
    consistency_on: str = "unlabelled"  # unlabelled: each task's unlabelled pairs (paper) | training: labelled too
    consistency_tasks: tuple[str, ...] = TASKS  # the tasks that get the consistency loss (paper: all three)
    eval_every: int = 250            # steps between validations and log entries
    checkpoint_every: int = 250      # steps between checkpoints
    threads: int = 2                 # torch CPU threads of the training loop (0 = all cores: bits vary by machine)
    au_pos_weight: tuple[float, ...] = ()  # the AU loss's positive weight per AU (affect.losses.au_pos_weight);
                                           # empty: plain BCE
    va_mse: float = 0.0              # weight of the squared error beside 1 - CCC in the supervised VA loss
    bn_batch: int = 0                # student batch norm's statistics over chunks of this many samples (0: batch)
    bn_chunks: str = "consecutive"   # consecutive: the batch cut in order (labelled first) | interleaved: every
                                     # k-th sample, so each chunk mixes labelled and unlabelled as the batch does
    teacher_bn: str = "running"      # the teacher's batch norm when it makes targets: running (its EMA statistics,
                                     # as evaluated) | batch (the batch's, in the student's chunks; reference code)
    inputs: tuple[str, ...] = ("clip", "mel")  # batch keys passed to the model, in order
    data: str = ""                   # fingerprint of the data and everything else the run depends on (the model
                                     # record's): a checkpoint resumes only for the same

    def __post_init__(self):
        check_types(self)
        if not isinstance(self.consistency_tasks, (list, tuple)):
            raise ValueError(f"train.consistency_tasks {self.consistency_tasks!r}: expected a list of {list(TASKS)}")
        object.__setattr__(self, "consistency_tasks", tuple(self.consistency_tasks))  # params.yaml gives a list
        if self.method not in METHODS:
            raise ValueError(f"train.method {self.method!r}: expected one of {METHODS}")
        if self.lr_schedule not in ("constant", "cosine"):
            raise ValueError(f"train.lr_schedule {self.lr_schedule!r}: expected constant or cosine")
        if self.consistency_targets not in ("hard", "soft"):
            raise ValueError(f"train.consistency_targets {self.consistency_targets!r}: expected hard or soft")
        if self.consistency_loss not in CONSISTENCY_LOSSES:
            raise ValueError(f"train.consistency_loss {self.consistency_loss!r}: expected one of {CONSISTENCY_LOSSES}")
        if self.consistency_on not in CONSISTENCY_ON:
            raise ValueError(f"train.consistency_on {self.consistency_on!r}: expected one of {CONSISTENCY_ON}")
        if not self.consistency_tasks or not set(self.consistency_tasks) <= set(TASKS) \
                or len(set(self.consistency_tasks)) < len(self.consistency_tasks):
            raise ValueError(f"train.consistency_tasks {list(self.consistency_tasks)}: expected one or more of "
                             f"{list(TASKS)}, each once")
        if self.bn_batch < 0:
            raise ValueError(f"train.bn_batch {self.bn_batch}: expected 0 (the whole batch) or a chunk size")
        if self.bn_chunks not in BN_CHUNKS:
            raise ValueError(f"train.bn_chunks {self.bn_chunks!r}: expected one of {BN_CHUNKS}")
        if self.teacher_bn not in TEACHER_BN:
            raise ValueError(f"train.teacher_bn {self.teacher_bn!r}: expected one of {TEACHER_BN}")
        if not 0.0 <= self.consistency_confidence < 1.0:
            raise ValueError(f"train.consistency_confidence {self.consistency_confidence}: expected a probability "
                             "in [0, 1)")


def learning_rate(step: int, config: TrainConfig) -> float:
    """The learning rate of 0-based `step`: linear warm-up over `warmup` steps, then constant or a cosine
    from `lr` down to 0 at the last step."""
    if step < config.warmup:
        return config.lr * (step + 1) / config.warmup
    if config.lr_schedule == "constant":
        return config.lr
    done = (step - config.warmup) / max(1, config.steps - config.warmup)
    return float(config.lr * 0.5 * (1 + np.cos(np.pi * min(done, 1.0))))


def seed_step(seed: int, step: int, rank: int) -> torch.Generator:
    """Seed torch's global generator (dropout, if any) for one step and return the teacher noise's generator,
    both a function of (seed, step, rank) only, so a resumed run draws the same numbers."""
    model_seed, noise_seed = np.random.SeedSequence([seed, step, rank]).generate_state(2)
    torch.manual_seed(int(model_seed))
    return torch.Generator().manual_seed(int(noise_seed))


def forward_in_chunks(model: nn.Module, inputs: list[torch.Tensor], chunk: int,
                      interleaved: bool = False) -> dict[str, torch.Tensor]:
    """`model(*inputs)` computed on chunks of `chunk` samples and put back in the batch's order: in training
    mode each chunk's batch norm normalises by its own statistics ("ghost batch norm"). Consecutive chunks
    cut the batch in order (the mixed batches hold their labelled samples first); `interleaved`: the batch
    goes into k = ceil(n / chunk) chunks, chunk i taking samples i, i + k, i + 2k, ..., so each chunk mixes
    the batch's kinds of sample in its proportions. `chunk` 0, or not less than the batch: one call."""
    n = len(inputs[0])
    if not chunk or n <= chunk:
        return model(*inputs)
    order, k = torch.arange(n, device=inputs[0].device), -(-n // chunk)
    rows = [order[i::k] for i in range(k)] if interleaved else order.split(chunk)
    outputs = [model(*[tensor[row] for tensor in inputs]) for row in rows]
    back = torch.argsort(torch.cat(rows))
    return {task: torch.cat([output[task] for output in outputs])[back] for task in outputs[0]}


def check_distributed(config: TrainConfig) -> None:
    """Refuse, with a one-line ValueError, the options that torchrun's DDP does not take, when
    torch.distributed is initialised: DDP takes one forward pass per backward, so no `bn_batch` chunks (each
    process's share of the batch is its batch norm's batch already)."""
    if dist.is_initialized() and config.bn_batch:
        raise ValueError(f"train.bn_batch {config.bn_batch} under torchrun: not supported (each process's "
                         "share of the batch is its batch norm's batch already); set it to 0")


def _to(batch: dict, device: torch.device) -> Batch:
    return {key: value.to(device, non_blocking=True) for key, value in batch.items() if torch.is_tensor(value)}


def _rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


@dataclass
class Progress:
    """Where a run stands: the next step, the loss sums since the last log entry, and the entries so far."""

    step: int = 0
    sums: dict[str, float] = field(default_factory=dict)
    count: int = 0
    history: list = field(default_factory=list)

    def add(self, terms: dict[str, torch.Tensor]) -> None:
        for name, value in terms.items():
            self.sums[name] = self.sums.get(name, 0.0) + float(value.detach())
        self.count += 1


def resume(path: Path | None, config: TrainConfig, record: dict | None, student: nn.Module, teacher: nn.Module,
           optimizer: torch.optim.Optimizer) -> Progress:
    """The progress of the checkpoint at `path`, its weights and optimiser state loaded, when it was made with
    the same config; else a fresh start (with a warning naming what differs)."""
    if path is None or not path.is_file():
        return Progress()
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state["config"] != dataclasses.asdict(config):
        before, now = flatten(state.get("record") or {}), flatten(record or {})
        keys = sorted(k for k in before.keys() | now.keys() if before.get(k) != now.get(k))
        keys = keys or sorted(k for k, v in dataclasses.asdict(config).items() if state["config"].get(k) != v)
        log.warning("%s was made with other parameters or data (%s); starting from step 0", path, ", ".join(keys))
        return Progress()
    student.load_state_dict(state["student"])
    teacher.load_state_dict(state["teacher"])
    optimizer.load_state_dict(state["optimizer"])
    if state["sampler"]["next_batch"] != state["step"]:
        raise ValueError(f"{path}: sampler at batch {state['sampler']['next_batch']}, step {state['step']}")
    log.info("resuming from %s at step %d", path, state["step"])
    return Progress(state["step"], state["sums"], state["count"], state["history"])


def save_checkpoint(path: Path, config: TrainConfig, record: dict | None, progress: Progress, student: nn.Module,
                    teacher: nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """Everything `resume` needs, atomically."""
    state = {"config": dataclasses.asdict(config), "record": record, "step": progress.step,
             "student": student.state_dict(), "teacher": teacher.state_dict(), "optimizer": optimizer.state_dict(),
             "sampler": {"next_batch": progress.step}, "sums": progress.sums, "count": progress.count,
             "history": progress.history}
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save(state, f)


def channels_last_3d(module: nn.Module) -> nn.Module:
    """`module` with its 5-D weights (the video stream's Conv3d) in channels-last 3D memory format, in place:
    the layout cuDNN's fastest 3D convolution kernels take (the values are unchanged)."""
    for parameter in module.parameters():
        if parameter.dim() == 5:
            parameter.data = parameter.data.contiguous(memory_format=torch.channels_last_3d)
    return module


def train_step(model: nn.Module, teacher: nn.Module, optimizer: torch.optim.Optimizer, batch: Batch, step: int,
               config: TrainConfig, teacher_input: Callable[[Batch, torch.Generator], Batch] | None,
               device: torch.device, rank: int,
               student_input: Callable[[Batch, torch.Generator], Batch] | None = None,
               channels_last: bool = False, au_weight: torch.Tensor | None = None
               ) -> tuple[dict[str, torch.Tensor], float]:
    """One optimiser step of `model` (the student, or its DDP wrapper) and the teacher's EMA update; returns
    the loss terms (and "loss") and the consistency weight used. The student sees `student_input` of the
    batch (augmentation), the teacher `teacher_input` of the original batch. `channels_last`: 5-D inputs go
    in as channels-last 3D (with `channels_last_3d` models). `au_weight`: the supervised AU loss's positive
    weights (`config.au_pos_weight` as a tensor; None: plain BCE); the consistency loss never weights."""
    batch = _to(batch, device)
    if channels_last:
        batch = {key: value.contiguous(memory_format=torch.channels_last_3d) if value.dim() == 5 else value
                 for key, value in batch.items()}
    generator = seed_step(config.seed, step, rank)
    weight = consistency_weight(step, config.consistency_weight, config.consistency_rampup)
    for group in optimizer.param_groups:
        group["lr"] = learning_rate(step, config)
    seen = student_input(batch, generator) if student_input else batch
    interleaved = config.bn_chunks == "interleaved"
    with autocast(device):
        outputs = forward_in_chunks(model, [seen[name] for name in config.inputs], config.bn_batch, interleaved)
        supervised = supervised_losses(outputs, batch, au_weight, config.va_mse)
        terms = {f"supervised/{task}": loss for task, loss in supervised.items()}
        loss = sum(terms.values())
        if config.method == "mean_teacher":
            noisy = teacher_input(batch, generator) if teacher_input else batch
            on_batch = config.teacher_bn == "batch"  # else running statistics, in one pass (chunk 0)
            with torch.no_grad(), (batch_statistics(teacher) if on_batch else nullcontext()):
                targets = forward_in_chunks(teacher, [noisy[name] for name in config.inputs],
                                            config.bn_batch if on_batch else 0, interleaved)
            consistency = consistency_losses(outputs, targets, batch, config.consistency_targets,
                                             config.consistency_confidence, config.consistency_loss,
                                             config.consistency_on, config.consistency_tasks)
            terms |= {f"consistency/{task}": value for task, value in consistency.items()}
            loss = loss + weight * sum(consistency.values())
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    student = model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
    ema_update(teacher, student, step + 1, config.ema)
    if dist.is_initialized():
        for buffer in teacher.buffers():
            dist.broadcast(buffer, 0)
    terms["loss"] = loss
    return terms, weight


def log_entry(progress: Progress, config: TrainConfig, weight: float, student: nn.Module, teacher: nn.Module,
              validate: Callable[[nn.Module], dict[str, float]] | None, rank: int) -> dict[str, float]:
    """The log entry at `progress.step`: mean loss terms since the last entry, the consistency weight and
    (rank 0) the validation criteria of student and teacher; the sums restart."""
    metrics = {f"train/{name}": total / progress.count for name, total in progress.sums.items()}
    if config.method == "mean_teacher":
        metrics["train/consistency_weight"] = weight
    if validate is not None and rank == 0:
        metrics |= {f"val/student/{key}": value for key, value in validate(student).items()}
        metrics |= {f"val/teacher/{key}": value for key, value in validate(teacher).items()}
    progress.sums, progress.count = {}, 0
    progress.history.append((progress.step, metrics))
    return metrics


def fit(student: nn.Module, batches: Callable[[int], Iterable[dict]], config: TrainConfig,
        teacher_input: Callable[[Batch, torch.Generator], Batch] | None = None,
        student_input: Callable[[Batch, torch.Generator], Batch] | None = None,
        validate: Callable[[nn.Module], dict[str, float]] | None = None,
        on_log: Callable[[int, dict[str, float]], None] | None = None,
        checkpoint_dir: str | os.PathLike | None = None,
        device: torch.device | str = "cpu", progress: bool = True, record: dict | None = None,
        channels_last: bool = False, compile: bool = False) -> tuple[nn.Module, nn.Module]:
    """Train `student` for `config.steps` steps; return (student, teacher).

    `batches(start)` yields the batches of steps start, start+1, ... (this rank's share under DDP).
    `teacher_input(batch, generator)` gives the teacher's noisy view of the batch (default: the same batch),
    `student_input(batch, generator)` the student's (augmentation; default: the same batch).
    `validate(model)` returns criteria, called every `eval_every` steps for the student and the teacher.
    `on_log(step, metrics)` receives the mean loss terms since the previous entry and the criteria
    (keys train/..., val/student/..., val/teacher/...); after a resume the entries logged before it are
    passed again first, so a log rebuilt from them is the same as that of an uninterrupted run.
    `record` (the model record, affect.pipeline.model_record) goes into the checkpoints, so that a refused
    resume can name the parameters that changed.
    Speed only (params.yaml `gpu`; the same weights up to rounding): `channels_last` keeps the 3D convolutions'
    weights and clips in channels-last 3D memory format, `compile` runs the student's step through
    `torch.compile` (a compile of a minute or so at the start).
    """
    check_distributed(config)
    device = torch.device(device)
    rank = _rank()
    student.to(device).train()
    if channels_last:
        channels_last_3d(student)
    # fused: one vectorised Adam kernel whose square root is the processor's exact instruction; the unfused
    # step's square root is MKL's, which rounds differently on AMD and Intel processors (affect.exact)
    optimizer = torch.optim.Adam(student.parameters(), lr=config.lr, fused=True)
    teacher = make_teacher(student)
    au_weight = torch.tensor(config.au_pos_weight, dtype=torch.float32) if config.au_pos_weight else None
    checkpoint_path = Path(checkpoint_dir) / CHECKPOINT if checkpoint_dir is not None else None
    run = resume(checkpoint_path, config, record, student, teacher, optimizer)
    for step, metrics in run.history:
        if on_log is not None and rank == 0:
            on_log(step, metrics)
    model = student
    if dist.is_initialized():
        device_ids = [device.index] if device.type == "cuda" else None
        model = nn.parallel.DistributedDataParallel(student, device_ids=device_ids)
    if compile:
        model = torch.compile(model)
    with torch_threads(config.threads):  # the same bits on any machine (affect.exact)
        bar = tqdm(total=config.steps, initial=run.step, desc=config.method, disable=not progress or rank != 0)
        for step, batch in zip(range(run.step, config.steps), batches(run.step)):
            terms, weight = train_step(model, teacher, optimizer, batch, step, config, teacher_input, device, rank,
                                       student_input, channels_last, au_weight)
            run.add(terms)
            run.step = step + 1
            bar.update()
            bar.set_postfix({name.removeprefix("supervised/"): f"{float(value.detach()):.3f}"
                             for name, value in terms.items() if not name.startswith("consistency/")})
            if run.step % config.eval_every == 0 or run.step == config.steps:
                student.eval()
                metrics = log_entry(run, config, weight, student, teacher, validate, rank)
                student.train()
                if on_log is not None and rank == 0:
                    on_log(run.step, metrics)
            if checkpoint_path is not None and (run.step % config.checkpoint_every == 0 or run.step == config.steps):
                if rank == 0:
                    save_checkpoint(checkpoint_path, config, record, run, student, teacher, optimizer)
                if dist.is_initialized():
                    dist.barrier()
        bar.close()
    if run.step != config.steps:
        raise ValueError(f"the batches ran out after step {run.step} of {config.steps}")
    return student, teacher


def validation(dataset, inputs: tuple[str, ...] = ("clip", "mel"), device: torch.device | str = "cpu",
               batch_size: int = 32, workers: int = 0) -> Callable[[nn.Module], dict[str, float]]:
    """A `validate` for `fit`: each task's ABAW2 criterion (affect.metrics) of `affect.pipeline.infer` over
    `dataset` (a ClipDataset, or an iterable of batches), and their mean."""
    def validate(model: nn.Module) -> dict[str, float]:
        outputs = infer(model, dataset, batch_size=batch_size, inputs=inputs, device=device, workers=workers,
                        progress=False)
        predictions = {task: outputs[f"{task}_prob" if task != "va" else task] for task in ("expr", "au", "va")
                       if f"true_{task}" in outputs}
        if not predictions:
            return {}
        results = evaluate_predictions({task: outputs[f"true_{task}"] for task in predictions}, predictions)
        criteria = {task: result["criterion"] for task, result in results.items()}
        return criteria | ({"mean": float(np.mean(list(criteria.values())))} if criteria else {})
    return validate


def clip_batches(dataset: ClipDataset, batch_size: int, labelled_fraction: float, seed: int, steps: int,
                 workers: int = 0, rank: int = 0, world_size: int = 1) -> Callable[[int], Iterable[dict]]:
    """`batches` for `fit` from a ClipDataset: MixedBatchSampler batches (this rank's share) from a start step."""
    def batches(start: int) -> Iterable[dict]:
        sampler = MixedBatchSampler(dataset.labelled_indices(), dataset.unlabelled_indices(), batch_size,
                                    labelled_fraction, seed, steps, start_batch=start, rank=rank,
                                    world_size=world_size)
        return torch.utils.data.DataLoader(dataset, batch_sampler=sampler, num_workers=workers,
                                           pin_memory=torch.cuda.is_available(), persistent_workers=False)
    return batches
