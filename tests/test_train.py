"""The training engine: Mean Teacher beats supervised training on real data, resumes bit-identically, runs
under torchrun with DDP; and the `train` stage on the demo pipeline.

Run as a script under torchrun (`torchrun --nproc_per_node 2 tests/test_train.py OUT`), it trains the digits
model with DDP on gloo and writes each rank's results to OUT (see `test_torchrun_ddp`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

from affect.data import ClipDataset, MixedBatchSampler
from affect.evaluate import trivial_predictions
from affect.metrics import evaluate_predictions
from affect.losses import supervised_losses
from affect.mean_teacher import make_teacher
from affect.pipeline import infer, loader_options
from affect.schema import TASKS, Layout
from affect.train import BN_CHUNKS, DataConfig, TrainConfig, fit, forward_in_chunks, train_step, validation
from affect.tsav import TSAV, load_model

ROOT = Path(__file__).resolve().parents[1]


class DigitsMLP(nn.Module):
    """8x8 digit images -> 10 logits, returned as the "expr" task so the engine's cross-entropy applies."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(64, 128), nn.BatchNorm1d(128), nn.ReLU(), nn.Dropout(0.5),
                                 nn.Linear(128, 10))

    def forward(self, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"expr": self.net(pixels)}


def gaussian(sigma: float):
    """Input noise: pixels + N(0, sigma^2); a `teacher_input` for `fit`."""
    def noisy(batch: dict, generator: torch.Generator) -> dict:
        return batch | {"pixels": batch["pixels"] + sigma * torch.randn(batch["pixels"].shape, generator=generator)}
    return noisy


class Digits:
    """scikit-learn's bundled digits: 70% train with `labelled` of it labelled (by seed), 30% test."""

    def __init__(self, seed: int, labelled: float = 0.1):
        x, y = load_digits(return_X_y=True)
        self.pixels = torch.tensor(x / 16.0, dtype=torch.float32)
        self.classes = y
        train, self.test = train_test_split(np.arange(len(y)), test_size=0.3, random_state=0, stratify=y)
        self.labelled = np.sort(np.random.default_rng(seed).permutation(train)[: round(labelled * len(train))])
        self.unlabelled = np.setdiff1d(train, self.labelled)
        self.target = torch.full((len(y),), -1)
        self.target[self.labelled] = torch.tensor(y[self.labelled])
        self.unlabelled_flags = torch.zeros(len(y), len(TASKS), dtype=torch.bool)  # the engine's (B, 3) flags
        self.unlabelled_flags[self.unlabelled, TASKS.index("expr")] = True

    def batches(self, batch_size: int, labelled_fraction: float, seed: int, steps: int, rank: int = 0,
                world_size: int = 1):
        """`batches` for `fit`: MixedBatchSampler batches with Gaussian input noise seeded by the batch."""
        def batches(start: int):
            sampler = MixedBatchSampler(self.labelled, self.unlabelled, batch_size, labelled_fraction, seed, steps,
                                        start_batch=start, rank=rank, world_size=world_size)
            for b, indices in enumerate(sampler, start):
                batch = {"pixels": self.pixels[indices], "expr": self.target[indices],
                         "unlabelled": self.unlabelled_flags[indices]}
                yield gaussian(0.1)(batch, torch.Generator().manual_seed(seed * 100_003 + b))
        return batches

    def accuracy(self, model: nn.Module) -> float:
        predictions = infer(model.eval(), [{"pixels": self.pixels[self.test], "expr": self.target[self.test]}],
                            inputs=("pixels",), progress=False)
        return float((predictions["expr"] == self.classes[self.test]).mean())


def train_digits(method: str, seed: int, steps: int, **config) -> tuple[nn.Module, nn.Module, Digits]:
    digits = Digits(seed)
    labelled_fraction = 0.5 if method == "mean_teacher" else 1.0
    config = TrainConfig(method=method, seed=seed, steps=steps, inputs=("pixels",), **config)
    torch.manual_seed(seed)
    student, teacher = fit(DigitsMLP(), digits.batches(64, labelled_fraction, seed, steps), config,
                           teacher_input=gaussian(0.1), progress=False)
    return student, teacher, digits


