"""TSAV: the two torchvision streams at any width, initialisation from files, save and rebuild."""

import shutil
from pathlib import Path

import pytest
import torch
import torchvision

import affect
from affect.pipeline import PREPROCESSING, code_fingerprint, disagreements, model_record
from affect.schema import AUS
from affect.tsav import (TSAV, TSAV_AUS, CheckpointError, init_model, load_checkpoint, load_kinetics, load_model,
                         load_tsav, save_model)
from tests.pipeline import params

WIDTH = 0.125


@pytest.fixture(scope="module")
def small() -> TSAV:
    torch.manual_seed(0)
    return TSAV(width=WIDTH)


def inputs(batch: int = 2, frames: int = 4, columns: int = 101) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return (torch.randn(batch, 4, frames, 112, 112, generator=generator),
            torch.randn(batch, 1, 64, columns, generator=generator))


def test_outputs_one_head_per_task(small):
    clip, mel = inputs()
    outputs = small.eval()(clip, mel)
    shapes = {task: tuple(value.shape) for task, value in outputs.items()}
    assert shapes == {"expr": (2, 7), "au": (2, 12), "va": (2, 2)}
    assert outputs["va"].abs().max() <= 1
    assert small.video.stem[0].in_channels == 4 and small.audio.conv1.in_channels == 1
    assert small.expr.in_features == 2 * round(512 * WIDTH)


def test_full_width_is_torchvision_layout():
    video = torchvision.models.video.r2plus1d_18().state_dict()
    audio = torchvision.models.resnet18().state_dict()
    model = TSAV(width=1.0).state_dict()
    for prefix, reference in (("video.", video), ("audio.", audio)):
        for key, value in reference.items():
            if key.startswith("fc."):
                continue
            expected = value.shape
            if key == "stem.0.weight":
                expected = (45, 4, 1, 7, 7)
            if key == "conv1.weight":
                expected = (64, 1, 7, 7)
            assert model[prefix + key].shape == expected, key


def test_kinetics_weights_fill_rgb_and_leave_the_mask_channel(tmp_path):
    torch.manual_seed(0)
    kinetics = torchvision.models.video.r2plus1d_18().state_dict()
    path = tmp_path / "r2plus1d_18.pth"
    torch.save(kinetics, path)
    model = TSAV(width=1.0)
    mask_before = model.video.stem[0].weight[:, 3].clone()
    audio_before = model.audio.conv1.weight.clone()
    load_kinetics(model, path)
    assert torch.equal(model.video.stem[0].weight[:, :3], kinetics["stem.0.weight"])
    assert torch.equal(model.video.stem[0].weight[:, 3], mask_before)
    assert torch.equal(model.video.layer3[1].conv2[0][0].weight, kinetics["layer3.1.conv2.0.0.weight"])
    assert torch.equal(model.video.layer1[0].conv1[1].running_var, kinetics["layer1.0.conv1.1.running_var"])
    assert torch.equal(model.audio.conv1.weight, audio_before)


def test_kinetics_weights_do_not_fit_a_narrow_model(tmp_path):
    path = tmp_path / "r2plus1d_18.pth"
    torch.save(torchvision.models.video.r2plus1d_18().state_dict(), path)
    expected = r"(?s)r2plus1d_18.pth: does not fit.*video.layer1.0.conv1.0.0.weight: checkpoint"
    with pytest.raises(ValueError, match=expected):
        load_kinetics(TSAV(width=WIDTH), path)


def tsav_checkpoint(model: TSAV) -> dict:
    """A checkpoint in the layout of TSAV's TwoStreamAuralVisualModel, made from `model`'s streams."""
    state = {}
    for key, value in model.state_dict().items():
        if key.startswith("video."):
            state["video_model.r2plus1d." + key.removeprefix("video.")] = value
        elif key.startswith("audio."):
            state["audio_model.resnet." + key.removeprefix("audio.")] = value
    state["fc.1.weight"] = torch.randn(17, model.expr.in_features)
    state["fc.1.bias"] = torch.randn(17)
    return {"state_dict": state, "epoch": 3}


def test_tsav_checkpoint_maps_head_rows(tmp_path, small):
    checkpoint = tsav_checkpoint(small)
    path = tmp_path / "TSAV.pth.tar"
    torch.save(checkpoint, path)
    torch.manual_seed(5)
    model = TSAV(width=WIDTH)
    fresh = model.au.weight.clone()
    init_model(model, f"tsav:{path}")
    head, bias = checkpoint["state_dict"]["fc.1.weight"], checkpoint["state_dict"]["fc.1.bias"]
    assert torch.equal(model.video.layer2[0].downsample[0].weight, small.video.layer2[0].downsample[0].weight)
    assert torch.equal(model.audio.layer4[1].bn2.running_mean, small.audio.layer4[1].bn2.running_mean)
    assert torch.equal(model.expr.weight, head[0:7]) and torch.equal(model.expr.bias, bias[0:7])
    assert torch.equal(model.va.weight, head[7:9]) and torch.equal(model.va.bias, bias[7:9])
    for row, au in enumerate(TSAV_AUS):
        if au in AUS:
            assert torch.equal(model.au.weight[AUS.index(au)], head[9 + row]), au
    for k, au in enumerate(AUS):
        if au not in TSAV_AUS:
            assert torch.equal(model.au.weight[k], fresh[k]), au
    assert sum(au in AUS for au in TSAV_AUS) == 7  # AU20 is not an ABAW2 AU


