"""The embedded demo dataset: expressive synthetic face videos with their labels, in the ABAW2 layout.

Faces come from photographs shipped inside the project's own dependencies (InsightFace's `t1.jpg`, six
faces, and scikit-image's astronaut), and their horizontal flips. Their 106 landmarks were measured once
with the project's own detector and landmark model and are committed (`synth_faces.json`, written by
`python -m affect.synth_faces`), so no model runs here. Each source face is first neutralised (the photo's
own smile undone: lips closed, corners level, `neutral_landmarks`), and every person of every video is a
new apparent identity (`vary`: face width and height, jaw, eye spacing and mouth width reshaped, skin
tinted, lit from one side). The face is then animated by a piecewise-affine warp of a triangulation of
those landmarks (plus forehead, cheek and border points, so the background stays put).

Every person follows a latent performance, and labels, pixels and sound all derive from it:
- expression segments of 0.8-2.5 s (smooth onsets and offsets, peak intensity 0.8-1) drive their FACS
  prototype action units with per-AU jitter; each AU also acts alone now and then (AU_EVENT_RATE) and wavers
  a little; each of the 12 ABAW2 AUs moves the landmark groups FACS describes (brows, lids, lip corners, lips,
  jaw); blinks and small head motion (rotation, scale, translation) come on top;
- an AU is present (label 1) where its intensity exceeds 0.5; the expression label is the active segment's
  expression where the segment's envelope times its intensity exceeds EXPR_THRESHOLD (0.4), else Neutral, so
  a labelled frame shows its expression clearly;
- valence = clip(v_e * s(t) + 0.05 d_v(t)), arousal = clip(b + a_e * s(t) + 0.05 d_a(t)), with (v_e, a_e) the
  expression's place on the circumplex (CIRCUMPLEX), s(t) the expression intensity, b a per-person baseline
  arousal in [-0.1, 0.1] and d smooth noise in [-1, 1]: what the labels say is what the face (and the voice)
  show, so a model can learn it from a few dozen short videos;
- the voice (harmonic source, formant envelope, syllables, pauses) gets louder (+18 dB per unit) and higher
  (+half an octave per unit) with arousal; in two-person videos it follows one of the two people.
Then Aff-Wild2's incomplete labels: videos belong to random subsets of the task sets, annotated tracks have
unlabelled stretches (-5 / -1), some files are a row or two off, some videos have no annotation, Train_Set /
Validation_Set by video.

The same seed gives the same bytes on any x86-64 machine, whatever the number of jobs: every point, matrix
and factor that drives pixels is computed with exact arithmetic or put on a grid (`affect.exact`), warps and
blurs run in elementwise or fixed-point arithmetic (no SIMD-dependent OpenCV float path), the voice is
rounded to 16-bit PCM, and ffmpeg encodes with bit-exact flags and pinned CPU flags (`affect.video.CPUFLAGS`),
x264 with its processor-independent algorithms (without them 2 of the 128 default videos differed between an
AMD Zen 3 and a Zen 4 machine).
`data/demo.sha256` lists the default tree's checksums (tests/test_reproducible.py).

Source faces whose head is turned too far (t1.jpg's second and fifth face) fold the warp and are not used.
`python -m affect.synth strip OUT.png` draws a strip of demo frames with their labels (the README's picture).
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import shutil
import subprocess
import sys
import wave
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import skimage.data
from scipy import ndimage
from scipy.spatial import Delaunay
from tqdm import tqdm

from affect.annotations import write_annotation
from affect.exact import MATRIX_STEP, apply_affine, on_grid, remap, warp_affine
from affect.schema import AUS, EXPRESSIONS
from affect.video import CPUFLAGS

log = logging.getLogger(__name__)

# Landmark groups of the 106-point numbering (InsightFace 2d106det / PFLD-106), subject's right = image left.
EYE_UPPER = [41, 40, 42, 95, 94, 96]
EYE_LOWER = [36, 33, 37, 90, 87, 91]       # EYE_LOWER[i] lies under EYE_UPPER[i]
PUPILS = [(34, 33), (38, 33), (88, 87), (92, 87)]  # (pupil point, lower-lid point it closes onto)
EYE_CORNERS = [35, 39, 89, 93]
BROWS = [43, 44, 45, 47, 46, 48, 49, 51, 50, 97, 98, 99, 100, 101, 102, 103, 104, 105]
LIP_CORNERS = [52, 61]
INNER_CORNERS = [65, 69]
OUTER_UPPER = [64, 63, 71, 67, 68]
OUTER_LOWER = [55, 56, 53, 59, 58]
INNER_UPPER = [66, 62, 70]
INNER_LOWER = [54, 60, 57]
MOUTH_INNER = [65, 66, 62, 70, 69, 57, 60, 54]    # ring of the inner lip contour
NOSE = list(range(72, 87))
CONTOUR = list(range(0, 33))
N_POINTS = 106

# FACS prototypes of the seven ABAW2 expressions: AU -> weight (1 = drives the AU fully).
PROTOTYPES = {
    "Neutral": {},
    "Anger": {"AU4": 1.0, "AU7": 0.9, "AU23": 0.9, "AU24": 0.9},
    "Disgust": {"AU4": 0.3, "AU10": 1.0, "AU15": 0.6, "AU25": 0.7},
    "Fear": {"AU1": 1.0, "AU2": 0.9, "AU4": 0.7, "AU7": 0.6, "AU25": 0.9, "AU26": 0.4},
    "Happiness": {"AU6": 1.0, "AU12": 1.0, "AU25": 0.6},
    "Sadness": {"AU1": 1.0, "AU4": 0.8, "AU15": 1.0},
    "Surprise": {"AU1": 1.0, "AU2": 1.0, "AU25": 1.0, "AU26": 1.0},
}
# (valence, arousal) of each expression at full intensity (Russell's circumplex, rounded).
CIRCUMPLEX = {"Neutral": (0.0, 0.0), "Anger": (-0.6, 0.7), "Disgust": (-0.65, 0.35), "Fear": (-0.6, 0.75),
              "Happiness": (0.75, 0.45), "Sadness": (-0.65, -0.4), "Surprise": (0.2, 0.8)}
EXPR_THRESHOLD = 0.4   # expression label where envelope x intensity exceeds this, else Neutral
AU_THRESHOLD = 0.5     # AU label 1 where its intensity exceeds this
AU_EVENT_RATE = 0.03   # per second: each AU's rate of activity outside the expressions (0.6-1.5 s bursts)

SOURCE_LANDMARKS = Path(__file__).with_name("synth_faces.json")  # written by `python -m affect.synth landmarks`
LANDMARK_STEP = 1 / 8  # px: grid of the committed source landmarks
POINT_STEP = 1 / 64    # px: grid of every point and displacement that drives the warps (affect.exact)
VOICE_RATE = 22050     # Hz, rate the voice is synthesised at (the encoder resamples)
PORTRAIT_IOD = 0.18    # inter-ocular distance as a fraction of the person's cell width
NEUTRAL_MOUTH = 0.8    # neutral mouth width at most this many eye distances (smiles are wider)
MAX_TURN = 0.3         # source faces whose nose tip is further off the eyes' centre (in eye distances) are not used
# Container variants: (extension, video codec args, audio codec args, audio rate).
FORMATS = {
    # x264 picks some algorithms by the processor (its mbtree propagation in float SIMD, the x9 intra searches):
    # cpu-independent takes the canonical ones, so the same frames give the same H.264 stream on every machine.
    "mp4": (".mp4", ["-c:v", "libx264", "-preset", "veryfast", "-crf", "20", "-pix_fmt", "yuv420p",
                     "-x264-params", "cpu-independent=1"],
            ["-c:a", "aac", "-b:a", "96k"], 44100),
    "avi_mpeg4": (".avi", ["-c:v", "mpeg4", "-q:v", "3", "-pix_fmt", "yuv420p"],
                  ["-c:a", "libmp3lame", "-b:a", "96k", "-avoid_negative_ts", "disabled"], 44100),  # else a pts gap
    "avi_mjpeg": (".avi", ["-c:v", "mjpeg", "-q:v", "3", "-pix_fmt", "yuvj420p"],
                  ["-c:a", "pcm_s16le"], 22050),
}
BITEXACT = ["-threads", "1", "-fflags", "+bitexact", "-flags:v", "+bitexact", "-flags:a", "+bitexact",
            "-map_metadata", "-1"]
TASK_DIRS = {"va": "VA_Set", "expr": "EXPR_Set", "au": "AU_Set"}


@dataclass
class Face:
    """One source identity ready to animate in a cell of `image`'s size."""

    name: str
    image: np.ndarray      # (H, W, 3) uint8 portrait, eyes level, inter-ocular distance PORTRAIT_IOD * W
    alpha: np.ndarray      # (H, W) uint8, 255 = the person (face, hair, neck), 0 = the background
    source: np.ndarray     # (P, 2) float32 where the points are in `image`
    points: np.ndarray     # (P, 2) float32 rest points: 106 landmarks, forehead, cheeks, lid creases, ring, border
    basis: np.ndarray      # (12, P, 2) float32 displacement in pixels per unit intensity of each AU (POINT_STEP grid)
    triangles: np.ndarray  # (K, 3) int32 Delaunay triangles of `source`


