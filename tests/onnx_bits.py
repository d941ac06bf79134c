"""Run the pipeline's face models through `affect.models.ort_session` on a real photograph and print the sha256
of their raw outputs, before any grid.

`python -m tests.onnx_bits MODELS_DIR IMAGE` (run by tests/test_reproducible.py, natively and under
`qemu-x86_64 -cpu MODEL`, which shows ONNX Runtime another processor's CPUID: another vendor, no AVX-512, so
its kernels are chosen for AVX2). The detector (SCRFD 2.5g) sees the photograph at 160 x 160, the landmark
model (PFLD) at its 112 x 112 input. Prints one JSON object {"scrfd_2.5g", "pfld106": sha256}.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import cv2
import numpy as np

from affect.models import model_file, ort_session

INPUTS = {("scrfd_2.5g", "det"): 160, ("pfld106", "landmarks"): 112}  # (model, role) -> input side, px


def raw_outputs(path: Path, image_bgr: np.ndarray, side: int) -> list[np.ndarray]:
    """Every output of the model at `path` for `image_bgr` resized to `side` x `side` (NCHW float32, 0..1)."""
    session = ort_session(path)
    window = cv2.resize(image_bgr, (side, side), interpolation=cv2.INTER_AREA)
    blob = np.ascontiguousarray(window.transpose(2, 0, 1)[None], np.float32) / 255.0
    return session.run(None, {session.get_inputs()[0].name: blob})


def main() -> None:
    models_dir, image = Path(sys.argv[1]), cv2.imread(sys.argv[2])
    digests = {}
    for (name, role), side in INPUTS.items():
        outputs = raw_outputs(model_file(name, role, models_dir), image, side)
        digests[name] = hashlib.sha256(b"".join(np.ascontiguousarray(o).tobytes() for o in outputs)).hexdigest()
    print(json.dumps(digests))


if __name__ == "__main__":
    main()
