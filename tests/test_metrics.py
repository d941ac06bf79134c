"""The ABAW2 criteria against independent computations, and their edge cases."""

import math

import numpy as np
import pytest
import torch

from affect.evaluate import trivial_predictions
from affect.metrics import au_criterion, ccc, evaluate_predictions, expr_criterion, va_criterion
from affect.schema import AUS


def ccc_from_moments(x: np.ndarray, y: np.ndarray) -> float:
    """CCC from numpy's population covariance matrix."""
    c = np.cov(x, y, bias=True)
    return 2 * c[0, 1] / (c[0, 0] + c[1, 1] + (x.mean() - y.mean()) ** 2)


def f1_from_counts(true: np.ndarray, pred: np.ndarray, cls: int) -> float:
    """F1 of one class from its confusion-matrix counts: 2 TP / (2 TP + FP + FN), 0 when undefined."""
    tp = np.sum((pred == cls) & (true == cls))
    fp = np.sum((pred == cls) & (true != cls))
    fn = np.sum((pred != cls) & (true == cls))
    return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0


def test_ccc_matches_numpy_moments_and_torch():
    rng = np.random.default_rng(0)
    x = rng.normal(size=500)
    y = 0.6 * x + rng.normal(scale=0.8, size=500) + 0.3
    assert ccc(x, y) == pytest.approx(ccc_from_moments(x, y), abs=1e-12)
    assert float(ccc(torch.tensor(x), torch.tensor(y))) == pytest.approx(ccc_from_moments(x, y), abs=1e-9)
    assert ccc(x, x) == pytest.approx(1.0)
    x0 = x - x.mean()
    assert ccc(x0, -x0) == pytest.approx(-1.0)
    # a perfectly correlated but shifted and scaled prediction is penalised (unlike Pearson)
    assert ccc(x, 2 * x + 1) < 0.9


def test_va_criterion_is_the_mean_not_the_sum():
    rng = np.random.default_rng(1)
    true = rng.uniform(-1, 1, size=(300, 2))
    pred = np.clip(true + rng.normal(scale=0.3, size=true.shape), -1, 1)
    result = va_criterion(true, pred)
    v, a = ccc_from_moments(pred[:, 0], true[:, 0]), ccc_from_moments(pred[:, 1], true[:, 1])
    assert result["ccc_valence"] == pytest.approx(v)
    assert result["ccc_arousal"] == pytest.approx(a)
    assert result["criterion"] == pytest.approx((v + a) / 2)
    assert result["frames"] == 300


def test_va_constant_predictions_give_zero_not_nan():
    true = np.array([[0.1, 0.2], [0.5, -0.3], [-0.4, 0.9]])
    result = va_criterion(true, np.zeros_like(true))
    assert result["criterion"] == 0.0 and not math.isnan(result["criterion"])
    both_constant = va_criterion(np.full((4, 2), 0.5), np.full((4, 2), 0.5))
    assert both_constant["criterion"] == 0.0


def test_va_uses_only_labelled_frames():
    rng = np.random.default_rng(2)
    true = rng.uniform(-1, 1, size=(50, 2))
    pred = rng.uniform(-1, 1, size=(50, 2))
    true_masked = true.copy()
    true_masked[::3] = np.nan
    pred_garbage = pred.copy()
    pred_garbage[::3] = 100.0  # unlabelled frames must not count
    keep = np.ones(50, bool)
    keep[::3] = False
    result = va_criterion(true_masked, pred_garbage)
    assert result["frames"] == keep.sum()
    assert result["criterion"] == pytest.approx(va_criterion(true[keep], pred[keep])["criterion"])


def test_expr_criterion_against_confusion_counts():
    rng = np.random.default_rng(3)
    true = rng.integers(0, 7, size=400)
    pred = np.where(rng.random(400) < 0.5, true, rng.integers(0, 7, size=400))
    f1 = np.mean([f1_from_counts(true, pred, c) for c in range(7)])
    accuracy = np.mean(true == pred)
    result = expr_criterion(true, pred)
    assert result["f1"] == pytest.approx(f1)
    assert result["accuracy"] == pytest.approx(accuracy)
    assert result["criterion"] == pytest.approx(0.67 * f1 + 0.33 * accuracy)
    scores = np.eye(7)[pred] + rng.random((400, 7)) * 0.1  # argmax of (N, 7) scores gives the same classes
    assert expr_criterion(true, scores)["criterion"] == pytest.approx(result["criterion"])


def test_expr_hand_made_with_absent_class_and_unlabelled_frames():
    true = np.array([0, 0, 1, 1, 4, -1, -1])
    pred = np.array([0, 1, 1, 1, 6, 3, 3])
    # labelled: (0,0) (0,1) (1,1) (1,1) (4,6); classes seen: 0, 1, 4, 6
    # F1: class 0 = 2/(2+0+1) = 2/3, class 1 = 4/(4+1+0) = 4/5, class 4 = 0, class 6 (never true) = 0
    result = expr_criterion(true, pred)
    f1 = (2 / 3 + 4 / 5 + 0 + 0) / 4
    assert result["f1"] == pytest.approx(f1)
    assert result["accuracy"] == pytest.approx(3 / 5)
    assert result["frames"] == 5
    assert result["criterion"] == pytest.approx(0.67 * f1 + 0.33 * 3 / 5)
    assert result["f1_all_classes"] == pytest.approx((2 / 3 + 4 / 5) / 7)  # classes 2, 3, 5 absent: 0 each


