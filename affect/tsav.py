"""TSAV, the two-stream aural-visual base model (docs/method.md, "TSAV"), its initialisation from files, and the
model files the train stage writes.

Visual stream: torchvision's R(2+1)D-18 with a 4-channel stem (RGB + mask). Audio stream: torchvision's
ResNet-18 with a 1-channel first conv on the mel spectrogram. The two pooled features are concatenated,
audio first as in TSAV, and one linear head per task gives 7 expression logits, 12 AU logits and
valence/arousal through tanh. `width` scales the channels of every convolution of both streams (1.0 = TSAV);
the narrow models used on CPU are built by the same code, torchvision's modules with narrower convolutions.

A model file (`save_model`) holds the model's config, its weights and a record of how it was made: the
preprocessing of its inputs, its training parameters and a fingerprint of its training data
(`affect.pipeline.model_record`). A file without the record cannot be used to predict: nothing says which
inputs it expects.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torchvision
from torch import nn

from affect.schema import AUS, EXPRESSIONS
from affect.shards import atomic_path

# TSAV's single 17-output head (ABAW2020): expression logits [0:7], valence/arousal [7:9], these 8 AUs [9:17].
TSAV_AUS = ("AU1", "AU2", "AU4", "AU6", "AU12", "AU15", "AU20", "AU25")
# Prefixes of TSAV's TwoStreamAuralVisualModel state dict and the matching submodules here.
TSAV_PREFIXES = {"audio_model.resnet.": "audio.", "video_model.r2plus1d.": "video."}


def _channels(n: int, width: float) -> int:
    return max(1, round(n * width))


def _narrow(network: nn.Module, width: float) -> None:
    """Replace every convolution and batch norm of `network` with a fresh one of `width` times the channels."""
    for parent in list(network.modules()):
        for name, child in parent.named_children():
            if isinstance(child, (nn.Conv2d, nn.Conv3d)):
                narrow = type(child)(_channels(child.in_channels, width), _channels(child.out_channels, width),
                                     child.kernel_size, stride=child.stride, padding=child.padding,
                                     bias=child.bias is not None)
                setattr(parent, name, narrow)
            elif isinstance(child, (nn.BatchNorm2d, nn.BatchNorm3d)):
                setattr(parent, name, type(child)(_channels(child.num_features, width)))


def _first_conv(conv: nn.Conv2d | nn.Conv3d, in_channels: int) -> nn.Conv2d | nn.Conv3d:
    """`conv` taking `in_channels` input channels."""
    return type(conv)(in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride, padding=conv.padding,
                      bias=conv.bias is not None)


class TSAV(nn.Module):
    """forward(clip (B,4,L,112,112), mel (B,1,n_mels,W)) -> {"expr": (B,7), "au": (B,12), "va": (B,2) in [-1,1]}."""

    def __init__(self, width: float = 1.0, n_mels: int = 64):
        super().__init__()
        self.config = {"width": width, "n_mels": n_mels}
        self.video = torchvision.models.video.r2plus1d_18()
        self.audio = torchvision.models.resnet18()
        _narrow(self.video, width)
        _narrow(self.audio, width)
        self.video.stem[0] = _first_conv(self.video.stem[0], 4)
        self.audio.conv1 = _first_conv(self.audio.conv1, 1)
        features = _channels(512, width)
        self.video.fc = nn.Identity()
        self.audio.fc = nn.Identity()
        self.expr = nn.Linear(2 * features, len(EXPRESSIONS))
        self.au = nn.Linear(2 * features, len(AUS))
        self.va = nn.Linear(2 * features, 2)
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Conv3d)):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, (nn.BatchNorm2d, nn.BatchNorm3d)):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, clip: torch.Tensor, mel: torch.Tensor) -> dict[str, torch.Tensor]:
        features = torch.cat([self.audio(mel), self.video(clip)], dim=1)
        return {"expr": self.expr(features), "au": self.au(features), "va": torch.tanh(self.va(features))}


def _fit_report(state: dict[str, torch.Tensor], own: dict[str, torch.Tensor]) -> list[str]:
    """One line per key of `state` or `own` that is missing on either side or differs in shape."""
    lines = [f"{key}: checkpoint {tuple(value.shape)}, model {tuple(own[key].shape)}"
             for key, value in state.items() if key in own and value.shape != own[key].shape]
    lines += [f"{key}: not in the model" for key in state if key not in own]
    lines += [f"{key}: not in the checkpoint" for key in own if key not in state]
    return sorted(lines)


def _load_fitting(model: TSAV, state: dict[str, torch.Tensor], path: str | os.PathLike) -> None:
    """Load `state` (keys of `model`, heads excluded) into `model`, or raise naming every mismatched key."""
    own = {key: value for key, value in model.state_dict().items() if key.startswith(("video.", "audio."))}
    mismatched = _fit_report(state, own)
    if mismatched:
        raise ValueError(f"{path}: does not fit TSAV({model.config}); mismatched keys:\n  " + "\n  ".join(mismatched))
    model.load_state_dict(state, strict=False)


def load_kinetics(model: TSAV, path: str | os.PathLike) -> None:
    """Initialise the visual stream from torchvision's Kinetics-400 r2plus1d_18 state dict (RGB of the stem copied)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    video = {f"video.{key}": value for key, value in state.items() if not key.startswith("fc.")}
    stem = model.video.stem[0].weight.detach().clone()
    rgb = video.get("video.stem.0.weight")
    if rgb is not None and rgb.shape == stem[:, :3].shape:
        stem[:, :3] = rgb
        video["video.stem.0.weight"] = stem
    own_audio = {key: value for key, value in model.state_dict().items() if key.startswith("audio.")}
    _load_fitting(model, video | own_audio, path)