def test_tsav_checkpoint_that_does_not_fit_names_keys(tmp_path, small):
    checkpoint = tsav_checkpoint(small)
    del checkpoint["state_dict"]["video_model.r2plus1d.layer4.1.conv2.1.bias"]
    checkpoint["state_dict"]["video_model.r2plus1d.extra.weight"] = torch.zeros(1)
    path = tmp_path / "broken.pth.tar"
    torch.save(checkpoint, path)
    with pytest.raises(ValueError) as error:
        load_tsav(TSAV(width=WIDTH), path)
    message = str(error.value)
    assert "broken.pth.tar" in message
    assert "video.layer4.1.conv2.1.bias: not in the checkpoint" in message
    assert "video.extra.weight: not in the model" in message
    with pytest.raises(ValueError, match="does not fit"):
        load_tsav(TSAV(width=0.25), tmp_path / "broken.pth.tar")


def test_init_spec_errors(tmp_path):
    model = TSAV(width=WIDTH)
    with pytest.raises(ValueError, match="expected none"):
        init_model(model, "imagenet:x.pth")
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        init_model(model, f"kinetics:{tmp_path / 'missing.pth'}")


def test_save_and_load_rebuild_the_same_model(tmp_path, small):
    path = tmp_path / "student.pt"
    save_model(small, path, model_record(params(), data="0" * 64))
    save_model(small, tmp_path / "again.pt", model_record(params(), data="0" * 64))
    assert path.read_bytes() == (tmp_path / "again.pt").read_bytes()
    rebuilt = load_model(path)
    assert rebuilt.config == {"width": WIDTH, "n_mels": 64}
    clip, mel = inputs()
    small.eval()
    for task, value in small(clip, mel).items():
        assert torch.equal(rebuilt(clip, mel)[task], value)


def test_a_model_file_records_how_it_was_made(tmp_path, small):
    """The record holds every preprocessing key (detector, landmark model, mask style, crop size, clip and
    audio parameters), the model and train groups and the data fingerprint; `disagreements` names the keys a
    params.yaml changes; a file saved without a record is refused in one line."""
    changed = params({"mask": {"style": "tsav_lines"}, "clip": {"length": 8}, "align": {"detector": "scrfd_500m"},
                      "train": {"lr": 0.001}})
    path = tmp_path / "teacher.pt"
    save_model(small, path, model_record(changed, data="ab" * 32))
    _, record = load_checkpoint(path)
    assert set(record) == {"preprocessing", "model", "train", "data", "code"} and record["data"] == "ab" * 32
    assert record["code"] == code_fingerprint()
    assert set(record["preprocessing"]) == set(PREPROCESSING)
    assert {"align.detector", "landmarks.model", "mask.style", "align.crop_size", "clip.length", "clip.dilation",
            "clip.anchor", "audio.sample_rate", "audio.n_mels", "audio.mean", "audio.std"} <= set(PREPROCESSING)
    assert record["preprocessing"]["mask.style"] == "tsav_lines" and record["train"]["lr"] == 0.001
    assert record["model"] == changed["model"]
    assert disagreements(record, changed) == []
    assert disagreements(record, params()) == ["align.detector: model 'scrfd_500m', params 'scrfd_2.5g'",
                                               "mask.style: model 'tsav_lines', params 'regions'",
                                               "clip.length: model 8, params 4"]
    old = tmp_path / "old.pt"
    torch.save({"config": small.config, "state_dict": small.state_dict()}, old)
    with pytest.raises(CheckpointError, match=r"old.pt: an old model file without the record .*retrain it"):
        load_model(old)


def test_the_code_fingerprint_changes_with_the_training_code_only(tmp_path):
    """A model record's `code`: the same for a copy of the package; another for a one-character edit of a module
    training imports, even indirectly (losses.py; video.py through the pipeline's steps), or for a new module it
    comes to import, so the train stage never resumes (or takes as finished) a checkpoint made under other code.
    An edit of a module training does not import (evaluate.py), or a module nobody imports, changes nothing."""
    package = Path(affect.__file__).parent
    copy = tmp_path / "affect"
    shutil.copytree(package, copy, ignore=shutil.ignore_patterns("__pycache__"))
    original = code_fingerprint()
    assert code_fingerprint(copy) == code_fingerprint(package) == original
    evaluate = copy / "evaluate.py"
    evaluate.write_text(evaluate.read_text() + " ")
    (copy / "extra.py").write_text("X = 1\n")
    assert code_fingerprint(copy) == original
    fingerprints = {original}
    for edited in ("losses.py", "video.py"):
        (copy / edited).write_text((copy / edited).read_text() + " ")
        fingerprints.add(code_fingerprint(copy))
    (copy / "train.py").write_text((copy / "train.py").read_text() + "from affect.extra import X\n")
    fingerprints.add(code_fingerprint(copy))
    (copy / "extra.py").write_text("X = 2\n")
    fingerprints.add(code_fingerprint(copy))
    assert len(fingerprints) == 5
