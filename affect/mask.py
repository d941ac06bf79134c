"""Face masks rendered from 106 landmarks: `regions` (the paper: filled face parts) or `tsav_lines` (TSAV).

Face parts are a table of point indices in the 106-point numbering that PFLD-106 and InsightFace's 2d106det
share (FACE_PARTS). `left` / `right` mean left / right in the image. Polygons list their points in drawing
order. `masks_part` is the masks stage of one part; a chunk of landmarks rows is one unit of work.

`tsav_lines` is TSAV's mask as TSAV draws it: `draw_mask` in kuhnkeF/ABAW2020TNT, `face_alignment.py`
(the code released with Kuhnke et al., "Two-Stream Aural-Visual Affect Analysis in the Wild", FG 2020).
It draws seven 1-pixel polylines of 68-point (iBUG) landmarks, rounded to whole pixels, in this order and
grey level; each part is mapped here to the 106-point numbering with the same number of points:

| TSAV part (68-point indices)      | grey | closed | 106-point indices (image order)             |
|-----------------------------------|------|--------|---------------------------------------------|
| mouth_outer 48..59 (12)           | 255  | yes    | lips: 52 64 63 71 67 68 61 58 59 53 56 55    |
| left_eyebrow 17..21 (5)           | 223  | no     | 43 48 49 51 50 (upper edge, outer to inner) |
| right_eyebrow 22..26 (5)          | 191  | no     | 102 103 104 105 101 (inner to outer)        |
| left_eye 36..41 (6)               | 159  | yes    | 35 41 42 39 37 36 (corner, upper, corner, lower) |
| right_eye 42..47 (6)              | 127  | yes    | 89 95 96 93 91 90                           |
| nose_bridge 28..30 (3, no root 27)| 63   | no     | 73 74 86 (72, the root, left out)           |
| chin 6..10 (5)                    | 31   | no     | 5 7 0 23 21                                 |

The 68-point jaw (0..16) samples the same temple-to-temple contour as the 106-point one (33 points, every
other point), so jaw point j is the 2j-th point of `face_contour`: the chin 6..10 is its points 12..20 in
steps of 2. The 68-point eye has two lid points above and below where the 106-point eye has three; the
outer two of each lid are kept. Later parts overwrite earlier ones where they cross, as in TSAV.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import cv2
import numpy as np
import pyarrow as pa

from affect.images import encode_png
from affect.parallel import map_shards
from affect.qa import gallery
from affect.schema import CROP_SIZE, MASKS, N_LANDMARKS, Layout
from affect.shards import read_shards

# The 106-point numbering of PFLD-106 and InsightFace 2d106det (checked by plotting numbered points on a face).
FACE_PARTS: dict[str, list[int]] = {
    "face_contour": [1, 9, 10, 11, 12, 13, 14, 15, 16, 2, 3, 4, 5, 6, 7, 8, 0,
                     24, 23, 22, 21, 20, 19, 18, 32, 31, 30, 29, 28, 27, 26, 25, 17],  # temple to temple
    "left_brow": [43, 48, 49, 51, 50, 46, 47, 45, 44],       # outline, upper edge first (outer to inner)
    "right_brow": [102, 103, 104, 105, 101, 100, 99, 98, 97],  # outline, upper edge first (inner to outer)
    "left_eye": [35, 41, 40, 42, 39, 37, 33, 36],
    "right_eye": [89, 95, 94, 96, 93, 91, 87, 90],
    "nose": [72, 81, 82, 83, 84, 85, 80, 79, 78, 77, 76, 75],  # root, wings, base
    "lips": [52, 64, 63, 71, 67, 68, 61, 58, 59, 53, 56, 55],  # outer lip line
    "inner_mouth": [65, 66, 62, 70, 69, 57, 60, 54],           # inner lip line
    # TSAV's 68-point parts (module docstring)
    "tsav_left_brow": [43, 48, 49, 51, 50],
    "tsav_right_brow": [102, 103, 104, 105, 101],
    "tsav_left_eye": [35, 41, 42, 39, 37, 36],
    "tsav_right_eye": [89, 95, 96, 93, 91, 90],
    "tsav_nose_bridge": [73, 74, 86],
    "tsav_chin": [5, 7, 0, 23, 21],
}

# regions: filled polygons, drawn in this order (later parts over earlier ones); "face" is the convex hull of
# the contour and the brows.
REGIONS = [("face", 40), ("nose", 80), ("left_brow", 110), ("right_brow", 130), ("left_eye", 160),
           ("right_eye", 180), ("lips", 215), ("inner_mouth", 255)]
# tsav_lines: TSAV's 1-pixel polylines (part, grey level, closed) in TSAV's drawing order (module docstring).
TSAV_LINES = [("lips", 255, True), ("tsav_left_brow", 223, False), ("tsav_right_brow", 191, False),
              ("tsav_left_eye", 159, True), ("tsav_right_eye", 127, True), ("tsav_nose_bridge", 63, False),
              ("tsav_chin", 31, False)]
STYLES = ("regions", "tsav_lines")
SHIFT = 4  # sub-pixel bits for cv2 drawing


def _points(landmarks: np.ndarray, indices: list[int]) -> np.ndarray:
    return np.round(landmarks[indices] * (1 << SHIFT)).astype(np.int32)


def render_mask(landmarks: np.ndarray, style: str = "regions", size: int = CROP_SIZE) -> np.ndarray:
    """(size, size) uint8 mask of one face's 106 landmarks (crop pixels); black background."""
    if style not in STYLES:
        raise ValueError(f"unknown mask style {style!r}; known: {', '.join(STYLES)}")
    landmarks = np.asarray(landmarks, np.float64).reshape(-1, 2)
    mask = np.zeros((size, size), np.uint8)
    if style == "regions":
        for part, level in REGIONS:
            if part == "face":
                outline = FACE_PARTS["face_contour"] + FACE_PARTS["left_brow"] + FACE_PARTS["right_brow"]
                polygon = cv2.convexHull(_points(landmarks, outline))
            else:
                polygon = _points(landmarks, FACE_PARTS[part])
            cv2.fillPoly(mask, [polygon], level, lineType=cv2.LINE_8, shift=SHIFT)
    else:
        for part, level, closed in TSAV_LINES:
            points = np.rint(landmarks[FACE_PARTS[part]]).astype(np.int32)  # whole pixels, as TSAV
            cv2.polylines(mask, [points], closed, level, thickness=1, lineType=cv2.LINE_8)
    return mask