def load_tsav(model: TSAV, path: str | os.PathLike) -> None:
    """Initialise from a TSAV checkpoint (`state_dict` key): both streams, expression and VA rows of its head,
    its 8 ABAW2020 AUs onto the matching ABAW2 AUs; the other AU rows stay fresh."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    if "state_dict" not in checkpoint:
        raise ValueError(f"{path}: not a TSAV checkpoint (no 'state_dict' key; keys: {sorted(checkpoint)[:10]})")
    state = {key.removeprefix("module."): value for key, value in checkpoint["state_dict"].items()}
    head_weight, head_bias = state.pop("fc.1.weight", None), state.pop("fc.1.bias", None)
    streams = {}
    for key, value in state.items():
        prefix = next((p for p in TSAV_PREFIXES if key.startswith(p)), None)
        streams[TSAV_PREFIXES[prefix] + key.removeprefix(prefix) if prefix else key] = value
    _load_fitting(model, streams, path)
    if head_weight is None or head_weight.shape != (17, model.expr.in_features):
        shape = None if head_weight is None else tuple(head_weight.shape)
        raise ValueError(f"{path}: TSAV head fc.1.weight is {shape}, expected (17, {model.expr.in_features})")
    with torch.no_grad():
        model.expr.weight.copy_(head_weight[0:7])
        model.expr.bias.copy_(head_bias[0:7])
        model.va.weight.copy_(head_weight[7:9])
        model.va.bias.copy_(head_bias[7:9])
        for row, au in enumerate(TSAV_AUS):
            if au in AUS:
                model.au.weight[AUS.index(au)] = head_weight[9 + row]
                model.au.bias[AUS.index(au)] = head_bias[9 + row]


def init_model(model: TSAV, init: str) -> None:
    """Apply the `model.init` parameter: `none`, `kinetics:<path>` or `tsav:<path>`."""
    kind, _, path = init.partition(":")
    if kind == "none":
        return
    if kind not in ("kinetics", "tsav") or not path:
        raise ValueError(f"model.init {init!r}: expected none, kinetics:<path> or tsav:<path>")
    if not Path(path).is_file():
        raise FileNotFoundError(f"model.init {init!r}: {path} is not a file")
    (load_kinetics if kind == "kinetics" else load_tsav)(model, path)


class CheckpointError(ValueError):
    """A model file that cannot be used; the message names it and says what to do."""


def save_model(model: TSAV, path: str | os.PathLike, record: dict) -> None:
    """Write the model's config, state dict and `record` (how it was made), atomically; `load_checkpoint`
    reads them back."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:  # a file object: the archive's inner name does not depend on the file name
            torch.save({"config": model.config, "state_dict": model.state_dict(), "record": record}, f)


def load_checkpoint(path: str | os.PathLike) -> tuple[TSAV, dict]:
    """(the TSAV saved by `save_model` at `path`, in eval mode; its record). CheckpointError for a file that is
    not such a model, or one saved without a record."""
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several kinds for a file that is not a checkpoint
        raise CheckpointError(f"{path}: not a model file saved by the train stage ({type(e).__name__})") from None
    if not isinstance(saved, dict) or not {"config", "state_dict"} <= set(saved):
        raise CheckpointError(f"{path}: not a model file saved by the train stage")
    if "record" not in saved:
        raise CheckpointError(f"{path}: an old model file without the record of its preprocessing and training; "
                              f"retrain it (`dvc repro train`) with this version of affect")
    model = TSAV(**saved["config"])
    model.load_state_dict(saved["state_dict"])
    return model.eval(), saved["record"]


def load_model(path: str | os.PathLike) -> TSAV:
    """The TSAV saved by `save_model` at `path`, in eval mode (see `load_checkpoint`)."""
    return load_checkpoint(path)[0]
