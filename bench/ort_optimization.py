"""CPU time of the bare face models under ONNX Runtime's "all" graph optimisations against the pipeline's
`affect.models.ORT_OPTIMIZATION` ("extended", the same sums on every x86-64 processor), side by side.

`python -m bench.ort_optimization`: one CPU core, one ONNX Runtime thread; the detector (SCRFD 2.5G) on every
frame of the four GRID clips (360x288, 300 frames, detector input 384x288) and the landmark model (PFLD) on
a 112 x 112 window of each frame; the least CPU time of 3 runs (`bench.faces.seconds`). Prints a Markdown
table: frames per second per core and the ratio to "all".
"""

from __future__ import annotations

import os

import cv2
import numpy as np
import onnxruntime as ort

import affect.models
from affect.detect import input_size
from affect.models import ORT_OPTIMIZATION
from affect.video import iter_frames
from bench.faces import GRID, MEDIA, MODELS, seconds

LEVELS = {"all (before)": ort.GraphOptimizationLevel.ORT_ENABLE_ALL, "extended (pipeline)": ORT_OPTIMIZATION}
MODEL_FILES = {"detector": MODELS / "scrfd_2.5g" / "det.onnx", "landmarks": MODELS / "pfld106" / "landmarks.onnx"}


def blobs() -> dict[str, list[np.ndarray]]:
    """Model inputs of every GRID frame: the detector's padded frame and a 112 x 112 landmark window."""
    inputs = {"detector": [], "landmarks": []}
    for name in GRID:
        for image in iter_frames(MEDIA / f"{name}.mpg"):
            width, height = input_size(image.shape[1], image.shape[0], 640)
            canvas = np.zeros((height, width, 3), np.uint8)
            canvas[:image.shape[0], :image.shape[1]] = image[:, :, ::-1]
            inputs["detector"].append(cv2.dnn.blobFromImage(canvas, 1 / 128, (width, height), (127.5,) * 3))
            window = cv2.resize(image[:, :, ::-1], (112, 112), interpolation=cv2.INTER_AREA)
            inputs["landmarks"].append(np.ascontiguousarray(window.transpose(2, 0, 1)[None], np.float32) / 255)
    return inputs


def main() -> None:
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    inputs = blobs()
    times = {}
    for model, path in MODEL_FILES.items():
        for level_name, level in LEVELS.items():
            affect.models.ORT_OPTIMIZATION = level  # ort_session reads it at each call: the pipeline's own session
            session = affect.models.ort_session(path, threads=1)
            affect.models.ORT_OPTIMIZATION = ORT_OPTIMIZATION
            name = session.get_inputs()[0].name
            times[model, level_name] = seconds(lambda: [session.run(None, {name: b}) for b in inputs[model]])
    print("| model | frames | " + " | ".join(f"{level} f/s" for level in LEVELS) + " | time ratio extended / all |")
    print("|---|---:|" + "---:|" * len(LEVELS) + "---:|")
    for model in MODEL_FILES:
        n = len(inputs[model])
        rates = " | ".join(f"{n / times[model, level]:.0f}" for level in LEVELS)
        ratio = times[model, "extended (pipeline)"] / times[model, "all (before)"]
        print(f"| {model} | {n} | {rates} | {ratio:.2f} |")


if __name__ == "__main__":
    main()