@dataclass
class Performance:
    """The latent sequence of one person, frame by frame, that pixels, sound and labels all follow."""

    expr: np.ndarray       # (n,) int8 expression label (index in EXPRESSIONS)
    intensity: np.ndarray  # (n,) float32 expression intensity s(t)
    au: np.ndarray         # (n, 12) float32 AU intensities in 0..1
    valence: np.ndarray    # (n,) float32
    arousal: np.ndarray    # (n,) float32
    blink: np.ndarray      # (n,) float32 eyelid closure in 0..1
    head: np.ndarray       # (n, 4) float32 rotation (deg), scale, dx, dy (fractions of the cell)


# ---------------------------------------------------------------------------------------------- faces

def source_photos() -> list[tuple[str, np.ndarray]]:
    """The photographs shipped with the dependencies: (name, RGB image)."""
    import insightface

    t1 = Path(insightface.__file__).parent / "data" / "images" / "t1.jpg"
    image = cv2.imread(str(t1))
    if image is None:
        raise FileNotFoundError(f"{t1}: InsightFace's sample photo is missing; reinstall insightface")
    return [("t1", image[:, :, ::-1].copy()), ("astronaut", skimage.data.astronaut())]


def _smooth_noise(rng: np.random.Generator, n: int, fps: float, period_s: float) -> np.ndarray:
    """(n,) smooth random curve in about -1..1 varying over `period_s` seconds."""
    knots = max(2, int(n / fps / period_s) + 2)
    values = rng.uniform(-1.0, 1.0, knots)
    return np.interp(np.linspace(0, knots - 1, n), np.arange(knots), values).astype(np.float32)


