"""Predict one new video with a trained checkpoint, without DVC, through the pipeline's own preprocessing.

The video goes through the same library functions the DVC stages call, in-process, into a temporary
folder laid out like `data/interim` for one part (index/tracks.parquet and parts/part-0.json, then
split, faces, landmarks, masks and mel of part 0); the clip loader then builds a sample for every frame
and the model predicts it. Written per track (`<video>`, or `<video>_left` and `<video>_right`):
`OUT/{VA,EXPR,AU}/<track>.txt` (ABAW2 prediction files, one row per frame) and `OUT/timeline/<track>.png`.

Decisions:
- Two people: `two_person=None` decides from the faces in up to `PROBE_FRAMES` evenly spaced frames:
  two-person when at least two faces are found in more than half of them.
- Frames without a face are predicted like any other: their clip frames are black (the loader's rule),
  the same rule as the evaluate stage's prediction files.
- A video that cannot be read, or with no face in any frame of a track: PredictError.
- A video without an audio track: PredictError, unless `allow_silence`, when the audio stream is fed
  silence (as the training does for such videos) and a warning says so.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from affect import plots
from affect.align import align_part
from affect.data import ClipDataset, loader_options
from affect.detect import FaceDetector
from affect.evaluate import rows_by_track, run_model, track_rows, write_predictions
from affect.landmarks import landmarks_part, model_folder
from affect.mask import masks_part
from affect.mel import mel_part
from affect.model import load_model
from affect.models import model_file
from affect.schema import TASKS, TRACKS
from affect.shards import read_arrow, read_shards, sha256_of, write_parquet
from affect.split import split_part
from affect.video import VideoError, iter_frames, probe

log = logging.getLogger(__name__)

PROBE_FRAMES = 8


class PredictError(ValueError):
    """A video that cannot be predicted, with the reason."""


def count_people(video: str | os.PathLike, detector: FaceDetector, n_frames: int) -> tuple[int, int]:
    """(frames with at least two faces, frames looked at) over up to PROBE_FRAMES evenly spaced frames."""
    wanted = set(np.linspace(0, n_frames - 1, min(PROBE_FRAMES, n_frames)).round().astype(int).tolist())
    two = looked = 0
    for i, frame in enumerate(iter_frames(video)):
        if i in wanted:
            boxes, _ = detector.detect(frame)
            two += len(boxes) >= 2
            looked += 1
        if i >= max(wanted):
            break
    return two, looked


def write_index(video: Path, info, tracks: list[tuple[str, str]], interim: Path) -> Path:
    """index/tracks.parquet and index/parts/part-0.json for one video (no annotations); returns the part JSON."""
    rows = [{"track": track, "video": video.stem, "person": person, "part": 0, "n_frames": info.n_frames,
             **{f"{task}_{kind}": default for task in TASKS for kind, default in
                (("set", ""), ("rows", 0), ("labelled", 0))}} for track, person in tracks]
    write_parquet(pa.Table.from_pylist(rows, TRACKS), interim / "index" / "tracks.parquet")
    part = {"part": 0, "videos": [{"video": video.stem, "path": str(video.resolve()), "fingerprint": sha256_of(video),
                                   "n_frames": info.n_frames, "has_audio": info.has_audio,
                                   "tracks": [{"track": t, "person": p} for t, p in tracks]}]}
    path = interim / "index" / "parts" / "part-0.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(part, indent=1) + "\n")
    return path


def preprocess(video: Path, tracks: list[tuple[str, str]], info, params: dict, models_dir: Path,
               interim: Path) -> None:
    """The pipeline's per-part stages for one video into `interim` (laid out like data/interim, part 0)."""
    part_json = write_index(video, info, tracks, interim)
    split_dir = interim / "split" / "part-0"
    split_part(part_json, split_dir, sample_rate=params["audio"]["sample_rate"], jobs=1, on_error="fail")
    a = params["align"]
    align_part(part_json, split_dir / "frames.arrow", model_file(a["detector"], "det", models_dir),
               interim / "faces" / "part-0", det_size=a["det_size"], threshold=a["det_threshold"],
               template=a["template"], crop_size=a["crop_size"], jpeg_quality=a["jpeg_quality"],
               reacquire_s=a["reacquire_s"], shard_rows=a["shard_rows"], on_error="fail", jobs=1)
    scheme = params["landmarks"]["model"]
    landmarks_part(interim / "faces" / "part-0", model_file(model_folder(scheme), "landmarks", models_dir),
                   interim / "landmarks" / "part-0", scheme=scheme, jobs=1)
    masks_part(interim / "landmarks" / "part-0", interim / "masks" / "part-0", style=params["mask"]["style"],
               scheme=scheme, size=a["crop_size"], jobs=1)
    mel_part(split_dir, interim / "mel" / "part-0" / "mel.arrow", params["audio"])


