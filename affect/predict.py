"""Predict new videos with a trained model, without DVC, through the pipeline's own preprocessing.

Everything about the inputs comes from the model file's record (`affect.pipeline.model_record`): detector,
landmark model, mask style, crop size, clip and audio parameters. A video is indexed as a one-video dataset
(`affect.pipeline.preprocess_video`: the index stage's own code and writer) into a temporary folder laid out
like `data/` (`affect.schema.Layout`); the per-part steps run on it, and
`affect.pipeline.infer` predicts every frame, as the evaluate stage does. Written per track (`<video>`, or
`<video>_left` and `<video>_right`): `OUT/{VA,EXPR,AU}/<track>.txt` (ABAW2 prediction files, one row per
frame) and `OUT/timeline/<track>.png`.

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

import logging
import os
import tempfile
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
from torch import nn

from affect import plots
from affect.data import ClipDataset
from affect.detect import FaceDetector
from affect.evaluate import track_predictions, write_predictions
from affect.models import model_file
from affect.pipeline import inference_device, infer, loader_options, preprocess_video, recorded_params
from affect.schema import TASKS, Layout, track_name
from affect.shards import read_arrow, read_shards
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


def predict_video(video: str | os.PathLike, model: nn.Module, record: dict, out_dir: str | os.PathLike,
                  models_dir: str | os.PathLike = "data/models", two_person: bool | None = None,
                  allow_silence: bool = False, batch_size: int = 32, work_dir: str | os.PathLike | None = None
                  ) -> list[Path]:
    """Prediction files and timeline PNG of every track of `video` under `out_dir`; returns the paths written.

    `model` and `record`: a model file's (`affect.tsav.load_checkpoint`). `work_dir`: where the temporary
    data folder goes (default: the system's temporary folder).
    """
    video, out_dir = Path(video), Path(out_dir)
    params = recorded_params(record)
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
        align = params["align"]
        detector = FaceDetector(model_file(align["detector"], "det", models_dir), align["det_size"],
                                align["det_threshold"])
        two, looked = count_people(video, detector, info.n_frames)
        two_person = two > looked / 2
        log.info("%s: two or more faces in %d of %d sampled frames: %s", video, two, looked,
                 "two people (_left, _right)" if two_person else "one person")
    tracks = [(track_name(video.stem, person), person) for person in (("left", "right") if two_person else ("main",))]

    with tempfile.TemporaryDirectory(prefix="affect-predict-", dir=work_dir) as tmp:
        layout = Layout(Path(tmp), models_dir=Path(models_dir))
        try:
            preprocess_video(video, tracks, params, layout)
        except VideoError as e:
            raise PredictError(f"{video}: cannot read the video: {e}") from None
        faces = read_shards(layout.faces(0)).select(["track", "frame", "found"])
        for track, _ in tracks:
            found = faces.filter(pc.equal(faces.column("track"), track)).column("found")
            if not pc.any(found).as_py():
                raise PredictError(f"{video}: no face found in any of its {len(found)} frames"
                                   + (f" ({track.rsplit('_', 1)[1]} half)" if two_person else ""))
        if not read_arrow(layout.split(0) / "audio.arrow").column("has_audio")[0].as_py():
            if not allow_silence:
                raise PredictError(f"{video}: the audio track gives no samples; pass --allow-silence to predict "
                                   f"it with silence as audio")
            log.warning("%s: the audio track gives no samples, predicting with silence as the audio input", video)
        n_frames = read_arrow(layout.frames(0)).num_rows
        dataset = ClipDataset(layout, [(track, f) for track, _ in tracks for f in range(n_frames)],
                              **loader_options(params))
        outputs = infer(model, dataset, batch_size, device=inference_device(), desc=f"predict {video.name}")
        times = {name: dataset.track_pts[i] for i, name in enumerate(dataset.track_names)}

    written = []
    for track, _ in tracks:
        pred = track_predictions(outputs, track)
        written += write_predictions(track, pred, TASKS, out_dir)
        picture = out_dir / "timeline" / f"{track}.png"
        plots.timeline(track, times[track], pred, {}, picture)
        written.append(picture)
    return written
