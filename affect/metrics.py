"""The ABAW2 evaluation criteria (docs/method.md, "Metrics"). CCC is written once, here.

Each criterion is computed over the frames labelled for its task only, and returns None when there is no
such frame (the task is absent from the evaluated set, which is not the same as scoring 0).
Unlabelled markers are those of the annotation files and of the loader alike: expression -1, AU -1, and
valence/arousal NaN or -5 (either value), so raw ABAW arrays can be scored as they are read.
Where a score is undefined, the rule of the ABAW2 organisers' evaluation code (scikit-learn defaults) holds:
- expression macro F1 (`f1`, the one the criterion uses) averages over the classes present in the labels or
  in the predictions (a class absent from both is left out; a class predicted but never true scores 0).
  That is the organisers' number, so the criterion stays comparable with published ABAW2 results (on the
  official validation set every class occurs and both averages agree). On a small validation side where
  classes are missing it is higher than the average over all 7 classes, which is reported beside it as
  `f1_all_classes` (an absent class scores 0);
- the F1 of an AU with no positive label and no positive prediction is 0;
- a CCC with a zero denominator (both sequences constant and equal) is 0, and constant predictions give 0.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, f1_score

from affect.schema import AUS, EXPRESSIONS, is_labelled

AU_THRESHOLD = 0.5  # an AU is present where its probability is >= this: metrics, prediction files, pseudo-labels


def ccc(x, y):
    """Concordance correlation coefficient with population variances, on numpy arrays or torch tensors.

    2 cov(x, y) / (var(x) + var(y) + (mean(x) - mean(y))^2). The same code serves the metric (numpy)
    and the training loss 1 - CCC (torch, differentiable). Returns 0 where the denominator is 0.
    """
    mx, my = x.mean(), y.mean()
    dx, dy = x - mx, y - my
    cov = (dx * dy).mean()
    denominator = (dx * dx).mean() + (dy * dy).mean() + (mx - my) ** 2
    positive = float(denominator.detach() if hasattr(denominator, "detach") else denominator) > 0
    return 2 * cov / denominator if positive else 0 * cov


def _numpy(a) -> np.ndarray:
    """A numpy copy of an array-like or a torch tensor (detached, on the CPU)."""
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    return np.asarray(a)


def expr_criterion(true, pred) -> dict | None:
    """0.67 macro F1 + 0.33 accuracy over frames with an expression label (true >= 0).

    `true`: (N,) class 0..6, -1 = unlabelled. `pred`: (N,) class, or (N, 7) logits/probabilities (argmax).
    Returns {"criterion", "f1", "f1_all_classes", "accuracy", "frames"} or None without a labelled frame;
    the criterion uses `f1` (the organisers' average over the classes present, module docstring).
    """
    true, pred = _numpy(true).astype(np.int64), _numpy(pred)
    if pred.ndim == 2:
        pred = pred.argmax(axis=1)
    pred = pred.astype(np.int64)
    if true.shape != pred.shape:
        raise ValueError(f"expression labels {true.shape} and predictions {pred.shape} differ in shape")
    keep = is_labelled("expr", true)
    if not keep.any():
        return None
    true, pred = true[keep], pred[keep]
    f1 = float(f1_score(true, pred, average="macro", zero_division=0))
    f1_all = float(f1_score(true, pred, labels=range(len(EXPRESSIONS)), average="macro", zero_division=0))
    accuracy = float(accuracy_score(true, pred))
    return {"criterion": 0.67 * f1 + 0.33 * accuracy, "f1": f1, "f1_all_classes": f1_all, "accuracy": accuracy,
            "frames": int(keep.sum())}


def au_criterion(true, prob, threshold: float = AU_THRESHOLD) -> dict | None:
    """0.5 mean positive-class F1 over the 12 AUs + 0.5 accuracy over all N x 12 decisions.

    `true`: (N, 12) 0/1, -1 = unlabelled (a frame counts when all 12 are 0/1). `prob`: (N, 12)
    probabilities (sigmoid of the logits) or 0/1 decisions; an AU is predicted present when prob >= threshold.
    Returns {"criterion", "f1", "accuracy", "frames", "f1_per_au": {AU name: F1}} or None without a labelled frame.
    """
    true, prob = _numpy(true), _numpy(prob).astype(np.float64)
    if true.shape != prob.shape or true.ndim != 2:
        raise ValueError(f"AU labels {true.shape} and predictions {prob.shape} must both be (N, {len(AUS)})")
    if prob.size and (np.isnan(prob).any() or prob.min() < 0 or prob.max() > 1):
        raise ValueError("AU predictions must be probabilities in [0, 1] (apply a sigmoid to the logits)")
    keep = is_labelled("au", true)
    if not keep.any():
        return None
    true = true[keep].astype(np.int64)
    pred = (prob[keep] >= threshold).astype(np.int64)
    per_au = [float(f1_score(true[:, k], pred[:, k], average="binary", pos_label=1, zero_division=0))
              for k in range(true.shape[1])]
    names = AUS if true.shape[1] == len(AUS) else tuple(f"AU{k}" for k in range(true.shape[1]))
    f1 = float(np.mean(per_au))
    accuracy = float(accuracy_score(true.ravel(), pred.ravel()))
    return {"criterion": 0.5 * f1 + 0.5 * accuracy, "f1": f1, "accuracy": accuracy, "frames": int(keep.sum()),
            "f1_per_au": dict(zip(names, per_au))}


def va_criterion(true, pred) -> dict | None:
    """Mean of the CCC of valence and of arousal over frames with both labelled.

    `true`: (N, 2) valence, arousal; a frame is unlabelled where either value is NaN or -5 (VA_UNLABELLED).
    `pred`: (N, 2).
    Returns {"criterion", "ccc_valence", "ccc_arousal", "frames"} or None without a labelled frame.
    """
    true, pred = _numpy(true).astype(np.float64), _numpy(pred).astype(np.float64)
    if true.shape != pred.shape or true.ndim != 2 or true.shape[1] != 2:
        raise ValueError(f"VA labels {true.shape} and predictions {pred.shape} must both be (N, 2)")
    keep = is_labelled("va", true)
    if not keep.any():
        return None
    true, pred = true[keep], pred[keep]
    if not np.isfinite(pred).all():
        raise ValueError("VA predictions contain NaN or infinity on labelled frames")
    ccc_v, ccc_a = float(ccc(pred[:, 0], true[:, 0])), float(ccc(pred[:, 1], true[:, 1]))
    return {"criterion": (ccc_v + ccc_a) / 2, "ccc_valence": ccc_v, "ccc_arousal": ccc_a, "frames": int(keep.sum())}


def evaluate_predictions(true: dict, pred: dict) -> dict:
    """All three criteria from per-frame arrays: {"expr": ..., "au": ..., "va": ...}, absent tasks left out.

    `true` holds "expr" (N,), "au" (N, 12), "va" (N, 2) with the unlabelled markers above; `pred` holds
    "expr" (N, 7) scores or (N,) classes, "au" (N, 12) probabilities, "va" (N, 2); a task missing from `pred`
    is left out.
    """
    criteria = {"expr": expr_criterion, "au": au_criterion, "va": va_criterion}
    results = {task: criteria[task](true[task], pred[task]) for task in ("expr", "au", "va") if task in pred}
    return {task: result for task, result in results.items() if result is not None}
