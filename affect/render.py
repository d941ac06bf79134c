"""A video to watch: the input with each track's face box, 5 keypoints and 106 landmarks drawn, and a panel per track beside it
with live valence/arousal, expression probabilities and AU probabilities, the original audio kept (MP4, H.264
and AAC).

Frames stream from the decoder (`affect.video.iter_frames`) through the drawing into an ffmpeg encoder pipe,
one frame in memory at a time. The output has one frame per decoded input frame, at the input's average frame
rate, so frame count and duration equal the input's (a variable-frame-rate input is shown at its average rate).
Frames without the track's face get no box and a "no face" panel: their predictions are shown greyed.
"""

from __future__ import annotations

import os
import subprocess
import tempfile

import cv2
import numpy as np
import pyarrow as pa

from affect.align import unalign_points
from affect.schema import AUS, CROP_SIZE, EXPRESSIONS, N_LANDMARKS
from affect.shards import atomic_path
from affect.video import VideoInfo, iter_frames, tool

PANEL_WIDTH = 300        # pixels per track
MIN_HEIGHT = 440         # pixels: the panel's content needs this much
BOX_COLOUR = (0, 255, 0)        # RGB, the face box and its 5 keypoints
LANDMARK_COLOUR = (255, 230, 0)  # RGB, the 106 landmarks (the masks are drawn from them)
FONT = cv2.FONT_HERSHEY_SIMPLEX


def _text(image: np.ndarray, text: str, xy: tuple[int, int], scale: float = 0.42, colour=(235, 235, 235)) -> None:
    cv2.putText(image, text.encode("ascii", "backslashreplace").decode(), xy, FONT, scale, colour, 1, cv2.LINE_AA)


def _bar(image: np.ndarray, x: int, y: int, width: int, value: float, colour, centred: bool = False) -> None:
    """A horizontal bar of `value` (0..1, or -1..1 from the middle when `centred`) in a grey frame."""
    cv2.rectangle(image, (x, y), (x + width, y + 10), (90, 90, 90), 1)
    if centred:
        mid = x + width // 2
        end = int(round(mid + np.clip(value, -1, 1) * width / 2))
        cv2.rectangle(image, (min(mid, end), y + 1), (max(mid, end), y + 9), colour, -1)
    else:
        cv2.rectangle(image, (x, y + 1), (x + int(round(np.clip(value, 0, 1) * width)), y + 9), colour, -1)


def draw_panel(panel: np.ndarray, track: str, found: bool, va: np.ndarray, expr_prob: np.ndarray,
               au_prob: np.ndarray, au: np.ndarray) -> None:
    """One track's panel (H, PANEL_WIDTH, 3) for one frame, in place."""
    panel[:] = 30
    on = (235, 235, 235) if found else (120, 120, 120)
    _text(panel, track if len(track) <= 30 else "..." + track[-27:], (8, 18), 0.5)
    _text(panel, "face found" if found else "NO FACE: prediction from black frames", (8, 38), 0.42,
          (0, 220, 0) if found else (255, 80, 80))
    y = 62
    for name, value in zip(("valence", "arousal"), va):
        _text(panel, f"{name} {value:+.2f}", (8, y + 9), colour=on)
        _bar(panel, 130, y, 160, float(value), (80, 160, 255) if found else (110, 110, 110), centred=True)
        y += 18
    y += 8
    best = int(np.argmax(expr_prob))
    for k, name in enumerate(EXPRESSIONS):
        _text(panel, f"{name[:9]:9s} {expr_prob[k]:.2f}", (8, y + 9), colour=(255, 210, 80) if k == best and found
              else on)
        _bar(panel, 130, y, 160, float(expr_prob[k]), (255, 170, 40) if found else (110, 110, 110))
        y += 16
    y += 8
    for k, name in enumerate(AUS):
        _text(panel, f"{name:5s} {au_prob[k]:.2f}{' on' if au[k] else ''}", (8, y + 9), colour=on)
        _bar(panel, 130, y, 160, float(au_prob[k]), (220, 90, 220) if au[k] and found else (110, 110, 110))
        y += 16


