"""The GPU path of the face models: ONNX Runtime's CUDA provider (executor.providers: cuda | auto).

Where this ONNX Runtime has a CUDA provider (onnxruntime-gpu on a machine with an NVIDIA GPU) the detector and
the landmark model run on both providers, on real photographs, and must agree within TOLERANCE_PX; elsewhere
that test is skipped, saying why. The choice of providers itself is tested everywhere, and so is the
training step's channels-last 3D path (on the CPU).
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch

from affect.detect import FaceDetector
from affect.images import decode_image
from affect.landmarks import LandmarkModel
from affect.models import ModelError, execution_providers, model_file
from affect.train import TrainConfig, fit
from affect.tsav import TSAV

HAS_CUDA = "CUDAExecutionProvider" in ort.get_available_providers()
NO_CUDA = ("ONNX Runtime has no CUDAExecutionProvider here (needs an NVIDIA GPU and onnxruntime-gpu in place of "
           "onnxruntime: README, GPU)")
TOLERANCE_PX = 1.0    # boxes, keypoints and landmarks: CUDA against CPU, pixels of the image
SCORE_TOLERANCE = 0.01
IMAGES = ("pyfeat_multi_face.jpg", "insightface_t1.jpg", "pyfeat_single_face.jpg")


def faces(media, models_dir, providers: str) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(boxes, keypoints, landmarks of each box) per image of IMAGES, with the models on `providers`."""
    detector = FaceDetector(model_file("scrfd_2.5g", "det", models_dir), 640, 0.5, providers=providers)
    landmarks = LandmarkModel(model_file("pfld106", "landmarks", models_dir), providers=providers)
    out = []
    for name in IMAGES:
        image = decode_image((media / "images" / name).read_bytes())
        boxes, kps = detector.detect(image)
        out.append((boxes, kps, np.stack([landmarks.predict_in_box(image, box) for box in boxes])))
    return out


def test_provider_choice():
    assert execution_providers("cpu") == ["CPUExecutionProvider"]
    assert execution_providers("auto")[0] == ("CUDAExecutionProvider" if HAS_CUDA else "CPUExecutionProvider")
    if not HAS_CUDA:
        with pytest.raises(ModelError, match="no CUDA provider.*onnxruntime-gpu"):
            execution_providers("cuda")
    with pytest.raises(ValueError, match="executor.providers must be one of cpu, cuda, auto, not 'gpu'"):
        execution_providers("gpu")


@pytest.mark.skipif(not HAS_CUDA, reason=NO_CUDA)
def test_cuda_agrees_with_the_cpu_within_tolerance(media, models_dir):
    cpu, cuda = faces(media, models_dir, "cpu"), faces(media, models_dir, "cuda")
    for name, (boxes, kps, points), (boxes_gpu, kps_gpu, points_gpu) in zip(IMAGES, cpu, cuda):
        assert len(boxes) == len(boxes_gpu) > 0, name
        np.testing.assert_allclose(boxes_gpu[:, :4], boxes[:, :4], atol=TOLERANCE_PX, err_msg=name)
        np.testing.assert_allclose(boxes_gpu[:, 4], boxes[:, 4], atol=SCORE_TOLERANCE, err_msg=name)
        np.testing.assert_allclose(kps_gpu, kps, atol=TOLERANCE_PX, err_msg=name)
        np.testing.assert_allclose(points_gpu, points, atol=TOLERANCE_PX, err_msg=name)


def test_auto_runs_the_comparison_on_what_is_here(media, models_dir):
    """`auto` picks CUDA where there is one; on a CPU-only machine it is the CPU, bit for bit."""
    auto = faces(media, models_dir, "auto")
    assert all(len(boxes) for boxes, _, _ in auto)
    if not HAS_CUDA:
        for got, want in zip(auto, faces(media, models_dir, "cpu")):
            for a, b in zip(got, want):
                np.testing.assert_array_equal(a, b)


def test_channels_last_training_gives_the_same_weights_on_the_cpu():
    """The channels-last 3D path of `fit` (params.yaml gpu.channels_last, used on CUDA) run on the CPU: the same
    weights as the default layout, up to float rounding: Adam turns a rounding difference in a near-zero
    gradient into as much as one step of lr, so two steps may differ by 2 lr (1e-3; a weight scrambled by a
    wrong layout differs by its own size, ~0.1)."""
    generator = torch.Generator().manual_seed(0)
    batch = {"clip": torch.randn(4, 4, 4, 32, 32, generator=generator),
             "mel": torch.randn(4, 1, 64, 51, generator=generator),
             "expr": torch.tensor([0, 3, -1, -1]), "au": torch.cat([torch.ones(2, 12), -torch.ones(2, 12)]),
             "va": torch.tensor([[0.1, -0.2], [0.5, 0.3], [float("nan")] * 2, [float("nan")] * 2]),
             "unlabelled": torch.tensor([[False] * 3, [False] * 3, [True] * 3, [True] * 3])}
    config = TrainConfig(method="mean_teacher", steps=2, eval_every=10**9, checkpoint_every=10**9)
    weights = []
    for channels_last in (False, True):
        torch.manual_seed(0)
        student, teacher = fit(TSAV(width=0.125), lambda start: (batch for _ in range(start, 2)), config,
                               progress=False, channels_last=channels_last)
        weights.append((student.state_dict(), teacher.state_dict()))
    assert any(p.is_contiguous(memory_format=torch.channels_last_3d) and not p.is_contiguous()
               for p in student.parameters() if p.dim() == 5)
    for plain, last in zip(*weights):
        for key, value in plain.items():
            torch.testing.assert_close(last[key], value, rtol=0, atol=2 * config.lr, msg=lambda m: f"{key}: {m}")
