"""The Mean Teacher's parts: the EMA teacher, its input noise, the consistency weight (docs/method.md, "Mean Teacher").

BatchNorm: the teacher's batch-norm buffers are the EMA of the student's buffers, like its weights, and the
teacher always runs in eval mode. So the teacher is a pure function of its averaged state: its targets for a
sample do not depend on the rest of the batch, and the model that makes the training targets is exactly the
model that is evaluated. (The reference implementation instead keeps the teacher in train mode, so its
statistics come from its own forward passes.)
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

from affect.data import CLIP_MEAN, CLIP_STD


def make_teacher(student: nn.Module) -> nn.Module:
    """A copy of the student in eval mode that gets no gradients."""
    teacher = copy.deepcopy(student).eval()
    teacher.requires_grad_(False)
    return teacher


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


def clip_brightness(amount: float) -> Callable[[dict, torch.Generator], dict]:
    """The teacher's view of a batch of clips (a `teacher_input` for `affect.train.fit`): random brightness."""
    def teacher_input(batch: dict, generator: torch.Generator) -> dict:
        return batch | {"clip": brighten(batch["clip"], amount, CLIP_MEAN[:3], CLIP_STD[:3], generator)}
    return teacher_input