def _rows(faces: pa.Table) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    found = faces.column("found").to_numpy(zero_copy_only=False)
    box = faces.column("box").combine_chunks().flatten().to_numpy().reshape(-1, 4)
    kps = faces.column("kps").combine_chunks().flatten().to_numpy().reshape(-1, 5, 2)
    marks = (faces.column("landmarks").combine_chunks().flatten().to_numpy().reshape(-1, N_LANDMARKS, 2)
             if "landmarks" in faces.column_names else None)
    return found, box, kps, marks


def render_video(video: str | os.PathLike, info: VideoInfo, tracks: list[tuple[str, pa.Table, dict]],
                 path: str | os.PathLike, crop_size: int = CROP_SIZE, template: str = "arcface") -> None:
    """Write the rendered MP4 of `video` to `path`, atomically.

    `info`: the video's probe; `tracks`: per track (name, its FACES rows in frame order (box and kps in frame
    pixels), optionally with the LANDMARKS column "landmarks" (crop pixels of the `crop_size` crop aligned on
    `template`: drawn back in the frame), its predictions: "va" (N, 2), "expr_prob" (N, 7), "au_prob" (N, 12),
    "au" (N, 12)).
    """
    width, height = info.width, info.height
    canvas_w = width + PANEL_WIDTH * len(tracks)
    canvas_h = max(height, MIN_HEIGHT)
    canvas_w, canvas_h = canvas_w + canvas_w % 2, canvas_h + canvas_h % 2  # yuv420p wants even sides
    rate = info.n_frames / info.duration if info.duration > 0 else (info.fps_avg or 25.0)
    rows = [(name, *_rows(faces), pred) for name, faces, pred in tracks]
    canvas = np.zeros((canvas_h, canvas_w, 3), np.uint8)
    panel = np.zeros((canvas_h, PANEL_WIDTH, 3), np.uint8)
    with atomic_path(path) as tmp, tempfile.TemporaryFile() as log:
        cmd = [tool("ffmpeg"), "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s",
               f"{canvas_w}x{canvas_h}", "-framerate", f"{rate:.6f}", "-i", "pipe:", "-i", str(video),
               "-map", "0:v:0", "-map", "1:a:0?", "-c:v", "libx264", "-preset", "veryfast", "-crf", "23",
               "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "128k", "-movflags", "+faststart", "-f", "mp4",
               str(tmp)]
        encoder = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=log)
        try:
            for i, frame in enumerate(iter_frames(video)):
                if i >= info.n_frames:
                    break
                canvas[:] = 0
                canvas[:height, :width] = frame
                for t, (name, found, box, kps, marks, pred) in enumerate(rows):
                    if found[i]:
                        if marks is not None and np.isfinite(marks[i]).all():
                            points = unalign_points(marks[i], kps[i], crop_size, template)
                            for x, y in np.round(points).astype(int):
                                cv2.circle(canvas, (int(x), int(y)), 1, LANDMARK_COLOUR, -1)
                        x1, y1, x2, y2 = np.round(box[i]).astype(int)
                        cv2.rectangle(canvas, (x1, y1), (x2, y2), BOX_COLOUR, 2)
                        if len(rows) > 1:  # which panel is whose
                            _text(canvas, name.rsplit("_", 1)[-1], (x1, max(y1 - 6, 12)), 0.5, BOX_COLOUR)
                        for x, y in np.round(kps[i]).astype(int):
                            cv2.circle(canvas, (int(x), int(y)), 2, BOX_COLOUR, -1)
                    draw_panel(panel, name, bool(found[i]), pred["va"][i], pred["expr_prob"][i], pred["au_prob"][i],
                               pred["au"][i])
                    canvas[:, width + t * PANEL_WIDTH:width + (t + 1) * PANEL_WIDTH] = panel
                encoder.stdin.write(canvas.tobytes())
            encoder.stdin.close()
        except BrokenPipeError:
            pass
        finally:
            if not encoder.stdin.closed:
                encoder.stdin.close()
            if encoder.wait() != 0:
                log.seek(0)
                raise RuntimeError(f"{video}: rendering failed: {log.read().decode(errors='replace').strip()}")