def test_expr_f1_over_the_classes_present_and_over_all_seven():
    """A small validation side with two classes, mostly right: the organisers' F1 (`f1`, the criterion's)
    averages over the 2 classes seen; `f1_all_classes` over all 7 is much lower."""
    true = np.array([4] * 8 + [0] * 2)
    pred = np.array([4] * 8 + [4, 0])
    result = expr_criterion(true, pred)
    f1_happy, f1_neutral = 2 * 8 / (2 * 8 + 1), 2 / 3
    assert result["f1"] == pytest.approx((f1_happy + f1_neutral) / 2)
    assert result["f1_all_classes"] == pytest.approx((f1_happy + f1_neutral) / 7)
    assert result["criterion"] == pytest.approx(0.67 * result["f1"] + 0.33 * 0.9)


def test_va_on_raw_abaw_arrays_treats_minus_five_as_unlabelled():
    """Raw annotation values: -5 in either column marks an unannotated frame (docs/method.md,
    "Annotation format"), like NaN."""
    rng = np.random.default_rng(4)
    true = np.round(rng.uniform(-1, 1, (60, 2)), 3)
    true[::4] = -5.0
    true[1::10, 1] = -5.0  # arousal alone unannotated
    result = va_criterion(true, np.where(true == -5, 0.3, true))
    assert result["criterion"] == pytest.approx(1.0)
    assert result["frames"] == 60 - 15 - 6  # rows 0, 4, ..., 56 and 1, 11, ..., 51


def test_au_criterion_is_positive_class_f1_against_counts():
    rng = np.random.default_rng(4)
    true = (rng.random((300, 12)) < 0.3).astype(np.int8)
    prob = np.clip(true * 0.3 + rng.random((300, 12)) * 0.6, 0, 1)
    pred = (prob >= 0.5).astype(int)
    per_au = [f1_from_counts(true[:, k], pred[:, k], 1) for k in range(12)]
    accuracy = np.mean(true == pred)
    result = au_criterion(true, prob)
    assert list(result["f1_per_au"]) == list(AUS)
    assert list(result["f1_per_au"].values()) == pytest.approx(per_au)
    assert result["f1"] == pytest.approx(np.mean(per_au))
    assert result["accuracy"] == pytest.approx(accuracy)
    assert result["criterion"] == pytest.approx(0.5 * np.mean(per_au) + 0.5 * accuracy)
    # macro over {0, 1} per AU (the paper's code) would be higher: make sure that is not what we compute
    macro01 = np.mean([(f1_from_counts(true[:, k], pred[:, k], 1) + f1_from_counts(true[:, k], pred[:, k], 0)) / 2
                       for k in range(12)])
    assert result["f1"] < macro01


def test_au_never_present_and_unlabelled_frames():
    true = np.zeros((6, 12), np.int8)
    true[:3, 0] = 1  # AU1 present on three frames, every other AU never present
    true[5] = -1     # unlabelled frame
    prob = np.zeros((6, 12))
    prob[:2, 0] = 0.9   # two of three AU1 found
    prob[5] = 1.0       # garbage on the unlabelled frame must not count
    result = au_criterion(true, prob)
    assert result["frames"] == 5
    assert result["f1_per_au"]["AU1"] == pytest.approx(2 * 2 / (2 * 2 + 0 + 1))
    assert all(result["f1_per_au"][au] == 0.0 for au in AUS[1:])  # never present, never predicted: 0
    assert result["accuracy"] == pytest.approx((5 * 12 - 1) / (5 * 12))


def test_au_rejects_logits():
    with pytest.raises(ValueError, match="sigmoid"):
        au_criterion(np.zeros((2, 12)), np.full((2, 12), -3.0))


def test_absent_task_is_left_out_not_zero():
    n = 5
    true = {"expr": np.full(n, -1), "au": np.full((n, 12), -1), "va": np.full((n, 2), np.nan)}
    true["va"][:3] = [[0.1, 0.2], [0.3, 0.1], [-0.2, 0.0]]
    pred = {"expr": np.zeros((n, 7)), "au": np.zeros((n, 12)), "va": np.zeros((n, 2))}
    assert expr_criterion(true["expr"], pred["expr"]) is None
    assert au_criterion(true["au"], pred["au"]) is None
    results = evaluate_predictions(true, pred)
    assert set(results) == {"va"}
    assert results["va"]["frames"] == 3


def test_trivial_predictions_are_the_training_majorities():
    """Majority class and per-AU majority over the labelled training frames only (unlabelled rows, however
    many, do not vote); valence/arousal a constant, which scores CCC 0; a task without training labels is
    left out."""
    expr = np.array([3, 3, 1, -1, -1, -1, -1, 3, 1])          # class 3 wins; -1 would win if counted
    au = np.full((6, len(AUS)), -1.0, np.float32)
    au[:3] = 0.0
    au[:2, 4] = 1.0                                           # AU 4 in 2 of 3 labelled frames: present
    au[0, 7] = 1.0                                            # AU 7 in 1 of 3: absent
    va = np.full((4, 2), -5.0, np.float32)
    trivial = trivial_predictions({"expr": expr, "au": au, "va": va}, 5)
    assert trivial["expr"].tolist() == [3] * 5
    assert trivial["au"].shape == (5, len(AUS)) and trivial["au"][:, 4].all() and not trivial["au"][:, 7].any()
    assert trivial["au"].sum() == 5
    true_va = np.random.default_rng(0).uniform(-1, 1, (5, 2))
    assert evaluate_predictions({"va": true_va}, {"va": trivial["va"]})["va"]["criterion"] == 0
    no_labels = trivial_predictions({"expr": np.full(4, -1), "au": np.full((4, len(AUS)), -1.0), "va": va}, 2)
    assert set(no_labels) == {"va"}