def test_the_weights_depend_on_train_threads_not_on_the_machine():
    """A sum split over threads rounds by their number. `train.threads` fixes the count, so the weights are the
    same bytes whatever thread count the process had (as on machines with 1 or 3 cores); another
    `train.threads` gives other bytes (so the check can fail)."""
    def teacher_bytes(process_threads: int, threads: int) -> bytes:
        torch.set_num_threads(process_threads)
        _, teacher, _ = train_digits("mean_teacher", 0, 30, threads=threads, eval_every=1000, checkpoint_every=1000)
        assert torch.get_num_threads() == process_threads, "fit leaves the caller's thread count"
        return b"".join(value.numpy().tobytes() for value in teacher.state_dict().values())

    before = torch.get_num_threads()
    try:
        assert teacher_bytes(1, threads=2) == teacher_bytes(3, threads=2)
        assert teacher_bytes(1, threads=1) != teacher_bytes(1, threads=2)
    finally:
        torch.set_num_threads(before)


def test_mean_teacher_beats_supervised_on_digits():
    """10% of the training digits labelled, the same network, engine and labelled batches; Mean Teacher
    batches are half unlabelled. The consistency weight ramps up over the first half (the reference
    implementation's option): with the paper's no-ramp default the untrained teacher's hard labels hurt here.
    The consistency loss is the paper's (cross-entropy to the teacher's hard labels, `consistency_loss="task"`,
    `consistency_targets="hard"`), for which the figures below were measured (the default squared error also
    passed once; not measured over seeds).

    The claim is on the mean over seeds 0-4, the first five (not chosen), with a margin of 0.01 test accuracy.
    Measured over seeds 0-7 (test accuracy, supervised / MT student / MT teacher): the teacher's gain is
    +0.019 on average (per seed +0.004 .. +0.032, standard deviation 0.010), +0.024 over seeds 0-4, so the
    margin is about 3 standard errors of a 5-seed mean below the expected gain; the student's gain is similar
    but one seed of eight (5) is 0.002 below supervised."""
    config = dict(lr=1e-3, lr_schedule="constant", warmup=0, eval_every=2000, checkpoint_every=2000,
                  consistency_rampup=1000, consistency_loss="task", consistency_targets="hard")
    supervised, mean_teacher = [], []
    for seed in range(5):
        student, _, digits = train_digits("supervised", seed, 2000, **config)
        supervised.append(digits.accuracy(student))
        student, teacher, digits = train_digits("mean_teacher", seed, 2000, **config)
        mean_teacher.append((digits.accuracy(student), digits.accuracy(teacher)))
    assert np.mean(supervised) > 0.85
    student_mean, teacher_mean = np.mean(mean_teacher, axis=0)
    assert student_mean > np.mean(supervised) + 0.01, (supervised, mean_teacher)
    assert teacher_mean > np.mean(supervised) + 0.01, (supervised, mean_teacher)


def test_bn_batch_normalises_each_chunk_by_its_own_statistics():
    """`train.bn_batch` (ghost batch norm): in training mode the student's outputs on a batch are those of its
    chunks of `bn_batch` samples passed one by one, not those of the whole batch; a chunk as large as the
    batch is one pass, the same weights as 0 after training, while chunks of half the batch give others."""
    torch.manual_seed(0)
    model, pixels = DigitsMLP().train(), torch.rand(16, 64)
    model.net[3].p = 0.0  # no dropout: the only randomness is the batch norm's grouping
    chunked = forward_in_chunks(model, [pixels], 8)["expr"]
    assert torch.equal(chunked, torch.cat([model(pixels[:8])["expr"], model(pixels[8:])["expr"]]))
    assert not torch.allclose(chunked, model(pixels)["expr"], atol=1e-3)
    assert torch.equal(forward_in_chunks(model, [pixels], 16)["expr"], model(pixels)["expr"])
    interleaved = forward_in_chunks(model, [pixels], 6, interleaved=True)["expr"]  # 3 chunks of 6, 5 and 5
    for i in range(3):
        assert torch.equal(interleaved[i::3], model(pixels[i::3])["expr"])
    assert not torch.allclose(interleaved, chunked, atol=1e-3)

    def teacher_bytes(bn_batch: int) -> bytes:
        _, teacher, _ = train_digits("supervised", 0, 20, bn_batch=bn_batch, eval_every=1000, checkpoint_every=1000)
        return b"".join(value.numpy().tobytes() for value in teacher.state_dict().values())

    assert teacher_bytes(64) == teacher_bytes(0)
    assert teacher_bytes(32) != teacher_bytes(0)
    with pytest.raises(ValueError, match="train.bn_batch -1"):
        TrainConfig(bn_batch=-1)
    with pytest.raises(ValueError, match="train.bn_chunks 'strided'"):
        TrainConfig(bn_chunks="strided")