def masks_for_landmarks(landmarks: pa.Table, style: str = "regions", size: int = CROP_SIZE) -> pa.Table:
    """MASKS rows, one per LANDMARKS row: PNG bytes, b"" where the landmarks are NaN (no face). A chunk of
    landmarks rows is one unit of work of the masks stage."""
    points = np.asarray(landmarks.column("landmarks").combine_chunks().flatten(), np.float32)
    points = points.reshape(landmarks.num_rows, N_LANDMARKS, 2)
    pngs = [b"" if np.isnan(p).any() else encode_png(render_mask(p, style, size)) for p in points]
    return pa.table([landmarks.column("track"), landmarks.column("frame"), pa.array(pngs, pa.binary())],
                    schema=MASKS)


def masks_part(part: int, params: dict, layout: Layout) -> list[Path]:
    """The masks stage for one part: MASKS shards for every shard of `layout.landmarks(part)`, same names,
    row for row, into `layout.masks(part)`, and the QA gallery. Params: mask.style, mask.jobs and
    align.crop_size (the crops' side: the landmarks are in crop pixels)."""
    style, size = params["mask"]["style"], params["align"]["crop_size"]
    render_mask(np.zeros((N_LANDMARKS, 2)), style, size)  # fail early on a bad style
    written = map_shards(partial(masks_for_landmarks, style=style, size=size), layout.landmarks(part),
                         layout.masks(part), params["mask"]["jobs"], f"masks part {part}",
                         executor=params.get("executor"))
    gallery(read_shards(layout.faces(part)), read_shards(layout.landmarks(part)), read_shards(layout.masks(part)),
            path=layout.gallery("masks", part))
    return written