def _portrait(image: np.ndarray, landmarks: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Warp a photo so the eyes are level, centred at (0.5 W, 0.4 H), PORTRAIT_IOD * W apart.

    Returns the portrait and the (2, 3) matrix taking photo pixels to portrait pixels (entries on
    MATRIX_STEP, computed with exact arithmetic only, so the warp is the same on every machine).
    """
    width, height = size
    lm = np.asarray(landmarks, np.float64)
    left, right = lm[[35, 39]].mean(0), lm[[89, 93]].mean(0)
    dx, dy = right - left
    eyes = np.sqrt(dx * dx + dy * dy)
    mouth = lm[LIP_CORNERS].mean(0) - (left + right) / 2
    eye_mouth = np.sqrt(mouth[0] * mouth[0] + mouth[1] * mouth[1])
    scale = PORTRAIT_IOD * width / max(eyes, eye_mouth / 1.15)  # turned heads: by eye-mouth distance
    c, s = on_grid(scale * dx / eyes, MATRIX_STEP), on_grid(-scale * dy / eyes, MATRIX_STEP)
    cx, cy = (left + right) / 2
    matrix = np.array([[c, -s, on_grid(0.5 * width - (c * cx - s * cy), MATRIX_STEP)],
                       [s, c, on_grid(0.4 * height - (s * cx + c * cy), MATRIX_STEP)]])
    portrait = warp_affine(image, matrix, (width, height), border="reflect")
    return portrait, matrix


def _inner_points(lm: np.ndarray, iod: float) -> np.ndarray:
    """(13, 2) points that follow the face: forehead (5), cheeks (2) and lid creases (6) of 106 landmarks."""
    mid_x = lm[[35, 39, 89, 93]].mean(0)[0]
    eye_y = lm[EYE_CORNERS].mean(0)[1]
    brow_top = lm[BROWS][:, 1].min()
    forehead = np.array([[mid_x + k * iod, brow_top - 0.45 * iod] for k in (-1.1, -0.55, 0.0, 0.55, 1.1)])
    cheeks = np.array([[mid_x + sx * 0.72 * iod, eye_y + 0.55 * iod] for sx in (-1, 1)])
    creases = lm[EYE_UPPER] + 0.35 * (lm[above_lids(lm)] - lm[EYE_UPPER])     # lid creases, between lids and brows
    return np.vstack([forehead, cheeks, creases])


def above_lids(lm: np.ndarray) -> list[int]:
    """The lower-brow landmark above each upper-lid point of EYE_UPPER."""
    brow_lower = np.array([43, 44, 45, 47, 46, 97, 98, 99, 100, 101])
    return [int(brow_lower[np.argmin(np.abs(lm[brow_lower, 0] - lm[i, 0]))]) for i in EYE_UPPER]


def _face(name: str, image: np.ndarray, source_lm: np.ndarray, rest_lm: np.ndarray | None = None) -> Face:
    """Points, triangulation, AU displacement basis and alpha of one portrait.

    `source_lm`: the 106 landmarks where they are in `image`; `rest_lm`: where they are in the person's
    rest pose (default: the same), e.g. with the photo's own smile undone (`neutral_landmarks`) and the face
    reshaped (`vary`). The image is warped from the first to the second, then by the AUs.
    """
    lm = np.asarray(source_lm if rest_lm is None else rest_lm, np.float64)
    source_lm = np.asarray(source_lm, np.float64)
    height, width = image.shape[:2]
    iod = PORTRAIT_IOD * width
    mid_x = source_lm[[35, 39, 89, 93]].mean(0)[0]
    eye_y = source_lm[EYE_CORNERS].mean(0)[1]
    mouth_y = source_lm[LIP_CORNERS].mean(0)[1]
    angles = np.linspace(0, 2 * np.pi, 16, endpoint=False)
    centre = np.array([mid_x, (eye_y + mouth_y) / 2])
    ring = centre + np.stack([1.9 * iod * np.cos(angles), 2.4 * iod * np.sin(angles)], 1)
    border = np.array([[x, y] for x in (0, width / 2, width - 1) for y in (0, height / 2, height - 1)
                       if (x, y) != (width / 2, height / 2)])
    source = on_grid(np.vstack([source_lm, _inner_points(source_lm, iod), ring, border]), POINT_STEP)
    points = on_grid(np.vstack([lm, _inner_points(lm, iod), ring, border]), POINT_STEP).astype(np.float32)
    mid_x = lm[[35, 39, 89, 93]].mean(0)[0]
    mouth_y = lm[LIP_CORNERS].mean(0)[1]
    above = above_lids(lm)
    cheek_idx = [N_POINTS + 5, N_POINTS + 6]
    crease_idx = list(range(N_POINTS + 7, N_POINTS + 13))

    up, down = np.array([0.0, -1.0]), np.array([0.0, 1.0])
    basis = np.zeros((len(AUS), len(points), 2), np.float32)   # in units of the inter-ocular distance
    au = {name: basis[i] for i, name in enumerate(AUS)}
    brow_dx = np.abs(points[BROWS, 0] - mid_x)
    inner = 1.0 - (brow_dx - brow_dx.min()) / (np.ptp(brow_dx) + 1e-6)    # 1 at the inner end, 0 at the outer
    au["AU1"][BROWS] = up * (0.22 * (0.25 + 0.75 * inner))[:, None]
    au["AU2"][BROWS] = up * (0.22 * (0.25 + 0.75 * (1 - inner)))[:, None]
    toward_mid = np.sign(mid_x - points[BROWS, 0])[:, None] * np.array([1.0, 0.0])
    au["AU4"][BROWS] = (down * 0.12 + toward_mid * 0.06) * (0.4 + 0.6 * inner)[:, None]
    # The forehead points above the brows move as far as the brows: the whole brow band moves (wherever the
    # hairs are), stretching the upper lids below and compressing the forehead above.
    au["AU1"][N_POINTS:N_POINTS + 5] = up * np.array([0.07, 0.2, 0.22, 0.2, 0.07])[:, None]
    au["AU2"][N_POINTS:N_POINTS + 5] = up * np.array([0.2, 0.1, 0.05, 0.1, 0.2])[:, None]
    au["AU4"][N_POINTS:N_POINTS + 5] = down * np.array([0.04, 0.09, 0.1, 0.09, 0.04])[:, None]
    for au_name in ("AU1", "AU2", "AU4"):   # the lashes and crease stay near the lid: the bare lid skin stretches
        au[au_name][crease_idx] = 0.3 * au[au_name][above]
    lid_gap = (points[EYE_LOWER] - points[EYE_UPPER]) / iod        # eye opening, upper lid to lower lid
    au["AU6"][EYE_LOWER] = -0.15 * lid_gap
    au["AU6"][cheek_idx] = up * 0.07
    au["AU6"][[35, 93]] = up * 0.02
    au["AU7"][EYE_LOWER] = -0.2 * lid_gap
    au["AU7"][EYE_UPPER] = 0.12 * lid_gap
    upper_lip, lower_lip = OUTER_UPPER + INNER_UPPER, OUTER_LOWER + INNER_LOWER
    au["AU10"][upper_lip] = up * 0.07
    au["AU10"][[64, 68]] = up * 0.05
    outward = np.array([[-1.0, 0.0], [1.0, 0.0]])
    au["AU12"][LIP_CORNERS] = up * 0.18 + outward * 0.12
    au["AU12"][INNER_CORNERS] = up * 0.17 + outward * 0.11
    au["AU12"][[64, 68, 55, 58]] = up * 0.09 + outward[[0, 1, 0, 1]] * 0.06
    au["AU12"][[66, 70, 54, 57]] = up * 0.09 + outward[[0, 1, 0, 1]] * 0.06
    au["AU12"][cheek_idx] = up * 0.06
    au["AU15"][LIP_CORNERS] = down * 0.15 + outward * 0.02
    au["AU15"][INNER_CORNERS] = down * 0.14 + outward * 0.02
    au["AU15"][[64, 68, 55, 58, 66, 70, 54, 57]] = down * 0.07
    thickness_upper = (points[INNER_UPPER] - points[[63, 71, 67]]) / iod   # outer upper lip -> inner upper lip
    thickness_lower = (points[INNER_LOWER] - points[[56, 53, 59]]) / iod
    au["AU23"][LIP_CORNERS] = -outward * 0.05
    au["AU23"][INNER_CORNERS] = -outward * 0.05
    au["AU23"][[63, 71, 67]] = 0.3 * thickness_upper
    au["AU23"][[56, 53, 59]] = 0.3 * thickness_lower
    au["AU24"][[63, 71, 67]] = 0.5 * thickness_upper
    au["AU24"][[56, 53, 59]] = 0.5 * thickness_lower
    au["AU24"][[64, 68]] = 0.3 * thickness_upper[[0, 2]]
    au["AU24"][[55, 58]] = 0.3 * thickness_lower[[0, 2]]
    au["AU25"][lower_lip] = down * 0.13
    au["AU25"][upper_lip] = up * 0.015
    jaw = [n for n in CONTOUR if points[n, 1] > mouth_y]
    chin_y = points[CONTOUR, 1].max()
    au["AU26"][jaw] = down * (0.25 * np.clip((points[jaw, 1] - mouth_y) / (chin_y - mouth_y), 0, 1))[:, None]
    au["AU26"][lower_lip] = down * 0.25
    au["AU26"][LIP_CORNERS + INNER_CORNERS] = down * 0.08
    # Skin between the moving parts follows them with a Gaussian falloff (every other point is an anchor,
    # still ones included), so neighbouring triangles do not fold over.
    free = np.array(CONTOUR + NOSE + list(range(N_POINTS, N_POINTS + 7)))
    for b in basis:
        targets = np.array([j for j in free if not np.abs(b[j]).sum()])
        anchors = np.setdiff1d(np.arange(len(points)), targets)
        dist = np.linalg.norm(points[targets, None] - points[None, anchors], axis=2) / iod
        w = np.exp(-0.5 * (dist / 0.3) ** 2)
        b[targets] = (w @ b[anchors]) / w.sum(1)[:, None]
    basis = on_grid(basis * iod, POINT_STEP).astype(np.float32)

    alpha = np.zeros((height, width), np.uint8)     # uint8 and blurred in fixed point: the same bits everywhere
    axes = (int(1.45 * iod), int(2.05 * iod))
    cv2.ellipse(alpha, (int(centre[0]), int(centre[1] - 0.35 * iod)), axes, 0, 0, 360, 255, -1)
    cv2.ellipse(alpha, (int(centre[0]), int(chin_y + 0.6 * iod)), (int(0.7 * iod), int(0.9 * iod)), 0, 0, 360, 255, -1)
    alpha = cv2.GaussianBlur(alpha, (0, 0), 0.18 * iod)
    triangles = Delaunay(source).simplices.astype(np.int32)
    return Face(name, image, alpha, source.astype(np.float32), points, basis, triangles)


def neutral_landmarks(lm: np.ndarray) -> np.ndarray:
    """The 106 landmarks with the photo's own mouth expression undone: lips closed where they meet, the
    corners level with the lips' meeting line and no wider than NEUTRAL_MOUTH * the eye distance.

    Most source photos smile; without this every synthetic expression would smile too.
    """
    p = np.asarray(lm, np.float64).copy()
    iod = np.linalg.norm(p[[89, 93]].mean(0) - p[[35, 39]].mean(0))
    half = (p[INNER_LOWER] - p[INNER_UPPER]) / 2             # close the lips: both halves meet midway
    for upper, lower, amount in ((INNER_UPPER, INNER_LOWER, 1.0), ([63, 71, 67], [56, 53, 59], 1.0)):
        p[upper] += amount * half
        p[lower] -= amount * half
    for upper, lower, k in (([64], [55], 0), ([68], [58], 2)):
        p[upper] += 0.5 * half[k]
        p[lower] -= 0.5 * half[k]
    line = p[INNER_UPPER + INNER_LOWER].mean(0)               # where the lips meet
    mouth = LIP_CORNERS + INNER_CORNERS + OUTER_UPPER + OUTER_LOWER + INNER_UPPER + INNER_LOWER
    half_width = min(NEUTRAL_MOUTH * iod / 2, abs(p[61, 0] - p[52, 0]) / 2)
    moves = {}
    for corner, inner, side in ((52, 65, -1), (61, 69, 1)):
        target = np.array([line[0] + side * half_width, line[1] + 0.02 * iod])
        moves[side] = target - p[corner]
        p[inner] += target - p[corner]       # the inner corner moves with the outer one
        p[corner] = target
    for k in sorted(set(mouth) - set(LIP_CORNERS + INNER_CORNERS)):   # the lips follow their corners
        t = np.clip((p[k, 0] - line[0]) / max(half_width, 1e-6), -1, 1)
        p[k] += moves[-1] * max(-t, 0.0) ** 2 + moves[1] * max(t, 0.0) ** 2
    return p


def vary(face: Face, rng: np.random.Generator) -> Face:
    """Another apparent person from a source face: the face reshaped (width, height, jaw, eye spacing, mouth
    width), the skin tinted and lit from one side. All factors are put on a grid before they act."""
    height, width = face.image.shape[:2]
    iod = PORTRAIT_IOD * width
    source = face.source[:N_POINTS].astype(np.float64)
    lm = face.points[:N_POINTS].astype(np.float64)
    centre = lm.mean(0)
    sx, sy, jaw, eyes, mouth = on_grid(rng.uniform([0.9, 0.92, 0.9, -0.05, 0.9], [1.1, 1.08, 1.1, 0.05, 1.1]),
                                       MATRIX_STEP)
    lm = centre + (lm - centre) * np.array([sx, sy])
    mid_x = lm[EYE_CORNERS, 0].mean()
    below = [k for k in CONTOUR if lm[k, 1] > lm[LIP_CORNERS, 1].mean()]
    lm[below, 0] = mid_x + (lm[below, 0] - mid_x) * jaw
    for group, side in ((EYE_UPPER[:3] + EYE_LOWER[:3] + [33, 34, 35, 36, 37, 38, 39], -1),
                        (EYE_UPPER[3:] + EYE_LOWER[3:] + [87, 88, 89, 90, 91, 92, 93], 1)):
        lm[group, 0] += side * eyes * iod
    lips = LIP_CORNERS + INNER_CORNERS + OUTER_UPPER + OUTER_LOWER + INNER_UPPER + INNER_LOWER
    mouth_x = lm[lips, 0].mean()
    lm[lips, 0] = mouth_x + (lm[lips, 0] - mouth_x) * mouth
    gains = on_grid(np.exp(rng.normal(0, 0.1, 3)) * rng.uniform(0.8, 1.15), MATRIX_STEP).astype(np.float32)
    slope = np.float32(on_grid(rng.uniform(-0.35, 0.35), MATRIX_STEP))
    light = 1 + slope * (np.arange(width, dtype=np.float32) - width / 2) / width
    image = face.image.astype(np.float32) * gains * light[None, :, None]
    image = np.clip(np.round(image), 0, 255).astype(np.uint8)
    return _face(face.name, image, source, on_grid(lm, POINT_STEP))


def source_faces(size: tuple[int, int]) -> list[Face]:
    """Every usable face of the source photos and its mirror image, as portraits of `size` (W, H) ready to
    animate, placed by the committed landmarks of SOURCE_LANDMARKS (no model runs here)."""
    photos = dict(source_photos())
    faces = []
    for entry in json.loads(Path(SOURCE_LANDMARKS).read_text())["faces"]:
        photo = photos[entry["photo"]]
        image = np.ascontiguousarray(photo[:, ::-1]) if entry["flip"] else photo
        landmarks = np.array(entry["landmarks"], np.float64)
        portrait, matrix = _portrait(image, landmarks, size)
        name = f"{entry['photo']}-{entry['face']}" + ("-flip" if entry["flip"] else "")
        source = on_grid(apply_affine(matrix, landmarks), POINT_STEP)
        faces.append(_face(name, portrait, source, on_grid(neutral_landmarks(source), POINT_STEP)))
    return faces


# ------------------------------------------------------------------------------------------ performance

def _envelope(n: int, start: int, stop: int, ramp_in: int, ramp_out: int) -> np.ndarray:
    """(n,) 0..1 envelope: smoothstep up over `ramp_in` frames from `start`, down over `ramp_out` to `stop`."""
    t = np.arange(n, dtype=np.float64)
    rise = np.clip((t - start) / max(ramp_in, 1), 0, 1)
    fall = np.clip((stop - t) / max(ramp_out, 1), 0, 1)
    x = np.minimum(rise, fall)
    return x * x * (3 - 2 * x)


def perform(rng: np.random.Generator, n: int, fps: float) -> Performance:
    """A random performance of `n` frames: expression segments, AU intensities, valence/arousal, blinks, head."""
    expr = np.zeros(n, np.int8)
    intensity = np.zeros(n, np.float32)
    au = np.zeros((n, len(AUS)), np.float32)
    valence = np.zeros(n, np.float32)
    arousal = np.zeros(n, np.float32)
    start, previous, shown = 0, -1, np.zeros(len(EXPRESSIONS))
    while start < n:
        length = int(rng.uniform(0.8, 2.5) * fps)
        choices = [e for e in range(len(EXPRESSIONS)) if e != previous]
        weights = np.array([1.0 / (1.0 + shown[e]) for e in choices])  # favour unshown ones
        e = int(rng.choice(choices, p=weights / weights.sum()))
        previous = e
        shown[e] += 1
        name = EXPRESSIONS[e]
        stop = min(n, start + length)
        ramp_in, ramp_out = (int(rng.uniform(0.15, 0.4) * fps) for _ in range(2))
        env = _envelope(n, start, stop, ramp_in, ramp_out)
        peak = rng.uniform(0.8, 1.0) if e else 0.0
        s = (peak * env).astype(np.float32)
        span = slice(start, stop)
        intensity[span] = s[span]
        expr[span] = np.where(s[span] > EXPR_THRESHOLD, e, 0)
        for au_name, weight in PROTOTYPES[name].items():
            jitter = rng.normal(1.0, 0.1)
            au[span, AUS.index(au_name)] += s[span] * weight * jitter
        v, a = CIRCUMPLEX[name]
        valence[span] = v * s[span]
        arousal[span] = a * s[span]
        start = stop
    for k in range(len(AUS)):      # each AU also acts on its own now and then, and wavers a little
        au[:, k] += 0.05 * _smooth_noise(rng, n, fps, rng.uniform(0.5, 1.5))
        for _ in range(rng.poisson(AU_EVENT_RATE * n / fps)):
            start = int(rng.integers(0, n))
            stop = start + int(rng.uniform(0.6, 1.5) * fps)
            ramp = int(0.2 * fps)
            au[:, k] += rng.uniform(0.6, 1.0) * _envelope(n, start, stop, ramp, ramp).astype(np.float32)
    au = np.clip(au, 0.0, 1.0)
    valence = np.clip(valence + 0.05 * _smooth_noise(rng, n, fps, 2.0), -1, 1)
    arousal = np.clip(rng.uniform(-0.1, 0.1) + arousal + 0.05 * _smooth_noise(rng, n, fps, 2.0), -1, 1)

    blink = np.zeros(n, np.float32)
    t = rng.uniform(0.3, 2.5) * fps
    while t < n:
        half = rng.uniform(0.06, 0.1) * fps
        frames = np.arange(max(0, int(t - half)), min(n, int(t + half) + 1))
        blink[frames] = np.maximum(blink[frames], np.cos(np.clip((frames - t) / half, -1, 1) * np.pi / 2))
        t += rng.uniform(1.5, 5.0) * fps
    head = np.stack([4.0 * _smooth_noise(rng, n, fps, 3.0) + 1.5 * _smooth_noise(rng, n, fps, 1.0),
                     1.0 + 0.04 * _smooth_noise(rng, n, fps, 4.0),
                     0.03 * _smooth_noise(rng, n, fps, 3.0),
                     0.02 * _smooth_noise(rng, n, fps, 3.0)], 1).astype(np.float32)
    return Performance(expr, intensity, au.astype(np.float32), valence.astype(np.float32),
                       arousal.astype(np.float32), blink, head)


# ---------------------------------------------------------------------------------------------- render

def warp_points(face: Face, au: np.ndarray, blink: float, head: np.ndarray) -> np.ndarray:
    """(P, 2) float64 points of one frame on POINT_STEP: rest points moved by the AUs and the blink, then by the
    head pose (elementwise arithmetic in a fixed order, so the same bits on every machine)."""
    points = face.points.astype(np.float64)
    for k in range(len(AUS)):
        points = points + float(au[k]) * face.basis[k]
    closing = 0.92 * blink       # upper lids and pupils move onto the lower lids
    points[EYE_UPPER] += closing * (points[EYE_LOWER] - points[EYE_UPPER])
    for pupil, lid in PUPILS:
        points[pupil] += closing * (points[lid] - points[pupil])
    height, width = face.image.shape[:2]
    centre = face.points[:N_POINTS].astype(np.float64).mean(0)
    matrix = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), float(head[0]), float(head[1]))
    matrix[:, 2] += (head[2] * width, head[3] * height)
    return on_grid(apply_affine(on_grid(matrix, MATRIX_STEP), points), POINT_STEP)


def piecewise_affine(image: np.ndarray, src: np.ndarray, dst: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Float64 (H, W, C) `image` warped so that points `src` land on `dst`, affinely inside each triangle.

    Each triangle's affine map is solved in closed form (Cramer's rule, elementwise) and every pixel is
    sampled once (`affect.exact.remap`): the same bits on every machine for the same points.
    """
    height, width = image.shape[:2]
    d = np.asarray(dst, np.float64)[triangles]      # (K, 3, 2)
    s = np.asarray(src, np.float64)[triangles]
    e1, e2 = d[:, 1] - d[:, 0], d[:, 2] - d[:, 0]
    f1, f2 = s[:, 1] - s[:, 0], s[:, 2] - s[:, 0]
    det = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
    area = np.abs(det) / 2
    drawn = area >= 0.05                    # collapsed triangles (a closed eye) cover no pixel
    det = np.where(drawn, det, 1.0)[:, None]
    ax = (e2[:, 1:2] * f1 - e1[:, 1:2] * f2) / det      # d(source) / dx, (K, 2)
    ay = (e1[:, 0:1] * f2 - e2[:, 0:1] * f1) / det      # d(source) / dy
    a0 = s[:, 0] - d[:, 0, 0:1] * ax - d[:, 0, 1:2] * ay
    corners = np.round(d * 16).astype(np.int32)
    index = np.full((height, width), 0xFFFF, np.uint16)
    for k in np.argsort(area, kind="stable"):  # outlines first, large triangles last: no gaps at edges
        if drawn[k]:
            cv2.polylines(index, [corners[k]], True, int(k), 1, cv2.LINE_8, shift=4)
    for k in np.flatnonzero(drawn):
        cv2.fillConvexPoly(index, corners[k], int(k), lineType=cv2.LINE_8, shift=4)
    off = np.array([[-1e4, -1e4]])                   # index 0xFFFF -> off the image
    ax, ay, a0 = (np.concatenate([v, np.zeros((1, 2))]) for v in (ax, ay, a0))
    a0[-1] = off
    flat = np.minimum(index, len(triangles)).ravel()
    ys, xs = np.mgrid[0:height, 0:width]
    xs, ys = xs.ravel().astype(np.float64), ys.ravel().astype(np.float64)
    map_x = (xs * ax[flat, 0] + ys * ay[flat, 0] + a0[flat, 0]).reshape(height, width)
    map_y = (xs * ax[flat, 1] + ys * ay[flat, 1] + a0[flat, 1]).reshape(height, width)
    return remap(image, map_x, map_y)


def _soft_polygon(shape: tuple[int, int], polygon: np.ndarray, sigma: float) -> np.ndarray:
    """(H, W) float32 in 0..1: a filled, blurred polygon (uint8 and fixed-point blur: the same bits everywhere)."""
    canvas = np.zeros(shape, np.uint8)
    cv2.fillPoly(canvas, [np.round(polygon * 16).astype(np.int32)], 255, cv2.LINE_AA, shift=4)
    return cv2.GaussianBlur(canvas, (0, 0), sigma).astype(np.float32) / 255.0


def render_person(face: Face, au: np.ndarray, blink: float, head: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One frame of one person: (H, W, 3) float32 RGB and (H, W) float32 alpha, mouth cavity painted."""
    dst = warp_points(face, au, blink, head)
    warped = piecewise_affine(np.dstack([face.image, face.alpha]), face.source, dst, face.triangles)
    rgb, alpha = warped[:, :, :3].astype(np.float32), (warped[:, :, 3] / 255.0).astype(np.float32)
    opening = float(np.linalg.norm(dst[INNER_LOWER] - dst[INNER_UPPER], axis=1).mean())
    rest = float(np.linalg.norm(face.points[INNER_LOWER] - face.points[INNER_UPPER], axis=1).mean())
    strength = np.float32(np.clip((opening - rest) / (0.04 * PORTRAIT_IOD * face.image.shape[1]), 0.0, 1.0))
    if strength > 0:      # the opened mouth: dark red inside, upper teeth, soft edges
        iod = PORTRAIT_IOD * face.image.shape[1]
        edge = dst[[65] + INNER_UPPER + [69]]
        band = np.vstack([edge, edge[::-1] + (0, min(0.3 * opening, 0.09 * iod))])
        cavity = _soft_polygon(alpha.shape, dst[MOUTH_INNER], 0.6)
        teeth = _soft_polygon(alpha.shape, band, 0.6) * cavity
        cavity = cavity * strength
        teeth = teeth * strength
        colour = teeth[:, :, None] * np.array([225, 215, 200], np.float32) + \
            (cavity - teeth)[:, :, None] * np.array([95, 35, 40], np.float32)
        rgb = rgb * (1 - cavity[:, :, None]) + colour
    return rgb, alpha


def background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A smooth random room-like background: (H, W, 3) float32 RGB (scipy.ndimage: no run-time kernel choice)."""
    base = rng.uniform(50, 210) + rng.normal(0, 25, 3)
    coarse = base + rng.normal(0, 25, (3, 4, 3))
    image = ndimage.zoom(coarse, (height / 3, width / 4, 1), order=3, mode="nearest", grid_mode=True)
    for _ in range(rng.integers(2, 5)):
        x0, y0 = rng.integers(0, width), rng.integers(0, height)
        w, h = rng.integers(width // 8, width // 2), rng.integers(height // 8, height // 2)
        patch = np.zeros((height, width), np.float64)
        patch[int(y0):int(y0 + h) + 1, int(x0):int(x0 + w) + 1] = 1.0
        image = image + ndimage.gaussian_filter(patch, 3)[:, :, None] * rng.normal(0, 30, 3)
    image = image + rng.normal(0, 3, image.shape)
    return np.clip(np.round(image), 0, 255).astype(np.float32)


def render_frame(faces: list[Face], performances: list[Performance], i: int, backdrop: np.ndarray) -> np.ndarray:
    """Frame `i` of a video: each person in their cell, left to right, over the backdrop; (H, W, 3) uint8."""
    frame = backdrop.copy()
    for k, (face, perf) in enumerate(zip(faces, performances)):
        rgb, alpha = render_person(face, perf.au[i], float(perf.blink[i]), perf.head[i])
        width = face.image.shape[1]
        cell = frame[:, k * width:(k + 1) * width]
        cell[:] = rgb * alpha[:, :, None] + cell * (1 - alpha[:, :, None])
    return np.clip(frame + 0.5, 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------------------------- voice

VOWELS = np.array([[730, 1090, 2440], [270, 2290, 3010], [530, 1840, 2480], [570, 840, 2410],
                   [300, 870, 2240], [660, 1720, 2410], [490, 1350, 1690]], np.float64)  # F1-F3, Hz


def voice(rng: np.random.Generator, arousal: np.ndarray, fps: float) -> np.ndarray:
    """Synthetic speech-like mono signal at VOICE_RATE following `arousal` (one value per video frame)."""
    n = int(round(len(arousal) / fps * VOICE_RATE))
    t = np.arange(n) / VOICE_RATE
    a = np.interp(t, np.arange(len(arousal)) / fps, arousal)
    envelope = np.zeros(n)
    formants = np.tile(VOWELS[0], (n, 1))
    accent = np.zeros(n)
    pos = rng.uniform(0.05, 0.4)
    while pos < t[-1]:
        phrase_end = pos + rng.uniform(0.8, 2.5)
        while pos < phrase_end and pos < t[-1]:
            dur = rng.uniform(0.12, 0.3)
            i0, i1 = int(pos * VOICE_RATE), min(n, int((pos + dur) * VOICE_RATE))
            if i1 > i0:
                envelope[i0:i1] = np.sin(np.linspace(0, np.pi, i1 - i0)) ** 0.4
                formants[i0:] = VOWELS[rng.integers(len(VOWELS))]
                accent[i0:i1] = rng.normal(0, 0.05)
            pos += dur + rng.uniform(0.0, 0.06)
        pos += rng.uniform(0.25, 0.9)
    smooth = int(0.03 * VOICE_RATE)
    kernel = np.ones(smooth) / smooth
    formants = np.stack([np.convolve(formants[:, j], kernel, mode="same") for j in range(3)], 1)
    formants[: smooth // 2] = formants[smooth // 2]
    formants[-smooth // 2:] = formants[-smooth // 2 - 1]
    f0_base = rng.uniform(100, 220)
    f0 = f0_base * 2.0 ** (0.5 * a) * (1 + accent + 0.03 * np.sin(2 * np.pi * 0.8 * t))
    phase = 2 * np.pi * np.cumsum(f0) / VOICE_RATE
    signal, power = np.zeros(n), np.zeros(n)
    bandwidths = np.array([90.0, 120.0, 160.0])
    for k in range(1, int(4500 / f0.min()) + 1):
        freq = k * f0
        gain = sum(1.0 / (1.0 + ((freq - formants[:, j]) / bandwidths[j]) ** 2) for j in range(3))
        gain = np.where(freq < 0.45 * VOICE_RATE, gain / np.sqrt(k), 0.0)
        signal += gain * np.sin(k * phase)
        power += gain ** 2 / 2
    signal /= np.sqrt(power) * 4.0       # the same power for every vowel and pitch (peaks stay below 1)
    loudness = 10.0 ** ((18.0 * a - 14.0) / 20.0)
    noise = rng.normal(0, 1e-3, n)
    return (0.5 * signal * envelope * loudness + noise).astype(np.float32)


def pcm16(signal: np.ndarray) -> bytes:
    """Little-endian 16-bit PCM bytes of a signal in -1..1 (rounded, clipped)."""
    return np.clip(np.round(signal * 32767), -32768, 32767).astype("<i2").tobytes()


def write_wav(path: Path, signal: np.ndarray, rate: int) -> None:
    """Mono 16-bit PCM WAV."""
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes(pcm16(signal))


# ---------------------------------------------------------------------------------------------- videos

@dataclass
class VideoPlan:
    """Everything drawn for one video before rendering (so the result does not depend on `jobs`)."""

    index: int
    stem: str
    fmt: str               # key of FORMATS
    fps: int
    n_frames: int
    people: int            # 1, or 2 (left and right)
    voice_of: int          # person the voice follows; -1 = no audio track
    tasks: list[str]       # annotated tasks (none: no annotation file at all)
    split: str             # Train_Set | Validation_Set


def plan_videos(seed: int, n_videos: int, seconds: tuple[float, float], size: tuple[int, int],
                two_person_fraction: float, no_audio_fraction: float, unannotated_fraction: float,
                task_fraction: dict[str, float], validation_fraction: float, avi_fraction: float) -> list[VideoPlan]:
    """Draw every video's kind, format, length and label sets. Each fraction but `task_fraction` becomes a count
    of videos; an annotated video joins each task set with that task's probability, independently, so the task
    sets' sizes, and their shares of Validation_Set, vary with the seed (seeds 0, 1, 2 of the default demo: 61,
    75, 73 expression videos, of which 39, 56, 50 on the training side)."""
    rng = np.random.default_rng(seed)

    def chosen(fraction: float, among: list[int]) -> set[int]:
        return set(rng.permutation(among)[: int(round(fraction * len(among)))].tolist())

    everyone = list(range(n_videos))
    unannotated = chosen(unannotated_fraction, everyone)
    annotated = [v for v in everyone if v not in unannotated]
    two_person = chosen(two_person_fraction * n_videos / max(1, len(annotated)), annotated)  # named by their files
    no_audio = chosen(no_audio_fraction, everyone)
    avi = chosen(avi_fraction, everyone)
    validation = chosen(validation_fraction, annotated)
    tasks = {v: [t for t in TASK_DIRS if v in chosen(task_fraction[t], annotated)] for v in everyone}
    plans = []
    for v in everyone:
        if v in annotated and not tasks[v]:
            tasks[v] = [str(rng.choice(list(TASK_DIRS)))]
        fps = int(rng.choice([25, 30]))
        people = 2 if v in two_person else 1
        fmt = str(rng.choice(["avi_mpeg4", "avi_mjpeg"])) if v in avi else "mp4"
        plans.append(VideoPlan(
            index=v, stem=f"{v + 1}-{fps}-{size[0] * people}x{size[1]}", fmt=fmt, fps=fps,
            n_frames=int(rng.uniform(*seconds) * fps), people=people,
            voice_of=-1 if v in no_audio else int(rng.integers(people)), tasks=tasks[v],
            split="Validation_Set" if v in validation else "Train_Set"))
    return plans


def latents(plan: VideoPlan, seed: int) -> list[Performance]:
    """The performance of each person of a planned video, left to right (what its labels describe)."""
    rng = np.random.default_rng([seed, plan.index, 0])
    return [perform(rng, plan.n_frames, plan.fps) for _ in range(plan.people)]


def encode(frames, path: Path, size: tuple[int, int], fps: int, fmt: str, wav: Path | None) -> None:
    """Pipe RGB frames into ffmpeg (deterministic flags), muxing the WAV as the audio track if given."""
    _, vcodec, acodec, rate = FORMATS[fmt]
    cmd = ["ffmpeg", *CPUFLAGS, "-hide_banner", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24",
           "-s", f"{size[0]}x{size[1]}", "-r", str(fps), "-i", "pipe:0"]
    if wav is not None:
        cmd += ["-i", str(wav), "-map", "0:v", "-map", "1:a", *acodec, "-ar", str(rate), "-ac", "1"]
    cmd += [*vcodec, *BITEXACT, str(path)]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        for frame in frames:
            proc.stdin.write(frame.tobytes())
        proc.stdin.close()
    except BrokenPipeError:
        pass
    err = proc.stderr.read().decode(errors="replace")
    if proc.wait() != 0:
        raise RuntimeError(f"{path}: ffmpeg failed: {err.strip()}")


def _unlabelled_stretches(rng: np.random.Generator, n: int, fps: int, rate: float) -> np.ndarray:
    """(n,) bool: frames left unannotated (stretches of 0.5-2 s, about `rate` of them per 10 s)."""
    mask = np.zeros(n, bool)
    for _ in range(rng.poisson(rate * n / fps / 10.0)):
        length = int(rng.uniform(0.5, 2.0) * fps)
        start = int(rng.integers(0, max(1, n - length)))
        mask[start:start + length] = True
    return mask


def track_labels(perf: Performance, unlabelled: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """ABAW2 values per task from a performance: va (n,2) float32, expr (n,) int8, au (n,12) int8; -5/-1 unlabelled."""
    va = np.stack([perf.valence, perf.arousal], 1).round(3).astype(np.float32)
    expr = perf.expr.astype(np.int8)
    au = (perf.au > AU_THRESHOLD).astype(np.int8)
    va[unlabelled["va"]] = -5
    expr[unlabelled["expr"]] = -1
    au[unlabelled["au"]] = -1
    return {"va": va, "expr": expr, "au": au}


def track_names(plan: VideoPlan) -> list[str]:
    """Track names of a video: its stem, or <stem>_left and <stem>_right."""
    return [plan.stem] if plan.people == 1 else [f"{plan.stem}_left", f"{plan.stem}_right"]


def render_video(plan: VideoPlan, faces: list[Face], seed: int
                 ) -> tuple[Iterator[np.ndarray], np.ndarray | None, np.random.Generator, list[Performance]]:
    """What ffmpeg gets for one planned video: its frames (a generator of (H, W, 3) uint8 RGB) and its voice
    (float32 at VOICE_RATE; None without an audio track); then the random generator that draws its labels
    next and the performance of each person."""
    performances = latents(plan, seed)
    rng = np.random.default_rng([seed, plan.index, 1])
    people = [vary(faces[int(k)], rng) for k in rng.choice(len(faces), plan.people, replace=False)]
    backdrop = background(rng, people[0].image.shape[1] * len(people), people[0].image.shape[0])
    sound = voice(rng, performances[plan.voice_of].arousal, plan.fps) if plan.voice_of >= 0 else None
    frames = (render_frame(people, performances, i, backdrop) for i in range(plan.n_frames))
    return frames, sound, rng, performances


def make_video(plan: VideoPlan, faces: list[Face], root: Path, seed: int, unlabelled_rate: float,
               row_mismatch_fraction: float) -> None:
    """Render, encode and annotate one planned video under `root`."""
    frames, sound, rng, performances = render_video(plan, faces, seed)
    width, height = faces[0].image.shape[1] * plan.people, faces[0].image.shape[0]
    path = root / "videos" / f"{plan.stem}{FORMATS[plan.fmt][0]}"
    wav = None
    if sound is not None:
        wav = root / f".{plan.stem}.wav"
        write_wav(wav, sound, VOICE_RATE)
    encode(frames, path, (width, height), plan.fps, plan.fmt, wav)
    if wav is not None:
        wav.unlink()
    for track, perf in zip(track_names(plan), performances):
        unlabelled = {task: _unlabelled_stretches(rng, plan.n_frames, plan.fps, unlabelled_rate) for task in TASK_DIRS}
        values = track_labels(perf, unlabelled)
        for task in plan.tasks:
            rows = values[task]
            if rng.uniform() < row_mismatch_fraction:   # Aff-Wild2's files can be a frame or two off
                delta = int(rng.choice([-2, -1, 1, 2]))
                rows = rows[:delta] if delta < 0 else np.concatenate([rows, np.repeat(rows[-1:], delta, 0)])
            out = root / "annotations" / TASK_DIRS[task] / plan.split / f"{track}.txt"
            write_annotation(rows, out, task)


_FACES: list[Face] = []


def _init_worker(faces: list[Face]) -> None:
    global _FACES
    _FACES = faces
    cv2.setNumThreads(1)


def _make_video(args: tuple) -> str:
    make_video(args[0], _FACES, *args[1:])
    return args[0].stem


def generate(root: str | os.PathLike, seed: int = 0, n_videos: int = 12, seconds: tuple[float, float] = (4, 10),
             size: tuple[int, int] = (256, 256), two_person_fraction: float = 0.25, no_audio_fraction: float = 0.15,
             unannotated_fraction: float = 0.1, task_fraction: dict[str, float] | None = None,
             validation_fraction: float = 0.25, avi_fraction: float = 0.35, unlabelled_rate: float = 1.0,
             row_mismatch_fraction: float = 0.1, jobs: int = 0) -> None:
    """Write a demo dataset in the ABAW2 layout to `root` (built beside it, renamed into place when complete)."""
    root = Path(root)
    task_fraction = task_fraction or {"va": 0.7, "expr": 0.6, "au": 0.6}
    size = (int(size[0]), int(size[1]))
    faces = source_faces(size)
    plans = plan_videos(seed, n_videos, tuple(seconds), size, two_person_fraction, no_audio_fraction,
                        unannotated_fraction, task_fraction, validation_fraction, avi_fraction)
    tmp = root.parent / f".{root.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "videos").mkdir(parents=True)
    jobs = jobs or os.cpu_count() or 1
    work = [(plan, tmp, seed, unlabelled_rate, row_mismatch_fraction) for plan in plans]
    if jobs == 1:
        _init_worker(faces)
        done = map(_make_video, work)
    else:
        # spawn, not fork: a child forked after OpenCV's thread pool ran can deadlock in its first cv2 call
        pool = multiprocessing.get_context("spawn").Pool(min(jobs, len(work)), _init_worker, (faces,))
        done = pool.imap(_make_video, work)
    try:
        for stem in tqdm(done, total=len(work), desc="demo videos", unit="video"):
            log.debug("%s written", stem)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        if jobs != 1:
            pool.close()
            pool.join()
    old = root.parent / f".{root.name}.old"
    shutil.rmtree(old, ignore_errors=True)
    if root.exists():
        root.rename(old)
    tmp.rename(root)
    shutil.rmtree(old, ignore_errors=True)
    log.info("%s: %d videos, %d frames", root, len(plans), sum(p.n_frames for p in plans))


# ----------------------------------------------------------------------------------------------- strip

def demo_strip(path: str | os.PathLike, seed: int = 0, n: int = 7, size: tuple[int, int] = (256, 256)) -> None:
    """A PNG strip of `n` demo frames (different people and expressions) captioned with their labels."""
    faces = source_faces(size)
    rng = np.random.default_rng(seed)
    fps, tiles = 25, []
    for k in range(n):
        face = vary(faces[(k * 3) % len(faces)], rng)
        wanted = k % len(EXPRESSIONS)
        for _ in range(100):      # a performance that shows the wanted expression
            perf = perform(rng, 6 * fps, fps)
            if (perf.expr == wanted).any():
                break
        hits = np.flatnonzero(perf.expr == wanted)
        i = int(hits[np.argmax(perf.intensity[hits])]) if wanted else int(hits[len(hits) // 2])
        frame = render_frame([face], [perf], i, background(rng, *size))
        caption = np.full((62, size[0], 3), 255, np.uint8)
        aus = " ".join(a[2:] for a, x in zip(AUS, perf.au[i]) if x > AU_THRESHOLD) or "-"
        lines = [EXPRESSIONS[perf.expr[i]], f"V {perf.valence[i]:+.2f} A {perf.arousal[i]:+.2f}", f"AU {aus}"]
        for j, line in enumerate(lines):
            cv2.putText(caption, line, (6, 18 + 19 * j), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
        tiles.append(np.vstack([frame, caption]))
    strip = np.hstack(tiles)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), strip[:, :, ::-1]):
        raise OSError(f"{path}: could not write the strip")


def main(argv: list[str]) -> None:
    """`python -m affect.synth strip OUT.png`: the README's picture of demo frames."""
    if len(argv) != 2 or argv[0] != "strip":
        raise SystemExit("usage: python -m affect.synth strip OUT.png")
    demo_strip(argv[1])


if __name__ == "__main__":
    main(sys.argv[1:])
