"""The demo's source faces: their 106 landmarks, measured once with the project's own models and committed.

`python -m affect.synth_faces [MODELS_DIR]` runs the project's SCRFD detector and PFLD-106 landmark model
(from MODELS_DIR, default data/models, as the `models` stage writes it) on the source photos of
`affect.synth` and writes `affect/synth_faces.json`. The demo generator reads that file and runs no model,
so the demo is the same on every machine (ONNX Runtime's kernels differ in the last bits between
processors) and its stage does not depend on data/models. Rerun it only when the source photos or the
models change, and commit the file.
"""

from __future__ import annotations

import json
import logging
import os
import sys

import numpy as np

from affect.detect import FaceDetector
from affect.exact import apply_affine, on_grid
from affect.landmarks import LandmarkModel
from affect.models import model_file
from affect.shards import atomic_path
from affect.synth import (EYE_CORNERS, LANDMARK_STEP, MAX_TURN, PORTRAIT_IOD, SOURCE_LANDMARKS, _portrait,
                          source_photos)

log = logging.getLogger(__name__)


def measure_source_landmarks(detector: FaceDetector, landmark_model: LandmarkModel,
                             size: tuple[int, int] = (256, 256)) -> list[dict]:
    """The 106 landmarks of every usable face of the source photos and of their mirror images, in pixels of
    the (mirrored) photo, on a LANDMARK_STEP grid: what SOURCE_LANDMARKS holds.

    Each face is found in the photo, warped upright into a `size` portrait, found again there (more
    accurate on an upright face) and its landmarks mapped back to the photo. Faces turned further than
    MAX_TURN are left out (logged).
    """
    faces = []
    for photo_name, photo in source_photos():
        boxes, _ = detector.detect(photo)
        for k, box in enumerate(boxes[np.argsort(boxes[:, 0], kind="stable")]):
            for flip in (False, True):
                name = f"{photo_name}-{k}" + ("-flip" if flip else "")
                image = np.ascontiguousarray(photo[:, ::-1]) if flip else photo
                x1, x2 = (photo.shape[1] - box[2], photo.shape[1] - box[0]) if flip else (box[0], box[2])
                first = landmark_model.predict_in_box(image, np.array([x1, box[1], x2, box[3]]))
                portrait, matrix = _portrait(image, first, size)
                found, _ = detector.detect(portrait)
                if len(found) == 0:
                    log.warning("%s: no face in its portrait; not used", name)
                    continue
                centre = np.array(size) / 2
                best = found[np.argmin(np.hypot(*(((found[:, :2] + found[:, 2:4]) / 2 - centre).T)))]
                lm = landmark_model.predict_in_box(portrait, best)
                turn = abs(lm[86, 0] - lm[EYE_CORNERS, 0].mean()) / (PORTRAIT_IOD * size[0])
                if turn > MAX_TURN:
                    log.info("%s: head turned (nose %.2f eye distances off centre); not used", name, turn)
                    continue
                back = np.linalg.inv(np.vstack([matrix, [0, 0, 1]]))[:2]
                faces.append({"photo": photo_name, "face": k, "flip": flip,
                              "landmarks": on_grid(apply_affine(back, lm), LANDMARK_STEP).tolist()})
    if not faces:
        raise RuntimeError("the detector found no face in the source photos")
    return faces


def write_source_landmarks(models_dir: str | os.PathLike = "data/models", path: str | os.PathLike = SOURCE_LANDMARKS,
                           detector: str = "scrfd_2.5g", landmarks: str = "pfld106") -> None:
    """Measure the source faces' landmarks with the project's own models and write them to `path` (JSON)."""
    det = FaceDetector(model_file(detector, "det", models_dir), det_size=640, threshold=0.5)
    lmk = LandmarkModel(model_file(landmarks, "landmarks", models_dir))
    faces = measure_source_landmarks(det, lmk)
    text = json.dumps({"detector": detector, "landmarks": landmarks, "step_px": LANDMARK_STEP,
                       "faces": faces}, separators=(",", ":"))
    with atomic_path(path) as tmp:
        tmp.write_text(text.replace('{"photo"', '\n{"photo"') + "\n")


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(name)s %(levelname)s %(message)s")
    write_source_landmarks(sys.argv[1] if len(sys.argv) > 1 else "data/models")
    print(f"{SOURCE_LANDMARKS} written")
