"""The per-task losses: cross-entropy (expression), binary cross-entropy (AU), 1 - CCC (valence/arousal), the
last optionally with a mean squared error beside it (`va_mse`); and the Mean Teacher's consistency losses.

Every (sample, task) pair of a training batch is exactly one of:
- labelled: its label is shown (expr >= 0, au >= 0, va finite) and it gets the supervised loss;
- unlabelled: the batch's "unlabelled" flag (B, 3) in TASKS order is set (the partition's `unlabelled`
  side) and, with the Mean Teacher, it gets the consistency loss towards the teacher (with
  `consistency_losses(on="training")` the labelled pairs get it too; a task left out of its `tasks` gets
  none);
- neither (held out for validation, or simply not in the task's data): it gets no loss at all.
A missing label alone never makes a pair unlabelled data: the flags come from the partition.

A batch without any pair for a loss gives an exact zero that still touches the outputs, so every head stays
in the autograd graph (DistributedDataParallel needs that) and nothing is ever NaN.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F

from affect.metrics import AU_THRESHOLD, ccc
from affect.schema import TASKS, is_labelled


def _zero(outputs: torch.Tensor) -> torch.Tensor:
    return outputs.sum() * 0.0


def expr_loss(logits: torch.Tensor, target: torch.Tensor, labelled: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over the labelled rows; `target` holds class indices (B,) or class probabilities (B, C)."""
    if not labelled.any():
        return _zero(logits)
    return F.cross_entropy(logits[labelled].float(), target[labelled])


def au_loss(logits: torch.Tensor, target: torch.Tensor, labelled: torch.Tensor,
            pos_weight: torch.Tensor | None = None) -> torch.Tensor:
    """Binary cross-entropy with logits over the labelled rows, every AU of a row; `target` in [0, 1];
    `pos_weight` (12,): the weight of each AU's positive term (None: 1, plain BCE). `labelled` may also be
    (B, 12), single AUs (without `pos_weight`): the mean is then over the AUs it selects."""
    if not labelled.any():
        return _zero(logits)
    if pos_weight is not None:
        pos_weight = pos_weight.to(logits.device)
    return F.binary_cross_entropy_with_logits(logits[labelled].float(), target[labelled].float(),
                                              pos_weight=pos_weight)


def au_pos_weight(au: np.ndarray, power: float) -> tuple[float, ...]:
    """12 positive weights (negatives / positives) ** `power` (float32 values) from AU labels `au` (N, 12) in
    {-1 unlabelled, 0, 1}, counted over labelled rows; an AU without positives or negatives gets 1.
    `power` 0 gives () (plain BCE, the paper), 1 balances each AU's positives and negatives, 0.5 is between:
    a rare AU then crosses the metric's 0.5 threshold sooner, which its F1 needs. The result is what
    `affect.train.TrainConfig.au_pos_weight` takes."""
    if power == 0:
        return ()
    au = np.asarray(au)
    rows = au[(au >= 0).all(1)]
    positives, negatives = (rows == 1).sum(0), (rows == 0).sum(0)
    ratio = np.where((positives > 0) & (negatives > 0), negatives / np.maximum(positives, 1), 1.0)
    return tuple((ratio ** power).astype(np.float32).tolist())


def va_loss(prediction: torch.Tensor, target: torch.Tensor, labelled: torch.Tensor,
            mse: float = 0.0) -> torch.Tensor:
    """1 - CCC, averaged over valence and arousal, over the labelled rows, plus `mse` times their mean squared
    error (values in [-1, 1]; `mse` 0: CCC alone, the paper).

    CCC is a statistic of the whole batch: over the few VA rows of one batch (about 5 of 16 in a Mean Teacher
    batch) it is noisy, and it leaves a row's own error unpunished where the batch's spread looks right. The
    squared error gives every row its own pull towards its label."""
    if not labelled.any():
        return _zero(prediction)
    prediction, target = prediction[labelled].float(), target[labelled].float()
    loss = 1 - (ccc(prediction[:, 0], target[:, 0]) + ccc(prediction[:, 1], target[:, 1])) / 2
    return loss + mse * F.mse_loss(prediction, target) if mse else loss


LOSSES = {"expr": expr_loss, "au": au_loss, "va": va_loss}


def task_losses(au_weight: torch.Tensor | None, va_mse: float = 0.0) -> dict:
    """LOSSES with the AU loss's positive weights `au_weight` (None: plain BCE) and the VA loss's squared-error
    weight `va_mse` bound."""
    return LOSSES | {"au": functools.partial(au_loss, pos_weight=au_weight),
                     "va": functools.partial(va_loss, mse=va_mse)}


def supervised_losses(outputs: dict[str, torch.Tensor], batch: dict[str, torch.Tensor],
                      au_weight: torch.Tensor | None = None, va_mse: float = 0.0) -> dict[str, torch.Tensor]:
    """Each task's loss against the batch's labels, for every task the model outputs; `au_weight`: the AU
    loss's positive weights (`au_pos_weight`); `va_mse`: the weight of the VA loss's squared error."""
    losses = task_losses(au_weight, va_mse)
    return {task: losses[task](outputs[task], batch[task], is_labelled(task, batch[task])) for task in outputs}