def predict_video(video: str | os.PathLike, checkpoint: str | os.PathLike, out_dir: str | os.PathLike,
                  params: dict, models_dir: str | os.PathLike = "data/models", two_person: bool | None = None,
                  allow_silence: bool = False, batch_size: int = 16, work_dir: str | os.PathLike | None = None
                  ) -> list[Path]:
    """Prediction files and timeline PNG of every track of `video` under `out_dir`; returns the paths written.

    `params`: the pipeline's parameters (groups audio, align, landmarks, mask, clip), as in params.yaml.
    `work_dir`: where the temporary interim folder goes (default: the system's temporary folder).
    """
    video, out_dir, models_dir = Path(video), Path(out_dir), Path(models_dir)
    try:
        info = probe(video)
    except VideoError as e:
        raise PredictError(f"{video}: cannot read the video: {e}") from None
    if not info.has_audio and not allow_silence:
        raise PredictError(f"{video}: no audio track; the model needs the audio stream "
                           f"(pass --allow-silence to predict it with silence as audio)")
    if not info.has_audio:
        log.warning("%s: no audio track, predicting with silence as the audio input", video)
    if two_person is None:
        detector = FaceDetector(model_file(params["align"]["detector"], "det", models_dir),
                                params["align"]["det_size"], params["align"]["det_threshold"])
        two, looked = count_people(video, detector, info.n_frames)
        two_person = two > looked / 2
        log.info("%s: two or more faces in %d of %d sampled frames: %s", video, two, looked,
                 "two people (_left, _right)" if two_person else "one person")
    tracks = ([(f"{video.stem}_left", "left"), (f"{video.stem}_right", "right")] if two_person
              else [(video.stem, "main")])

    with tempfile.TemporaryDirectory(prefix="affect-predict-", dir=work_dir) as tmp:
        interim = Path(tmp) / "interim"
        try:
            preprocess(video, tracks, info, params, models_dir, interim)
        except VideoError as e:
            raise PredictError(f"{video}: cannot read the video: {e}") from None
        faces = read_shards(interim / "faces" / "part-0").select(["track", "frame", "found"])
        for track, _ in tracks:
            found = faces.filter(pc.equal(faces.column("track"), track)).column("found")
            if not pc.any(found).as_py():
                raise PredictError(f"{video}: no face found in any of its {len(found)} frames"
                                   + (f" ({track.rsplit('_', 1)[1]} half)" if two_person else ""))
        if not read_arrow(interim / "split" / "part-0" / "audio.arrow").column("has_audio")[0].as_py():
            if not allow_silence:
                raise PredictError(f"{video}: the audio track gives no samples; pass --allow-silence to predict "
                                   f"it with silence as audio")
            log.warning("%s: the audio track gives no samples, predicting with silence as the audio input", video)
        n_frames = read_arrow(interim / "split" / "part-0" / "frames.arrow").num_rows
        dataset = ClipDataset(interim, [(track, f) for track, _ in tracks for f in range(n_frames)],
                              **loader_options(params))
        outputs = run_model(load_model(checkpoint), dataset, batch_size, desc=f"predict {video.name}")
        times = {name: dataset.track_pts[i] for i, name in enumerate(dataset.track_names)}

    written, lookup = [], rows_by_track(outputs)
    for track, _ in tracks:
        pred = track_rows(outputs, lookup[track], track, np.arange(n_frames))
        written += write_predictions(track, pred, TASKS, out_dir)
        picture = out_dir / "timeline" / f"{track}.png"
        plots.timeline(track, times[track], pred, {}, picture)
        written.append(picture)
    return written
