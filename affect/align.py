"""Detect, track and align the faces of one video into FACES rows: one per (track, frame), aligned JPEG crops
of align.crop_size (112 for TSAV). `align_part` is the align stage of one part; one video is one unit of work.

Frames stream from an ffmpeg pipe (`affect.video.iter_frames`), one at a time: detection runs once per frame
and serves every track of the video. A frame the decoder did not deliver (truncated file) is a row with
found False and reason `truncated`; a frame without the track's face has reason `no_face`, `lost` or
`other_side` (see `affect.track`).
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from insightface.utils import face_align

from affect.detect import FaceDetector
from affect.exact import similarity, warp_affine
from affect.images import encode_jpeg
from affect.models import model_file
from affect.parallel import run_units
from affect.qa import gallery
from affect.schema import CROP_SIZE, FACES, PERSONS, Layout, read_part
from affect.shards import ShardWriter, read_arrow, read_shards, write_json
from affect.track import MainTracker, PairTracker
from affect.video import VideoError, iter_frames

log = logging.getLogger(__name__)

# 5-point templates (eye centres, nose tip, mouth corners) for a 112x112 crop, from insightface.utils.face_align.
TEMPLATES = {"arcface": face_align.arcface_dst}


def align_matrix(kps: np.ndarray, size: int = CROP_SIZE, template: str = "arcface") -> np.ndarray:
    """(2, 3) similarity transform taking the 5 keypoints onto the template scaled to a `size` crop.

    Umeyama's least-squares estimate (as skimage's SimilarityTransform), in closed form with exact
    arithmetic and entries on a grid (`affect.exact.similarity`): the same matrix on every machine.
    """
    if template not in TEMPLATES:
        raise ValueError(f"unknown alignment template {template!r}; known: {', '.join(TEMPLATES)}")
    dst = TEMPLATES[template] * (size / CROP_SIZE)
    return similarity(np.asarray(kps, np.float64).reshape(5, 2), dst)


def align_face(image_rgb: np.ndarray, kps: np.ndarray, size: int = CROP_SIZE, template: str = "arcface") -> np.ndarray:
    """The face warped so its 5 keypoints sit on the template: (size, size, 3) uint8, black outside the frame
    (bilinear, `affect.exact.warp_affine`: OpenCV's SIMD and plain warps differ by one level here and there)."""
    return warp_affine(image_rgb, align_matrix(kps, size, template), (size, size))


def unalign_points(points: np.ndarray, kps: np.ndarray, size: int = CROP_SIZE, template: str = "arcface"
                   ) -> np.ndarray:
    """(K, 2) points of a `size` crop aligned on the 5 keypoints `kps`, back in the frame's pixels (the inverse
    of `align_matrix`)."""
    matrix = align_matrix(kps, size, template)
    linear, shift = matrix[:, :2], matrix[:, 2]
    return (np.asarray(points, np.float64).reshape(-1, 2) - shift) @ np.linalg.inv(linear).T


def align_video(video_path: str | os.PathLike, pts: np.ndarray, tracks: list[tuple[str, str]],
                detector: FaceDetector, jpeg_quality: int = 95, crop_size: int = CROP_SIZE,
                template: str = "arcface", reacquire_s: float = 0.5, video: str | None = None) -> pa.Table:
    """FACES rows of every track (track, person) of one video, by track then frame; one row per entry of `pts`.

    Raises VideoError when no frame decodes at all.
    """
    video_path = Path(video_path)
    video = video or video_path.stem
    tracks = sorted(tracks)
    unknown = sorted({person for _, person in tracks} - set(PERSONS))
    if unknown:
        raise ValueError(f"{video_path}: unknown person(s) {unknown}; expected main, left or right")
    n = len(pts)
    found = np.zeros((len(tracks), n), bool)
    reason = np.full((len(tracks), n), "truncated", object)
    score = np.zeros((len(tracks), n), np.float32)
    box = np.zeros((len(tracks), n, 4), np.float32)
    kps = np.zeros((len(tracks), n, 10), np.float32)
    crop = np.full((len(tracks), n), b"", object)
    main = MainTracker(reacquire_s)
    pair = PairTracker()
    decoded = 0
    for frame, image in enumerate(iter_frames(video_path)):
        if frame >= n:
            log.warning("%s: decodes more frames than the frame table's %d; extra frames ignored", video_path, n)
            break
        decoded += 1
        boxes, points = detector.detect(image)
        width = image.shape[1]
        picks = {"main": main.update(boxes, float(pts[frame]))}
        if any(person != "main" for _, person in tracks):
            picks["left"], picks["right"] = pair.update(boxes, width)
        for t, (_, person) in enumerate(tracks):
            index, why = picks[person]
            reason[t, frame] = why
            if index is None:
                continue
            found[t, frame] = True
            score[t, frame] = boxes[index, 4]
            box[t, frame] = boxes[index, :4]
            kps[t, frame] = points[index].reshape(-1)
            crop[t, frame] = encode_jpeg(align_face(image, points[index], crop_size, template), jpeg_quality)
    if n and decoded == 0:
        raise VideoError(f"{video_path}: no frame decodes")
    if decoded < n:
        log.warning("%s: truncated, %d of %d frames lost (tracks %s flagged with reason 'truncated')",
                    video_path, n - decoded, n, ", ".join(t for t, _ in tracks))
    rows = len(tracks) * n
    return pa.table({
        "track": pa.array([t for t, _ in tracks for _ in range(n)], pa.string()),
        "video": pa.array([video] * rows, pa.string()),
        "frame": pa.array(np.tile(np.arange(n, dtype=np.int32), len(tracks)), pa.int32()),
        "pts": pa.array(np.tile(np.asarray(pts, np.float64), len(tracks)), pa.float64()),
        "found": pa.array(found.reshape(-1), pa.bool_()),
        "reason": pa.array(reason.reshape(-1).tolist(), pa.string()),
        "score": pa.array(score.reshape(-1), pa.float32()),
        "box": pa.FixedSizeListArray.from_arrays(pa.array(box.reshape(-1), pa.float32()), 4),
        "kps": pa.FixedSizeListArray.from_arrays(pa.array(kps.reshape(-1), pa.float32()), 10),
        "crop": pa.array(crop.reshape(-1).tolist(), pa.binary()),
    }, schema=FACES)


_worker: dict = {}


def _init_worker(detector_path: str, det_size: int, threshold: float, options: dict, providers: str = "cpu") -> None:
    _worker["detector"] = FaceDetector(detector_path, det_size, threshold, threads=1, providers=providers)
    _worker["options"] = options


def align_one(unit: tuple[str, str, np.ndarray, list[tuple[str, str]]]) -> tuple[pa.Table | None, str]:
    """One unit of work: (video, path, frame times, tracks) -> (its FACES rows, "") or (None, why it failed),
    with the process's detector and options (`_init_worker`)."""
    video, path, pts, tracks = unit
    try:
        return align_video(path, pts, tracks, _worker["detector"], video=video, **_worker["options"]), ""
    except (VideoError, OSError) as err:
        return None, str(err)


def video_path(path: str, root: str | os.PathLike) -> Path:
    """A part file's video path: as given when it exists, else relative to the dataset root."""
    return Path(path) if Path(path).exists() else Path(root) / path


def align_part(part: int, params: dict, layout: Layout) -> dict:
    """The align stage for one part: FACES shards of the videos of `layout.part_json(part)` into
    `layout.faces(part)` (+ `report.json`) and the QA gallery `layout.gallery("faces", part)`; returns the report.

    Params: the `align` group (detector, det_size, det_threshold, template, crop_size, jpeg_quality,
    reacquire_s, shard_rows, on_error, jobs), dataset.root (where relative video paths start) and executor
    (backend, address, providers: `affect.parallel.run_units`, `affect.models.ort_session`).
    The report gives, per track, the frames and the count of each reason a face is missing (`truncated`
    counts the frames a truncated file lost), and the videos skipped with why.
    """
    p, executor = params["align"], params.get("executor") or {}
    if p["on_error"] not in ("fail", "skip"):
        raise ValueError(f"align.on_error must be fail or skip, not {p['on_error']!r}")
    frames_path, out_dir = layout.frames(part), layout.faces(part)
    frames = read_arrow(frames_path)
    units, skipped = [], []
    # rows go by track name: videos in the order of their first track
    videos = read_part(layout.part_json(part))["videos"]
    for entry in sorted(videos, key=lambda v: min([t["track"] for t in v["tracks"]] or [v["video"]])):
        if not entry["tracks"]:
            skipped.append({"video": entry["video"], "why": "no tracks"})
            continue
        pts = frames.filter(pc.equal(frames.column("video"), entry["video"]))
        pts = pts.sort_by("frame").column("pts").to_numpy()
        if len(pts) == 0:
            skipped.append({"video": entry["video"], "why": f"no frames in {frames_path}"})
            continue
        tracks = [(t["track"], t["person"]) for t in entry["tracks"]]
        units.append((entry["video"], str(video_path(entry["path"], params["dataset"]["root"])), pts, tracks))
    options = {"jpeg_quality": p["jpeg_quality"], "crop_size": p["crop_size"], "template": p["template"],
               "reacquire_s": p["reacquire_s"]}
    detector = str(model_file(p["detector"], "det", layout.models))
    report: dict = {"tracks": {}, "skipped": skipped}
    with ShardWriter(out_dir, FACES, p["shard_rows"]) as writer:
        results = run_units(align_one, units, p["jobs"], f"align part {part}", _init_worker,
                            (detector, p["det_size"], p["det_threshold"], options,
                             executor.get("providers", "cpu")), executor)
        for (table, error), (video, path, _, _) in zip(results, units):
            if table is None:
                if p["on_error"] == "fail":
                    raise VideoError(f"{error} (set align.on_error: skip to skip it)")
                skipped.append({"video": video, "why": error})
                continue
            writer.write(table)
            for track in sorted(set(table.column("track").to_pylist())):
                rows = table.filter(pc.equal(table.column("track"), track))
                reasons = Counter(r for r in rows.column("reason").to_pylist() if r)
                report["tracks"][track] = {"frames": rows.num_rows,
                                           "found": int(pc.sum(rows.column("found")).as_py() or 0),
                                           **dict(sorted(reasons.items()))}
    for item in skipped:
        log.warning("skipped %s: %s", item["video"], item["why"])
    for track, counts in report["tracks"].items():
        if counts["found"] < counts["frames"]:
            log.info("%s: face in %d of %d frames (%s)", track, counts["found"], counts["frames"],
                     ", ".join(f"{k} {v}" for k, v in counts.items() if k not in ("frames", "found")))
    write_json(report, out_dir / "report.json", sort_keys=True)
    gallery(read_shards(out_dir), path=layout.gallery("faces", part))
    return report