def test_teacher_bn_batch_changes_the_mean_teachers_targets_only():
    """`train.teacher_bn: batch` (the teacher's batch norm on the batch's statistics when it makes targets)
    changes a Mean Teacher run's weights and leaves a supervised run, which asks the teacher for no targets,
    as it was; a value other than running or batch is refused."""
    def weights(method: str, teacher_bn: str) -> bytes:
        student, teacher, _ = train_digits(method, 0, 20, teacher_bn=teacher_bn, eval_every=1000,
                                           checkpoint_every=1000)
        states = [value for model in (student, teacher) for value in model.state_dict().values()]
        return b"".join(value.numpy().tobytes() for value in states)

    assert weights("mean_teacher", "batch") != weights("mean_teacher", "running")
    assert weights("supervised", "batch") == weights("supervised", "running")
    with pytest.raises(ValueError, match="train.teacher_bn 'train'"):
        TrainConfig(teacher_bn="train")


@pytest.mark.parametrize("bn_chunks", BN_CHUNKS)
def test_teacher_bn_batch_makes_targets_in_the_students_chunks(bn_chunks):
    """With `teacher_bn: batch` the teacher makes its targets on exactly the chunks of samples the student's
    batch norm sees (a batch of 16 in chunks of 6: rows 0-5, 6-11, 12-15 consecutive, or every third row
    interleaved); with running statistics, in one pass of the whole batch."""
    torch.manual_seed(0)
    student = DigitsMLP()
    teacher = make_teacher(student)
    rows = {"student": [], "teacher": []}
    for name, model in (("student", student), ("teacher", teacher)):
        model.register_forward_pre_hook(lambda _, inputs, name=name: rows[name].append(inputs[0][:, 0].int().tolist()))
    unlabelled = torch.zeros(16, len(TASKS), dtype=torch.bool)
    unlabelled[8:, TASKS.index("expr")] = True
    batch = {"pixels": torch.arange(16.0).repeat_interleave(64).view(16, 64),  # row i: every pixel i
             "expr": torch.tensor([0] * 8 + [-1] * 8), "unlabelled": unlabelled}

    def chunks(teacher_bn: str) -> dict[str, list[list[int]]]:
        config = TrainConfig(inputs=("pixels",), bn_batch=6, bn_chunks=bn_chunks, teacher_bn=teacher_bn)
        for seen in rows.values():
            seen.clear()
        train_step(student, teacher, torch.optim.Adam(student.parameters()), batch, 0, config, None,
                   torch.device("cpu"), 0)
        return {name: list(seen) for name, seen in rows.items()}

    on_batch = chunks("batch")
    expected = [list(range(i, 16, 3)) for i in range(3)] if bn_chunks == "interleaved" else \
        [list(range(0, 6)), list(range(6, 12)), list(range(12, 16))]
    assert on_batch == {"student": expected, "teacher": expected}
    assert chunks("running") == {"student": expected, "teacher": [list(range(16))]}


def test_train_config_defaults_are_params_yaml():
    """TrainConfig's and DataConfig's defaults are the `train` group of params.yaml, so a test or a script that
    leaves a field out trains as the pipeline does; every key of the group is a field of exactly one of them,
    so every key is type-checked."""
    train = yaml.safe_load((ROOT / "params.yaml").read_text())["train"]
    fields = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    data_fields = {f.name: f.default for f in dataclasses.fields(DataConfig)}
    assert not set(fields) & set(data_fields) and set(data_fields) <= set(train)
    defaults = fields | data_fields
    assert set(train) <= set(defaults), set(train) - set(defaults)
    yaml_values = {name: tuple(value) if isinstance(value, list) else value for name, value in train.items()}
    assert {name: defaults[name] for name in train} == yaml_values


class Interrupted(Exception):
    pass


def test_resume_gives_identical_weights(tmp_path):
    config = TrainConfig(method="mean_teacher", seed=3, steps=30, eval_every=5, checkpoint_every=10,
                         inputs=("pixels",), consistency_rampup=10)
    digits = Digits(seed=3)
    logs = {"whole": [], "resumed": []}

    def run(name: str, stop_at: int | None = None) -> tuple[nn.Module, nn.Module]:
        def on_log(step: int, metrics: dict) -> None:
            logs[name].append((step, metrics))
            if step == stop_at:
                raise Interrupted

        torch.manual_seed(3)
        return fit(DigitsMLP(), digits.batches(16, 0.5, 3, 30), config, teacher_input=gaussian(0.1),
                   validate=lambda model: {"accuracy": digits.accuracy(model)}, on_log=on_log,
                   checkpoint_dir=tmp_path / name, progress=False)

    whole = run("whole")
    with pytest.raises(Interrupted):
        run("resumed", stop_at=25)
    logs["resumed"].clear()
    resumed = run("resumed")
    for a, b in zip(whole, resumed):
        for key, value in a.state_dict().items():
            assert torch.equal(value, b.state_dict()[key]), key
    assert logs["resumed"] == logs["whole"] and len(logs["whole"]) == 6


