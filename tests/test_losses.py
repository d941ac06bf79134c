"""Per-task losses over labelled samples only; consistency losses towards the teacher on the others."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from affect.losses import au_pos_weight, consistency_losses, supervised_losses, teacher_targets, unlabelled_mask
from affect.metrics import AU_THRESHOLD, au_criterion, ccc
from affect.schema import TASKS
from affect.train import TrainConfig


def outputs(batch: int = 6, seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {"expr": torch.randn(batch, 7, generator=generator, requires_grad=False).requires_grad_(),
            "au": torch.randn(batch, 12, generator=generator).requires_grad_(),
            "va": torch.rand(batch, 2, generator=generator).mul(2).sub(1).requires_grad_()}


def labels() -> dict[str, torch.Tensor]:
    """Six samples: expression on 0-2, AU on 2-3, VA on 1, 3, 4, 5. Unlabelled data (the partition's flags):
    expression 3, 4; AU 0, 1, 4; VA 0, 2. Sample 5 lacks an expression and an AU label but is held out for
    both (no flag), like a frame on the validation side of those tasks."""
    au = torch.full((6, 12), -1.0)
    au[2] = torch.tensor([1, 0] * 6, dtype=torch.float32)
    au[3] = torch.tensor([0, 1, 1] * 4, dtype=torch.float32)
    va = torch.full((6, 2), float("nan"))
    va[[1, 3, 4, 5]] = torch.tensor([[0.5, -0.2], [0.1, 0.3], [-0.4, 0.0], [0.2, 0.6]])
    unlabelled = torch.zeros(6, len(TASKS), dtype=torch.bool)
    for task, rows in {"expr": [3, 4], "au": [0, 1, 4], "va": [0, 2]}.items():
        unlabelled[rows, TASKS.index(task)] = True
    return {"expr": torch.tensor([3, 0, 6, -1, -1, -1]), "au": au, "va": va, "unlabelled": unlabelled}


def test_supervised_losses_use_labelled_samples_only():
    out, batch = outputs(), labels()
    losses = supervised_losses(out, batch)
    assert torch.allclose(losses["expr"], F.cross_entropy(out["expr"][:3], batch["expr"][:3]))
    assert torch.allclose(losses["au"], F.binary_cross_entropy_with_logits(out["au"][2:4], batch["au"][2:4]))
    rows = [1, 3, 4, 5]
    prediction, target = out["va"][rows].detach().numpy(), batch["va"][rows].numpy()
    expected = 1 - (ccc(prediction[:, 0], target[:, 0]) + ccc(prediction[:, 1], target[:, 1])) / 2
    assert np.isclose(float(losses["va"].detach()), expected, atol=1e-6)
    changed = {task: value.detach().clone() for task, value in out.items()}
    changed["expr"][3:] += 5
    changed["au"][[0, 1, 4, 5]] -= 3
    changed["va"][[0, 2]] = 0.9
    for task, value in supervised_losses(changed, batch).items():
        assert torch.allclose(value, losses[task]), task


def test_au_positive_weights_come_from_the_labelled_rows():
    """(negatives / positives) ** power per AU over rows whose AUs are labelled; unlabelled rows (-1) do not
    count, an AU never (or always) present gets 1, power 0 means plain BCE (no weights)."""
    au = np.zeros((10, 12), np.int8)
    au[:2, 0] = 1            # AU1: 2 of 8 labelled rows positive -> 6 / 2 = 3
    au[:, 1] = 1             # AU2: always present -> 1
    au[:4, 2] = 1            # AU4: 4 of 8 -> 1
    au[8:] = -1              # two unlabelled rows, all positive if they counted
    au[8:, 0] = 1
    assert au_pos_weight(au, 0) == ()
    assert au_pos_weight(au, 1.0) == (3.0, 1.0, 1.0) + (1.0,) * 9
    assert au_pos_weight(au, 0.5)[0] == float(np.float32(np.sqrt(3.0)))


def test_au_positive_weight_scales_the_positive_terms_only():
    """With weight w on an AU, a labelled positive's term is w times the plain one and a negative's is unchanged."""
    out, batch = outputs(), labels()
    weight = torch.full((12,), 2.0)
    plain = F.binary_cross_entropy_with_logits(out["au"][2:4], batch["au"][2:4], reduction="none")
    positive = batch["au"][2:4] == 1
    expected = torch.where(positive, 2 * plain, plain).mean()
    assert torch.allclose(supervised_losses(out, batch, weight)["au"], expected)
    assert torch.allclose(supervised_losses(out, batch, torch.ones(12))["au"], supervised_losses(out, batch)["au"])


def test_soft_au_consistency_is_at_rest_when_the_student_agrees_with_the_teacher():
    """A student whose AU logits equal the teacher's gets a zero gradient from the soft AU consistency loss
    (the teacher's probability is the student's best answer), while a student one logit above the teacher is
    pushed back down: the loss has no drift towards "present" of its own (as a positive weight would give)."""
    batch, teacher = labels(), outputs(seed=1)
    rows = unlabelled_mask(batch, "au")
    assert rows.any()

    def gradient(offset: float) -> torch.Tensor:
        student = {task: value.detach().clone() for task, value in teacher.items()}
        student["au"] = (student["au"] + offset).requires_grad_()
        consistency_losses(student, teacher, batch, "soft")["au"].backward()
        return student["au"].grad[rows]

    at_rest = gradient(0.0)
    assert torch.allclose(at_rest, torch.zeros_like(at_rest), atol=1e-7)
    assert (gradient(1.0) > 0).all()


def test_no_label_for_a_task_adds_an_exact_zero_never_nan():
    out = outputs()
    batch = {"expr": torch.full((6,), -1), "au": torch.full((6, 12), -1.0), "va": torch.full((6, 2), float("nan"))}
    losses = supervised_losses(out, batch)
    assert all(float(value.detach()) == 0.0 for value in losses.values())
    sum(losses.values()).backward()
    for value in out.values():
        assert value.grad is not None and torch.equal(value.grad, torch.zeros_like(value))


def test_single_va_label_is_finite():
    out, batch = outputs(), labels()
    batch["va"][[3, 4, 5]] = float("nan")
    loss = supervised_losses(out, batch)["va"]
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(out["va"].grad).all()


def test_va_squared_error_adds_each_labelled_rows_own_pull():
    """With `va_mse` w the VA loss is 1 - CCC plus w times the squared error of the labelled rows only; a lone
    VA row, which CCC cannot move (its covariance with one value is 0 whatever the prediction), is pulled
    towards its label."""
    out, batch = outputs(), labels()
    rows = [1, 3, 4, 5]
    squared = F.mse_loss(out["va"][rows], batch["va"][rows])
    with_mse = supervised_losses(out, batch, va_mse=2.0)["va"]
    assert torch.allclose(with_mse, supervised_losses(out, batch)["va"] + 2 * squared)
    batch["va"][[3, 4, 5]] = float("nan")

    def pull(mse: float) -> torch.Tensor:
        prediction = out["va"].detach().clone().requires_grad_()
        supervised_losses(out | {"va": prediction}, batch, va_mse=mse)["va"].backward()
        return prediction.grad[1]

    assert torch.equal(pull(0.0), torch.zeros(2))
    assert torch.equal(torch.sign(pull(1.0)), torch.sign(out["va"][1] - batch["va"][1]).detach())


def test_hard_consistency_trains_unlabelled_samples_towards_teacher_decisions():
    student, teacher, batch = outputs(seed=0), outputs(seed=1), labels()
    losses = consistency_losses(student, teacher, batch, "hard")
    expected_expr = F.cross_entropy(student["expr"][3:5], teacher["expr"][3:5].argmax(1))
    unlabelled_au = [0, 1, 4]
    expected_au = F.binary_cross_entropy_with_logits(student["au"][unlabelled_au],
                                                     (teacher["au"][unlabelled_au].sigmoid() >= 0.5).float())
    assert torch.allclose(losses["expr"], expected_expr)
    assert torch.allclose(losses["au"], expected_au)
    rows = [0, 2]
    s, t = student["va"][rows].detach().numpy(), teacher["va"][rows].detach().numpy()
    expected_va = 1 - (ccc(s[:, 0], t[:, 0]) + ccc(s[:, 1], t[:, 1])) / 2
    assert np.isclose(float(losses["va"].detach()), expected_va, atol=1e-6)


def test_confidence_drops_the_teachers_unsure_targets_one_au_at_a_time():
    """With a confidence threshold the consistency loss keeps the unlabelled expression rows whose teacher's top
    probability reaches it and, per AU, the unlabelled AUs whose teacher's max(p, 1 - p) does; VA is kept. A
    threshold no target reaches leaves exact zeros for expression and AU, and VA unchanged."""
    student, batch = outputs(seed=0), labels()
    teacher = {task: value.detach().clone() for task, value in outputs(seed=1).items()}
    teacher["expr"][3] = torch.tensor([4.0, 0, 0, 0, 0, 0, 0])    # sure (top probability 0.90)
    teacher["expr"][4] = torch.zeros(7)                           # unsure (1/7)
    teacher["au"][[0, 1, 4]] = 0.1                                # unsure (0.52) but for two AUs of row 1
    teacher["au"][1, [2, 7]] = torch.tensor([-3.0, 3.0])          # sure (0.95)
    losses = consistency_losses(student, teacher, batch, "hard", confidence=0.8)
    assert torch.allclose(losses["expr"], F.cross_entropy(student["expr"][3:4], torch.tensor([0])))
    expected_au = F.binary_cross_entropy_with_logits(student["au"][1, [2, 7]], torch.tensor([0.0, 1.0]))
    assert torch.allclose(losses["au"], expected_au)
    assert torch.equal(losses["va"], consistency_losses(student, teacher, batch, "hard")["va"])
    nothing = consistency_losses(student, teacher, batch, "soft", confidence=0.99)
    assert float(nothing["expr"].detach()) == 0.0 and float(nothing["au"].detach()) == 0.0
    with pytest.raises(ValueError, match="consistency_confidence"):
        TrainConfig(consistency_confidence=1.0)


def test_squared_error_consistency_compares_probabilities_and_values():
    """`loss="mse"`: the squared error of the student's softmax against the teacher's one-hot decision (hard) or
    softmax (soft), of its AU sigmoids against the teacher's, of VA values, over the same unlabelled rows as the
    task losses; the confidence filter still drops single AUs."""
    student, teacher, batch = outputs(seed=0), outputs(seed=1), labels()
    hard = consistency_losses(student, teacher, batch, "hard", loss="mse")
    expected = F.mse_loss(student["expr"][3:5].softmax(1), F.one_hot(teacher["expr"][3:5].argmax(1), 7).float())
    assert torch.allclose(hard["expr"], expected)
    soft = consistency_losses(student, teacher, batch, "soft", loss="mse")
    unlabelled_au = [0, 1, 4]
    assert torch.allclose(soft["au"], F.mse_loss(student["au"][unlabelled_au].sigmoid(),
                                                 teacher["au"][unlabelled_au].sigmoid()))
    assert torch.allclose(soft["va"], F.mse_loss(student["va"][[0, 2]], teacher["va"][[0, 2]]))
    assert not torch.allclose(soft["va"], consistency_losses(student, teacher, batch, "soft")["va"])
    sure = {task: value.detach().clone() for task, value in teacher.items()}
    sure["au"][[0, 1, 4]] = 0.1
    sure["au"][1, [2, 7]] = torch.tensor([-3.0, 3.0])
    filtered = consistency_losses(student, sure, batch, "hard", confidence=0.8, loss="mse")
    assert torch.allclose(filtered["au"], F.mse_loss(student["au"][1, [2, 7]].sigmoid(), torch.tensor([0.0, 1.0])))
    with pytest.raises(ValueError, match="consistency_loss"):
        TrainConfig(consistency_loss="l1")


def test_soft_targets_are_probabilities():
    teacher = outputs(seed=1)
    assert torch.allclose(teacher_targets("expr", teacher["expr"], "soft").sum(1), torch.ones(6))
    assert torch.equal(teacher_targets("au", teacher["au"], "soft"), teacher["au"].sigmoid())
    student, batch = outputs(seed=0), labels()
    losses = consistency_losses(student, teacher, batch, "soft")
    expected = -(teacher["expr"][3:5].softmax(1) * student["expr"][3:5].log_softmax(1)).sum(1).mean()
    assert torch.allclose(losses["expr"], expected)


def test_a_held_out_pair_gets_no_loss_at_all():
    """Sample 5 has no expression or AU label and is not unlabelled data for them: no gradient reaches it."""
    student, teacher, batch = outputs(seed=0), outputs(seed=1), labels()
    losses = supervised_losses(student, batch) | {f"c_{k}": v for k, v in
                                                  consistency_losses(student, teacher, batch, "hard").items()}
    sum(losses.values()).backward()
    assert torch.equal(student["expr"].grad[5], torch.zeros(7)) and torch.equal(student["au"].grad[5], torch.zeros(12))
    assert student["expr"].grad[4].abs().sum() > 0 and student["au"].grad[4].abs().sum() > 0


def test_consistency_on_training_pairs_adds_the_labelled_ones_and_never_a_held_out_one():
    """With on="training" each task's consistency gradient reaches its labelled and its unlabelled samples
    (`labels()`: expression 0-4, AU 0-4, VA 0-5) and no other: sample 5 is held out for the expression and
    the AUs. on="unlabelled" reaches the flagged samples only."""
    teacher, batch = outputs(seed=1), labels()
    reached = {}
    for on in ("unlabelled", "training"):
        student = outputs(seed=0)
        losses = consistency_losses(student, teacher, batch, "soft", loss="mse", on=on)
        sum(losses.values()).backward()
        reached[on] = {task: set(np.flatnonzero(student[task].grad.abs().sum(1).numpy() > 0).tolist())
                       for task in TASKS}
    assert reached["unlabelled"] == {"expr": {3, 4}, "au": {0, 1, 4}, "va": {0, 2}}
    assert reached["training"] == {"expr": {0, 1, 2, 3, 4}, "au": {0, 1, 2, 3, 4}, "va": {0, 1, 2, 3, 4, 5}}
    with pytest.raises(ValueError, match="consistency_on"):
        TrainConfig(consistency_on="all")


def test_consistency_tasks_leave_the_other_heads_to_the_supervised_loss():
    """With tasks=("expr",) only the expression head gets a consistency gradient, and its loss is the one the
    three-task call computes; the AU and VA heads get none, and TrainConfig refuses an unknown or repeated
    task, or none."""
    teacher, batch, student = outputs(seed=1), labels(), outputs(seed=0)
    every = consistency_losses(outputs(seed=0), teacher, batch, "soft", loss="mse", on="training")
    losses = consistency_losses(student, teacher, batch, "soft", loss="mse", on="training", tasks=("expr",))
    assert list(losses) == ["expr"] and torch.equal(losses["expr"], every["expr"])
    sum(losses.values()).backward()
    assert student["expr"].grad.abs().sum() > 0
    assert student["au"].grad is None and student["va"].grad is None
    assert TrainConfig(consistency_tasks=["expr", "au"]).consistency_tasks == ("expr", "au")
    for tasks in (["valence"], ["expr", "expr"], []):
        with pytest.raises(ValueError, match="consistency_tasks"):
            TrainConfig(consistency_tasks=tasks)


def test_fully_labelled_batch_has_no_consistency():
    batch = {"expr": torch.arange(6) % 7, "au": torch.ones(6, 12), "va": torch.zeros(6, 2),
             "unlabelled": torch.zeros(6, 3, dtype=torch.bool)}
    losses = consistency_losses(outputs(seed=0), outputs(seed=1), batch, "hard")
    assert all(float(value.detach()) == 0.0 for value in losses.values())


def test_consistency_needs_the_partitions_flags():
    batch = {key: value for key, value in labels().items() if key != "unlabelled"}
    with pytest.raises(ValueError, match="'unlabelled' flags"):
        consistency_losses(outputs(seed=0), outputs(seed=1), batch, "hard")


def test_au_pseudo_labels_and_the_metric_share_one_threshold():
    """A teacher AU probability exactly at the threshold is a present AU for the pseudo-label and the metric."""
    logits = torch.tensor([[0.0, -1e-4, 1e-4] * 4])
    hard = teacher_targets("au", logits, "hard")
    assert hard.tolist() == [[1.0, 0.0, 1.0] * 4]
    true = hard.numpy().astype(int)
    assert au_criterion(true, logits.sigmoid().numpy())["accuracy"] == 1.0
    assert AU_THRESHOLD == 0.5
