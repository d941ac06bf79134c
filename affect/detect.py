"""Face detection with an InsightFace SCRFD model (boxes + 5 keypoints), one ONNX Runtime thread."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
from insightface.model_zoo.scrfd import SCRFD

from affect.exact import on_grid
from affect.models import ort_session

POINT_STEP = 1 / 8      # px: grid of box corners and keypoints
SCORE_STEP = 2.0 ** -12  # grid of detection scores


def input_size(width: int, height: int, det_size: int) -> tuple[int, int]:
    """Detector input (width, height): the frame scaled down to fit `det_size`, each side rounded up to 32."""
    scale = min(1.0, det_size / max(width, height))
    return (32 * math.ceil(width * scale / 32), 32 * math.ceil(height * scale / 32))


class FaceDetector:
    """SCRFD on RGB frames: `detect(image)` -> boxes (N,5) x1,y1,x2,y2,score and keypoints (N,5,2), best first.
    `providers`: cpu | cuda | auto (`affect.models.execution_providers`).

    Positions are put on a POINT_STEP grid and scores on SCORE_STEP (`affect.exact`): ONNX Runtime's
    kernels differ in the last bits between processors, and the grid keeps that noise out of the crops and
    the stored columns (a value changes only when it lies within that noise of a grid boundary).
    """

    def __init__(self, model_path: str | os.PathLike, det_size: int = 640, threshold: float = 0.5,
                 threads: int = 1, providers: str = "cpu"):
        path = Path(model_path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: detector model not found")
        self.det_size = det_size
        self.threshold = threshold
        self.model = SCRFD(model_file=str(path), session=ort_session(path, threads, providers))
        self.model.prepare(-1, det_thresh=threshold, nms_thresh=0.4)

    def detect(self, image_rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Faces in one RGB uint8 image, sorted by score (highest first)."""
        height, width = image_rgb.shape[:2]
        size = input_size(width, height, self.det_size)
        boxes, kps = self.model.detect(np.ascontiguousarray(image_rgb[:, :, ::-1]), input_size=size)
        if kps is None:
            kps = np.zeros((len(boxes), 5, 2), np.float32)
        order = np.argsort(-boxes[:, 4], kind="stable")
        boxes = np.concatenate([on_grid(boxes[order, :4], POINT_STEP), on_grid(boxes[order, 4:], SCORE_STEP)], 1)
        return boxes.astype(np.float32), on_grid(kps[order], POINT_STEP).astype(np.float32)