def ddp_worker(out: Path) -> None:
    """Body of one torchrun process: digits with DDP on gloo, 2 ranks x 8 of each global batch of 16; then
    `train.bn_batch`, which DDP does not take, refused on each rank."""
    torch.distributed.init_process_group("gloo")
    rank, world_size = torch.distributed.get_rank(), torch.distributed.get_world_size()
    digits = Digits(seed=0)
    config = TrainConfig(method="mean_teacher", steps=12, eval_every=6, checkpoint_every=6, inputs=("pixels",))
    logged = {}
    torch.manual_seed(0)
    student, teacher = fit(DigitsMLP(), digits.batches(16, 0.5, 0, 12, rank, world_size), config,
                           teacher_input=gaussian(0.1), validate=lambda model: {"accuracy": digits.accuracy(model)},
                           on_log=lambda step, metrics: logged.update({step: sorted(metrics)}),
                           checkpoint_dir=out / "checkpoints", progress=False)
    torch.save({"student": student.state_dict(), "teacher": teacher.state_dict()}, out / f"rank-{rank}.pt")
    try:
        fit(DigitsMLP(), digits.batches(16, 0.5, 0, 12, rank, world_size), dataclasses.replace(config, bn_batch=4),
            progress=False)
    except ValueError as error:
        logged["refused"] = str(error)
    (out / f"rank-{rank}.json").write_text(json.dumps(logged))
    torch.distributed.destroy_process_group()


def test_torchrun_ddp(tmp_path):
    env = os.environ | {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               str(Path(__file__)), str(tmp_path)]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    ranks = [torch.load(tmp_path / f"rank-{r}.pt", weights_only=True) for r in range(2)]
    parameters = [name for name, _ in DigitsMLP().named_parameters()]
    for key in parameters:  # the students' batch-norm buffers differ: DDP syncs them at the next forward
        assert torch.equal(ranks[0]["student"][key], ranks[1]["student"][key]), key
    for key, value in ranks[0]["teacher"].items():
        assert torch.equal(value, ranks[1]["teacher"][key]), key
    assert (tmp_path / "checkpoints" / "last.pt").is_file()
    ddp_keys = json.loads((tmp_path / "rank-0.json").read_text())
    refused = {rank: json.loads((tmp_path / f"rank-{rank}.json").read_text()).get("refused", "") for rank in (0, 1)}
    assert all(message.startswith("train.bn_batch 4 under torchrun") for message in refused.values()), refused
    assert json.loads((tmp_path / "rank-1.json").read_text()) == {"refused": refused[1]}
    del ddp_keys["refused"]

    digits = Digits(seed=0)
    config = TrainConfig(method="mean_teacher", steps=12, eval_every=6, checkpoint_every=6, inputs=("pixels",))
    single = {}
    fit(DigitsMLP(), digits.batches(16, 0.5, 0, 12), config, teacher_input=gaussian(0.1),
        validate=lambda model: {"accuracy": digits.accuracy(model)},
        on_log=lambda step, metrics: single.update({str(step): sorted(metrics)}), progress=False)
    assert ddp_keys == single and "val/teacher/accuracy" in single["12"]


def trivial_criteria(val: ClipDataset, train: ClipDataset) -> dict[str, float]:
    """Criteria of the trivial predictors on the validation side: the training side's majority expression,
    each AU's training majority, and a constant valence/arousal (CCC 0)."""
    results = evaluate_predictions(val.labels, trivial_predictions(train.labels, len(val)))
    return {task: result["criterion"] for task, result in results.items()}


