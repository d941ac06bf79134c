"""Train a small TSAV with the Mean Teacher for a few steps and print the sha256 of what it computed.

`python -m tests.train_bits` (run by tests/test_reproducible.py, natively and under `qemu-x86_64 -cpu MODEL`,
which shows torch, oneDNN and MKL another processor's CPUID: another vendor, no AVX-512). It goes through
`affect.train.fit` with everything a real run has: the real losses of all three tasks (AU positive weights,
the VA squared error), the soft-target squared-error consistency, the student's flips, shifts, brightness
and silent mels, the teacher's brightness noise, the EMA teacher, the optimiser and the cosine schedule;
then `affect.pipeline.infer` on a held-out batch. Prints one JSON object {"student", "teacher", "inference":
sha256, "capability": ATen's}.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import torch

from affect.mean_teacher import clip_augment, clip_brightness
from affect.pipeline import infer
from affect.schema import AUS, TASKS
from affect.train import TrainConfig, fit
from affect.tsav import TSAV

BATCH, LENGTH, SIZE, MEL_COLUMNS, STEPS = 4, 4, 32, 50, 3


def _batch(generator: torch.Generator) -> dict[str, torch.Tensor]:
    """A batch of random clips and mels with every kind of label: some labelled, some flagged unlabelled."""
    unlabelled = torch.zeros(BATCH, len(TASKS), dtype=torch.bool)
    unlabelled[BATCH // 2:] = True
    expr = torch.randint(0, 7, (BATCH,), generator=generator)
    au = torch.randint(0, 2, (BATCH, len(AUS)), generator=generator).float()
    va = torch.rand(BATCH, 2, generator=generator) * 2 - 1
    expr[BATCH // 2:], au[BATCH // 2:], va[BATCH // 2:] = -1, -1.0, float("nan")
    return {"clip": torch.rand(BATCH, 4, LENGTH, SIZE, SIZE, generator=generator),
            "mel": torch.randn(BATCH, 1, 64, MEL_COLUMNS, generator=generator),
            "expr": expr, "au": au, "va": va, "unlabelled": unlabelled}


def _sha(tensors) -> str:
    return hashlib.sha256(b"".join(np.ascontiguousarray(t.detach().cpu().numpy()).tobytes()
                                   for t in tensors)).hexdigest()


def main() -> None:
    torch.manual_seed(0)
    student = TSAV(width=0.125)
    generator = torch.Generator().manual_seed(1)
    batches = [_batch(generator) for _ in range(STEPS)]
    config = TrainConfig(steps=STEPS, warmup=1, consistency_rampup=2, eval_every=STEPS, checkpoint_every=STEPS,
                         threads=1, au_pos_weight=(2.0,) * len(AUS), va_mse=1.0)
    student, teacher = fit(student, lambda start: iter(batches[start:]), config,
                           teacher_input=clip_brightness(0.2), student_input=clip_augment(0.5, 2, 0.1, 0.5, -4.0),
                           progress=False)
    held_out = _batch(generator)
    predictions = infer(teacher, [held_out], progress=False)
    print(json.dumps({"student": _sha(student.state_dict().values()), "teacher": _sha(teacher.state_dict().values()),
                      "inference": _sha(torch.from_numpy(predictions[key]) for key in ("expr_prob", "au_prob", "va")),
                      "capability": torch.backends.cpu.get_cpu_capability()}))


if __name__ == "__main__":
    main()
