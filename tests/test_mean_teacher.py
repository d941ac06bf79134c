"""The EMA teacher with a global step, its batch-norm handling, its input noise and the consistency weight."""

import copy
import math

import pytest
import torch
from torch import nn

from affect.data import CLIP_MEAN, CLIP_STD
from affect.mean_teacher import (batch_statistics, brighten, clip_augment, consistency_weight, ema_eta, ema_update,
                                 flip_shift, make_teacher, silence)
from affect.train import TrainConfig, fit, learning_rate


class Tiny(nn.Module):
    """A linear layer, a batch norm and an expression head: enough to see every kind of state."""

    def __init__(self):
        super().__init__()
        self.hidden = nn.Sequential(nn.Linear(5, 8), nn.BatchNorm1d(8), nn.ReLU())
        self.expr = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"expr": self.expr(self.hidden(x))}


def tiny_batches(steps: int):
    """Six samples per step, the first three labelled; the same stream from any start step."""
    def batches(start: int):
        for step in range(start, steps):
            generator = torch.Generator().manual_seed(step)
            x = torch.randn(6, 5, generator=generator)
            unlabelled = torch.zeros(6, 3, dtype=torch.bool)
            unlabelled[3:, 1] = True  # expression is the second of TASKS
            yield {"x": x, "expr": torch.tensor([0, 1, 2, -1, -1, -1]), "unlabelled": unlabelled}
    return batches


def state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {key: value.detach().clone() for key, value in model.state_dict().items()}


def test_eta_warm_up():
    assert ema_eta(1, 0.99) == 0.5
    assert ema_eta(3, 0.99) == 0.75
    assert ema_eta(99, 0.99) == 0.99
    assert ema_eta(10_000, 0.99) == 0.99


def test_ema_update_from_a_known_state():
    torch.manual_seed(0)
    student = Tiny()
    teacher = make_teacher(student)
    with torch.no_grad():
        for p in teacher.parameters():
            p.fill_(1.0)
        for p in student.parameters():
            p.fill_(3.0)
        student.hidden[1].running_mean.fill_(2.0)
        student.hidden[1].num_batches_tracked.fill_(7)
    ema_update(teacher, student, step=500, eta=0.99)
    for p in teacher.parameters():
        assert torch.allclose(p, torch.full_like(p, 0.99 * 1.0 + 0.01 * 3.0))
    assert torch.allclose(teacher.hidden[1].running_mean, torch.full((8,), 0.01 * 2.0))
    assert torch.allclose(teacher.hidden[1].running_var, torch.ones(8))
    assert int(teacher.hidden[1].num_batches_tracked) == 7


def test_every_step_follows_the_formula_with_a_global_step_across_a_resume(tmp_path):
    """Student and teacher recorded after every step: teacher_k = eta_k teacher_{k-1} + (1 - eta_k) student_k
    with eta_k = min(1 - 1/(k+1), 0.99), k the global step, also after the run is interrupted and resumed."""
    steps = 120
    config = TrainConfig(method="mean_teacher", steps=steps, eval_every=1, checkpoint_every=10, inputs=("x",))
    recorded = []

    def validate(model: nn.Module) -> dict[str, float]:
        recorded.append(state(model))
        return {}

    class Stop(Exception):
        pass

    def stop_at_75(step: int, metrics: dict) -> None:
        if step == 75:
            raise Stop

    torch.manual_seed(0)
    initial = Tiny()
    teacher0 = state(initial)
    with pytest.raises(Stop):
        fit(initial, tiny_batches(steps), config, validate=validate, on_log=stop_at_75,
            checkpoint_dir=tmp_path, progress=False)
    del recorded[140:]  # the steps after the checkpoint at 70 are repeated by the resumed run
    torch.manual_seed(1)
    student, teacher = fit(Tiny(), tiny_batches(steps), config, validate=validate, checkpoint_dir=tmp_path,
                           progress=False)
    assert len(recorded) == 2 * steps
    previous = teacher0
    for k in range(1, steps + 1):
        student_k, teacher_k = recorded[2 * (k - 1)], recorded[2 * (k - 1) + 1]
        eta = min(1 - 1 / (k + 1), 0.99)
        for key, value in teacher_k.items():
            if value.is_floating_point():
                assert torch.allclose(value, eta * previous[key] + (1 - eta) * student_k[key], atol=1e-6), (k, key)
            else:
                assert torch.equal(value, student_k[key])
        previous = teacher_k
    assert all(not p.requires_grad and p.grad is None for p in teacher.parameters())
    assert not teacher.training and student.training


def test_teacher_forward_leaves_its_batch_norm_buffers_alone():
    torch.manual_seed(0)
    teacher = make_teacher(Tiny())
    before = state(teacher)
    with torch.no_grad():
        teacher(torch.randn(16, 5) * 4 + 2)
    assert all(torch.equal(before[key], value) for key, value in state(teacher).items())


def test_batch_statistics_normalise_by_the_batch_and_leave_the_buffers_alone():
    """`train.teacher_bn: batch`: inside `batch_statistics` the eval-mode teacher's outputs are those of a
    train-mode copy (the batch's own statistics), not its eval outputs; its buffers stay as they were and its
    modes come back after the block, an exception included."""
    torch.manual_seed(0)
    student = Tiny()
    with torch.no_grad():
        student(torch.randn(32, 5))  # running statistics other than the initial 0 and 1
    teacher, x = make_teacher(student), torch.randn(16, 5) * 4 + 2
    before, train_mode = state(teacher), copy.deepcopy(teacher).train()
    with torch.no_grad():
        evaluated = teacher(x)["expr"]
        with batch_statistics(teacher):
            batch = teacher(x)["expr"]
        assert torch.equal(batch, train_mode(x)["expr"])
        assert not torch.allclose(batch, evaluated, atol=1e-3)
        assert all(torch.equal(before[key], value) for key, value in state(teacher).items())
        assert torch.equal(teacher(x)["expr"], evaluated)
        with pytest.raises(RuntimeError), batch_statistics(teacher):
            raise RuntimeError
    assert not any(module.training for module in teacher.modules())
    assert teacher.hidden[1].track_running_stats