def check_train_stage(data: Path, project: Path) -> None:
    """Run the `train` stage for 120 steps on the interim and processed data under `data`, in `project`."""
    shutil.copytree(ROOT / "affect", project / "affect", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "stages", project / "stages", ignore=shutil.ignore_patterns("__pycache__"))
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["model"]["width"] = 0.125
    params["train"] |= {"steps": 120, "batch_size": 16, "eval_every": 40, "checkpoint_every": 60, "mel_dropout": 0.0}
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (project / "data").mkdir()
    for name in ("interim", "processed"):
        (project / "data" / name).symlink_to(data / name)
    result = subprocess.run([sys.executable, "-m", "stages.train"], cwd=project, capture_output=True, text=True,
                            env=os.environ | {"OMP_NUM_THREADS": "2"}, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]

    rows, plots = {}, project / "dvclive" / "plots" / "metrics"
    for tsv in sorted(plots.rglob("*.tsv")):
        rows[str(tsv.relative_to(plots).with_suffix(""))] = [float(v) for v in tsv.read_text().split()[3::2]]
    for task in ("expr", "au", "va"):
        assert len(rows[f"train/supervised/{task}"]) == 3 and f"train/consistency/{task}" in rows

    sides = {side: ClipDataset.from_partition(Layout(project / "data"), side=side, **loader_options(params))
             for side in ("train", "val")}
    trivial = trivial_criteria(sides["val"], sides["train"])
    fixed = next(iter(torch.utils.data.DataLoader(
        torch.utils.data.Subset(sides["train"], sides["train"].labelled_indices()[::7][:160]), batch_size=160)))
    with torch.no_grad():
        untrained = supervised_losses(TSAV(width=params["model"]["width"]).eval()(fixed["clip"], fixed["mel"]), fixed)
        trained = supervised_losses(load_model(project / "data/train/student.pt").eval()(fixed["clip"], fixed["mel"]),
                                    fixed)
    for task in ("expr", "au", "va"):
        assert trained[task] < untrained[task], (task, float(trained[task]), float(untrained[task]))
    metrics = json.loads((project / "dvclive" / "metrics.json").read_text())
    for name in ("student", "teacher"):
        model = load_model(project / "data" / "train" / f"{name}.pt")
        criteria = validation(sides["val"], ("clip", "mel"), batch_size=params["train"]["batch_size"])(model)
        assert criteria == pytest.approx(metrics["val"][name], abs=1e-6)
        assert set(criteria) == set(trivial) | {"mean"}


@pytest.mark.parametrize("key, value, message", [
    ("bn_chunks", "strided", "params.yaml: train.bn_chunks 'strided': expected one of ('consecutive', 'interleaved')"),
    ("method", "teacher", "params.yaml: train.method 'teacher': expected one of ('mean_teacher', 'supervised')"),
    ("bn_batch", "abc", "params.yaml: train.bn_batch 'abc': expected an integer"),
    ("lr", "1e-3", "params.yaml: train.lr '1e-3': expected a number"),
    ("batch_size", "abc", "params.yaml: train.batch_size 'abc': expected an integer"),
    ("flip", 2, "params.yaml: train.flip 2: expected a number in [0, 1]"),
])
def test_train_stage_refuses_a_bad_param_in_one_line(tmp_path, key, value, message):
    """A bad `train` value stops the stage with one line naming params.yaml, the key and what it expects, no
    traceback, before it reads any data (the project here has none) or writes anything."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["train"][key] = value
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    result = subprocess.run([sys.executable, "-m", "stages.train"], cwd=tmp_path, capture_output=True, text=True,
                            env=os.environ | {"PYTHONPATH": str(ROOT)}, timeout=300)
    assert result.returncode == 1 and result.stderr.strip() == message, result.stderr[-3000:]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["params.yaml"]


@pytest.mark.slow
def test_train_stage_on_the_demo(demo_pipeline, tmp_path):
    """A short run of the stage on the demo pipeline's data: every task's loss on a fixed set of training
    samples is lower for the trained student than for an untrained model (the per-step losses that dvclive
    logs are too noisy on this little data to compare), and the stage's dvclive log and saved models agree.
    No claim against the trivial predictors on the validation side: until 2026-12-04 the student beat them on
    VA and on the mean criterion, and re-encoding the demo with x264's processor-independent code (a change
    at the level of compression noise) turned its VA from above the trivial 0 to -0.096, so one 120-step run
    does not carry that claim (docs/results.md, "Is the demo a yardstick?"). The run keeps the sound for every
    sample (`train.mel_dropout` 0): in 120 steps the demo's VA is learned from the voice first, and with half
    of the samples silent (the default, for the 2,000-step run) the training VA loss was no lower than an
    untrained model's (1.035 against 0.975)."""
    check_train_stage(demo_pipeline / "data", tmp_path / "project")


if __name__ == "__main__":
    ddp_worker(Path(sys.argv[1]))
