"""The Mean Teacher's parts: the EMA teacher, its input noise, the consistency weight (docs/method.md, "Mean Teacher").

BatchNorm: the teacher's batch-norm buffers are the EMA of the student's buffers, like its weights, and the
teacher runs in eval mode. So by default the teacher is a pure function of its averaged state: its targets for
a sample do not depend on the rest of the batch, and the model that makes the training targets is exactly the
model that is evaluated. The reference implementation instead keeps the teacher in train mode, so its targets
are normalised by the statistics of the batch they are made for, as the student's outputs are:
`batch_statistics` gives that for one forward pass, without touching the running statistics that evaluation
uses (`train.teacher_bn: batch`).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn

from affect.data import CLIP_MEAN, CLIP_STD


def make_teacher(student: nn.Module) -> nn.Module:
    """A copy of the student in eval mode that gets no gradients."""
    teacher = copy.deepcopy(student).eval()
    teacher.requires_grad_(False)
    return teacher


@contextmanager
def batch_statistics(model: nn.Module) -> Iterator[nn.Module]:
    """`model` with every batch-norm layer normalising by the statistics of the batch it is given, inside the
    block; the layers' running statistics are neither used nor updated, and their modes come back after."""
    layers = [module for module in model.modules() if isinstance(module, nn.modules.batchnorm._BatchNorm)]
    before = [(layer.training, layer.track_running_stats) for layer in layers]
    for layer in layers:
        layer.training, layer.track_running_stats = True, False
    try:
        yield model
    finally:
        for layer, (training, track) in zip(layers, before):
            layer.training, layer.track_running_stats = training, track


def ema_eta(step: int, eta: float) -> float:
    """The EMA factor after `step` optimiser steps (1-based, global): min(1 - 1/(step + 1), eta)."""
    return min(1 - 1 / (step + 1), eta)


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, step: int, eta: float) -> None:
    """theta' <- eta_eff theta' + (1 - eta_eff) theta for every parameter and floating-point buffer;
    integer buffers (BatchNorm's batch counter) are copied from the student."""
    factor = ema_eta(step, eta)
    for mine, theirs in zip(teacher.parameters(), student.parameters(), strict=True):
        mine.lerp_(theirs, 1 - factor)
    for mine, theirs in zip(teacher.buffers(), student.buffers(), strict=True):
        if mine.is_floating_point():
            mine.lerp_(theirs, 1 - factor)
        else:
            mine.copy_(theirs)


def consistency_weight(step: int, weight: float, rampup: int) -> float:
    """w(t): `weight` times exp(-5 (1 - t/T)^2) during the first `rampup` steps, `weight` after (T = 0: no ramp)."""
    if rampup <= 0 or step >= rampup:
        return weight
    return weight * math.exp(-5 * (1 - step / rampup) ** 2)


def brighten(clip: torch.Tensor, amount: float, mean: Sequence[float], std: Sequence[float],
             generator: torch.Generator) -> torch.Tensor:
    """Random brightness per clip on the RGB channels of a normalised clip batch (B, 4, L, H, W).

    Each clip's RGB is un-normalised with `mean`/`std`, multiplied by a factor uniform in [1 - amount,
    1 + amount], clipped to [0, 1] (torchvision's adjust_brightness) and normalised again. The mask channel
    (index 3) is left as it is.
    """
    factor = 1 + amount * (2 * torch.rand(clip.shape[0], generator=generator) - 1)
    factor = factor.to(clip.device, clip.dtype).view(-1, 1, 1, 1, 1)
    mean = torch.tensor(mean, device=clip.device, dtype=clip.dtype).view(1, 3, 1, 1, 1)
    std = torch.tensor(std, device=clip.device, dtype=clip.dtype).view(1, 3, 1, 1, 1)
    rgb = ((clip[:, :3] * std + mean) * factor).clamp(0, 1)
    return torch.cat([(rgb - mean) / std, clip[:, 3:]], dim=1)


def flip_shift(clip: torch.Tensor, flip: float, shift: int, generator: torch.Generator) -> torch.Tensor:
    """Per clip of a batch (B, C, L, H, W): a horizontal mirror with probability `flip` and a translation by
    up to `shift` pixels in x and y (the same for every frame of the clip; the uncovered border takes the
    clip's corner value, black after normalisation). RGB and mask move together."""
    n, size = clip.shape[0], clip.shape[-1]
    mirror = torch.rand(n, generator=generator) < flip
    moves = torch.randint(-shift, shift + 1, (n, 2), generator=generator) if shift > 0 else torch.zeros(n, 2, dtype=torch.long)
    out = torch.where(mirror.to(clip.device).view(-1, 1, 1, 1, 1), clip.flip(-1), clip)
    if shift > 0:
        padded = torch.nn.functional.pad(out.flatten(1, 2), (shift,) * 4, mode="replicate").view(
            *out.shape[:3], size + 2 * shift, size + 2 * shift)
        out = torch.stack([padded[i, :, :, shift + int(dy):shift + int(dy) + size, shift + int(dx):shift + int(dx) + size]
                           for i, (dx, dy) in enumerate(moves.tolist())])
    return out


def silence(mel: torch.Tensor, probability: float, value: float, generator: torch.Generator) -> torch.Tensor:
    """Per sample of a batch of mel windows (B, 1, n_mels, W): replaced by `value` everywhere (the normalised
    level of a video without audio) with probability `probability`, else unchanged. A 2 s mel window is
    nearly unique to its place in its video, so a network can memorise a training video's labels from the
    sound alone; silencing it for part of the batch makes the face carry the expression."""
    silent = (torch.rand(mel.shape[0], generator=generator) < probability).to(mel.device).view(-1, 1, 1, 1)
    return torch.where(silent, torch.full_like(mel, value), mel)


def clip_augment(flip: float, shift: int, brightness: float, mel_dropout: float = 0.0, silent_mel: float = 0.0
                 ) -> Callable[[dict, torch.Generator], dict]:
    """The student's view of a batch of clips (a `student_input` for `affect.train.fit`): `flip_shift`,
    random brightness and, with probability `mel_dropout` per sample, a silent mel (`silence`, at the
    normalised level `silent_mel`). Expression, AU and VA labels do not change under a mirror or a small
    shift; a silent sample keeps its labels, as a video without audio does."""
    def student_input(batch: dict, generator: torch.Generator) -> dict:
        clip = flip_shift(batch["clip"], flip, shift, generator)
        if brightness > 0:
            clip = brighten(clip, brightness, CLIP_MEAN[:3], CLIP_STD[:3], generator)
        if mel_dropout > 0:
            return batch | {"clip": clip, "mel": silence(batch["mel"], mel_dropout, silent_mel, generator)}
        return batch | {"clip": clip}
    return student_input


def clip_brightness(amount: float) -> Callable[[dict, torch.Generator], dict]:
    """The teacher's view of a batch of clips (a `teacher_input` for `affect.train.fit`): random brightness."""
    def teacher_input(batch: dict, generator: torch.Generator) -> dict:
        return batch | {"clip": brighten(batch["clip"], amount, CLIP_MEAN[:3], CLIP_STD[:3], generator)}
    return teacher_input