def teacher_targets(task: str, teacher: torch.Tensor, kind: str) -> torch.Tensor:
    """The student's target from the teacher's output: hard (argmax, AU probability >= AU_THRESHOLD, the
    metric's own threshold, VA values) or soft (softmax, sigmoid, VA values)."""
    if kind not in ("hard", "soft"):
        raise ValueError(f"consistency targets {kind!r}: expected hard or soft")
    teacher = teacher.float()
    if task == "expr":
        return teacher.argmax(dim=1) if kind == "hard" else teacher.softmax(dim=1)
    if task == "au":
        probability = teacher.sigmoid()
        return (probability >= AU_THRESHOLD).float() if kind == "hard" else probability
    return teacher


def unlabelled_mask(batch: dict[str, torch.Tensor], task: str) -> torch.Tensor:
    """(B,) bool: the samples of `batch` that are unlabelled training data for `task` (its "unlabelled" flags)."""
    if "unlabelled" not in batch:
        raise ValueError("the batch has no 'unlabelled' flags: the consistency loss needs the partition's "
                         "unlabelled pairs (affect.data.ClipDataset.from_partition provides them)")
    return batch["unlabelled"][:, TASKS.index(task)].bool()


def confident(task: str, teacher: torch.Tensor, threshold: float) -> torch.Tensor:
    """Where the teacher is sure enough to be learnt from: (B,) for the expression, its top softmax probability
    >= `threshold`; (B, 12) for the AUs, each AU's max(p, 1 - p) >= `threshold`; (B,) all True for VA, which
    has no confidence. `threshold` 0 keeps everything."""
    teacher = teacher.float()
    if task == "expr":
        return teacher.softmax(dim=1).amax(dim=1) >= threshold
    if task == "au":
        probability = teacher.sigmoid()
        return torch.maximum(probability, 1 - probability) >= threshold
    return torch.ones(len(teacher), dtype=torch.bool, device=teacher.device)


def squared_error(task: str, student: torch.Tensor, target: torch.Tensor, learnt: torch.Tensor) -> torch.Tensor:
    """Mean squared error between the student's probabilities (softmax for the expression, sigmoid for the
    AUs) or VA values and the teacher's targets `target` (`teacher_targets`: a hard expression target becomes
    one-hot), over the `learnt` rows ((B,), or (B, 12) single AUs): Tarvainen and Valpola's consistency.
    Bounded in [0, 1] per element (VA: [0, 4]), it pulls towards a wrong target no harder than towards a right
    one, where cross-entropy to a hard label pulls without end."""
    if not learnt.any():
        return _zero(student)
    student = student.float()
    if task == "expr":
        student = student.softmax(dim=1)
        if target.dim() == 1:
            target = F.one_hot(target, student.shape[1])
    elif task == "au":
        student = student.sigmoid()
    return F.mse_loss(student[learnt], target[learnt].float())


CONSISTENCY_LOSSES = ("task", "mse")
CONSISTENCY_ON = ("unlabelled", "training")


def consistency_losses(student: dict[str, torch.Tensor], teacher: dict[str, torch.Tensor],
                       batch: dict[str, torch.Tensor], kind: str = "hard",
                       confidence: float = 0.0, loss: str = "task",
                       on: str = "unlabelled", tasks: tuple[str, ...] = TASKS) -> dict[str, torch.Tensor]:
    """Per task of `tasks`, a loss towards the teacher's targets on the samples `on` selects, of those where the
    teacher is `confident` (`confidence` 0: all of them, the paper); AU targets are kept or dropped one AU at a
    time. A task left out of `tasks` gets no consistency loss and no entry (all three: the paper).
    `on`: "unlabelled", the samples flagged unlabelled for the task (the paper), or "training", those and the
    samples labelled for it (Tarvainen and Valpola apply it to every training sample); a pair held out for
    validation is neither, so it never gets the loss. `loss`: "task", the task's plain loss (cross-entropy,
    BCE, 1 - CCC; the paper), or "mse", the `squared_error` of probabilities and values (the original Mean
    Teacher's).

    The AU term is plain BCE, never the supervised loss's positive weights: with weight w > 1 the student's
    best answer to a teacher probability p is w p / (w p + 1 - p) > p, and as the teacher follows the student
    every AU drifts to "present" on the unlabelled data (the only stable point is p = 1). Unweighted, the
    student's best answer is the teacher's own p."""
    if loss not in CONSISTENCY_LOSSES:
        raise ValueError(f"consistency loss {loss!r}: expected one of {CONSISTENCY_LOSSES}")
    if on not in CONSISTENCY_ON:
        raise ValueError(f"consistency on {on!r}: expected one of {CONSISTENCY_ON}")
    if not tasks or not set(tasks) <= set(TASKS):
        raise ValueError(f"consistency tasks {tasks!r}: expected one or more of {TASKS}")
    losses = {}
    for task in student:
        if task not in tasks:
            continue
        learnt = unlabelled_mask(batch, task)
        if on == "training":
            learnt = learnt | is_labelled(task, batch[task])
        if confidence:
            keep = confident(task, teacher[task], confidence)
            learnt = learnt[:, None] & keep if keep.dim() == 2 else learnt & keep
        target = teacher_targets(task, teacher[task], kind)
        losses[task] = (squared_error(task, student[task], target, learnt) if loss == "mse"
                        else LOSSES[task](student[task], target, learnt))
    return losses