def test_brightness_changes_rgb_only_and_keeps_black_black():
    clip = torch.rand(3, 4, 2, 8, 8)
    clip[:, :, :, :2] = 0.0
    normalised = (clip - torch.tensor(CLIP_MEAN).view(1, 4, 1, 1, 1)) / torch.tensor(CLIP_STD).view(1, 4, 1, 1, 1)
    noisy = brighten(normalised, 0.2, CLIP_MEAN[:3], CLIP_STD[:3], torch.Generator().manual_seed(0))
    assert torch.equal(noisy[:, 3], normalised[:, 3])
    mean, std = torch.tensor(CLIP_MEAN[:3]).view(1, 3, 1, 1, 1), torch.tensor(CLIP_STD[:3]).view(1, 3, 1, 1, 1)
    raw = noisy[:, :3] * std + mean
    assert torch.allclose(raw[:, :, :, :2], torch.zeros_like(raw[:, :, :, :2]), atol=1e-6)
    assert raw.min() >= -1e-6 and raw.max() <= 1 + 1e-6
    for b in range(3):
        bright = clip[b, :3, :, 2:]
        factor = (raw[b, :, :, 2:][bright < 0.8] / bright[bright < 0.8]).mean()
        assert 0.8 <= factor <= 1.2
        assert torch.allclose(raw[b, :, :, 2:], (bright * factor).clamp(0, 1), atol=1e-5)
    again = brighten(normalised, 0.2, CLIP_MEAN[:3], CLIP_STD[:3], torch.Generator().manual_seed(0))
    assert torch.equal(noisy, again)


def test_consistency_weight_ramp():
    assert consistency_weight(0, 1.0, 0) == 1.0
    assert math.isclose(consistency_weight(0, 0.4, 100), 0.4 * math.exp(-5))
    assert math.isclose(consistency_weight(50, 0.4, 100), 0.4 * math.exp(-5 * 0.25))
    assert consistency_weight(100, 0.4, 100) == 0.4


def test_flip_shift_moves_rgb_and_mask_together_and_is_seeded():
    """Each clip is mirrored or not and shifted by at most `shift` px, every frame and channel alike; the same
    generator seed gives the same batch."""
    clip = torch.zeros(6, 4, 3, 16, 16)
    clip[:, :, :, 5, 3] = 1.0                                   # one bright pixel at (y 5, x 3)
    out = flip_shift(clip, 0.5, 2, torch.Generator().manual_seed(0))
    mirrored = 0
    for b in range(6):
        ys, xs = torch.nonzero(out[b, 0, 0], as_tuple=True)
        assert len(ys) == 1 and abs(int(ys[0]) - 5) <= 2
        mirrored += abs(int(xs[0]) - 12) <= 2                   # the mirror of x 3 is x 12
        assert all(torch.equal(out[b, c, k], out[b, 0, 0]) for c in range(4) for k in range(3))
    assert 0 < mirrored < 6
    assert torch.equal(out, flip_shift(clip, 0.5, 2, torch.Generator().manual_seed(0)))
    assert torch.equal(flip_shift(clip, 0.0, 0, torch.Generator()), clip)
    assert clip_augment(0.5, 2, 0.2)({"clip": clip}, torch.Generator().manual_seed(1))["clip"].shape == clip.shape


def test_mel_dropout_silences_whole_samples_and_keeps_the_labels():
    """`silence` replaces a sample's whole mel window by the silent level or leaves it exactly as it was, at
    about the stated rate and the same for the same generator seed; the student's view keeps the labels."""
    mel = torch.randn(400, 1, 8, 5)
    out = silence(mel, 0.3, -4.0, torch.Generator().manual_seed(0))
    silent = (out == -4.0).flatten(1).all(1)
    assert torch.equal(out[~silent], mel[~silent])
    assert 0.22 < silent.float().mean().item() < 0.38
    assert torch.equal(out, silence(mel, 0.3, -4.0, torch.Generator().manual_seed(0)))
    assert torch.equal(silence(mel, 0.0, -4.0, torch.Generator()), mel)
    assert (silence(mel, 1.0, -4.0, torch.Generator()) == -4.0).all()
    batch = {"clip": torch.zeros(4, 4, 3, 16, 16), "mel": mel[:4], "expr": torch.arange(4)}
    view = clip_augment(0.0, 0, 0.0, 1.0, -4.0)(batch, torch.Generator())
    assert (view["mel"] == -4.0).all() and torch.equal(view["expr"], batch["expr"])
    assert torch.equal(clip_augment(0.0, 0, 0.0)(batch, torch.Generator())["mel"], batch["mel"])


def test_cosine_schedule_with_warm_up():
    config = TrainConfig(steps=100, lr=1e-3, lr_schedule="cosine", warmup=10)
    assert math.isclose(learning_rate(0, config), 1e-4)
    assert math.isclose(learning_rate(9, config), 1e-3)
    assert math.isclose(learning_rate(55, config), 5e-4)
    assert learning_rate(99, config) < 1e-5
    assert learning_rate(50, TrainConfig(lr=1e-3, lr_schedule="constant", warmup=0)) == 1e-3
