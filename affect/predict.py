"""Predict new videos with a trained model, without DVC, through the pipeline's own preprocessing.

Everything about the inputs comes from the model file's record (`affect.pipeline.model_record`): detector,
landmark model, mask style, crop size, clip and audio parameters. The videos of one call are indexed as one
dataset (`affect.pipeline.preprocess_videos`: the index stage's own code and writer) into a temporary folder laid
out like `data/` (`affect.schema.Layout`); the per-part steps run on it, and `affect.pipeline.infer` predicts
every frame of every video in one stream, as the evaluate stage does (one model load for all of them).

Written per track (`<video>`, or `<video>_left` and `<video>_right`):
- `OUT/{VA,EXPR,AU}/<track>.txt`: ABAW2 prediction files, one row per frame;
- `OUT/table/<track>.parquet` (and `.csv` with `csv=True`): the per-frame table, TABLE_COLUMNS;
- `OUT/timeline/<track>.png`: the timeline, stretches without a face shaded;
- `OUT/render/<video>.mp4` with `render=True`: the video with the face box, keypoints, landmarks and live bars
  (`affect.render`);
and per video `OUT/report/<video>.json`: frames decoded and announced, decoder errors, faces found per track.

Checked before any preprocessing, each a SetupError (the command line: one line, exit code 2): the output
folder is a folder (or can be one), the face models are in `models_dir`, every video is a file, and no two
videos share a name (their outputs would overwrite each other: refused, rename one). Per video, a PredictError
(the others are still predicted): a file ffmpeg cannot read, no audio track without `allow_silence`, no face in
any frame of a track.

Decisions:
- Two people: `two_person=None` decides from the faces in up to `PROBE_FRAMES` evenly spaced frames:
  two-person when at least two faces are found in more than half of them.
- Frames without a face are predicted like any other (their clip frames are black, the loader's rule, as in
  the evaluate stage's prediction files), and every output says which they are: the table's face_found and
  face_reason columns, the shaded timeline, the rendered video's "no face" panel.
- A damaged or truncated file (decoder errors, or the container announces more frames than decode): predicted
  on the frames that decode, with a warning, and recorded in its report and table metadata.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from torch import nn

from affect import plots
from affect.data import ClipDataset
from affect.detect import FaceDetector
from affect.evaluate import track_predictions, write_predictions
from affect.landmarks import model_folder
from affect.mel import MelError
from affect.models import ModelError, model_file
from affect.exact import torch_threads
from affect.pipeline import inference_device, infer, loader_options, preprocess_videos, recorded_params
from affect.render import render_video
from affect.schema import AUS, EXPRESSIONS, TASKS, Layout, track_name
from affect.shards import atomic_path, read_arrow, read_shards, write_json, write_parquet
from affect.split import SplitError
from affect.video import VideoError, VideoInfo, iter_frames, probe

log = logging.getLogger(__name__)

PROBE_FRAMES = 8
KEYPOINTS = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")  # as seen in the picture
TABLE_COLUMNS = (
    ["time_s", "frame", "face_found", "face_reason", "face_score", "box_x1", "box_y1", "box_x2", "box_y2"]
    + [f"{k}_{axis}" for k in KEYPOINTS for axis in ("x", "y")]
    + [f"p_{e}" for e in EXPRESSIONS] + ["expression"]
    + [f"p_{au}" for au in AUS] + list(AUS) + ["valence", "arousal"])


class SetupError(ValueError):
    """A call that cannot start (bad output folder, missing face models, bad video list), found before any
    preprocessing."""


class PredictError(ValueError):
    """A video that cannot be predicted, with the reason."""


@dataclass
class Video:
    """One input video that passed the checks: its path, probe, tracks [(track, person)] and notes."""

    path: Path
    info: VideoInfo
    tracks: list[tuple[str, str]] = field(default_factory=list)
    damaged: str = ""  # why the file looks damaged or truncated, "" when it does not


@dataclass
class Result:
    """What one call wrote and what failed: paths written, one error line per failed video, and seconds spent
    in preprocessing (probe, split, align, landmarks, masks, mel), inference (loader and model) and writing
    (files, timelines, rendering), with the seconds of video predicted."""

    written: list[Path] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    seconds: dict = field(default_factory=lambda: {"preprocess": 0.0, "infer": 0.0, "write": 0.0, "video": 0.0})


def check_setup(videos: list[Path], out_dir: Path, params: dict, models_dir: Path) -> None:
    """SetupError for a call that cannot start: `out_dir` is an existing file, a face model of `params` is
    missing from `models_dir`, a video is missing or a folder, two videos share a name."""
    if out_dir.exists() and not out_dir.is_dir():
        raise SetupError(f"--out {out_dir} is an existing file, not a folder; name a folder")
    try:
        model_file(params["align"]["detector"], "det", models_dir)
        model_file(model_folder(params["landmarks"]["model"]), "landmarks", models_dir)
    except ModelError as e:
        raise SetupError(f"{e} (or pass --models-dir, the folder the models stage wrote)") from None
    for video in videos:
        if video.is_dir():
            raise SetupError(f"{video} is a folder, not a video file; name the video files in it")
        if not video.is_file():
            raise SetupError(f"{video}: no such file")
    by_name: dict[str, Path] = {}
    for video in videos:
        if video.stem in by_name and by_name[video.stem].resolve() != video.resolve():
            raise SetupError(f"{by_name[video.stem]} and {video} have the same name {video.stem!r}: their outputs "
                             f"would overwrite each other; refused, rename one or predict them with different --out")
        by_name[video.stem] = video


def _reason(error: Exception, video: Path) -> str:
    """An error's text without the path it names (the caller names it once)."""
    text = str(error)
    for name in (str(video.resolve()), str(video)):
        text = text.replace(f"{name}: ", "").replace(name, "the file")
    return text


def damage(info: VideoInfo) -> str:
    """Why a probed file looks damaged or truncated ("" when it does not): decoder errors, or a container that
    announces more frames than decode (one more is normal for some AVI files)."""
    why = []
    if info.header_frames > info.n_frames + 1:
        why.append(f"the container announces {info.header_frames} frames, {info.n_frames} decode")
    if info.errors:
        why.append(f"{len(info.errors)} decoder error line(s), first: {info.errors[0]}")
    return "; ".join(why)


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


def check_video(path: Path, params: dict, models_dir: Path, two_person: bool | None,
                allow_silence: bool) -> Video:
    """The probed video with its tracks, or PredictError (unreadable, no audio track without `allow_silence`)."""
    try:
        info = probe(path)
    except VideoError as e:
        raise PredictError(f"{path}: cannot read the video: {_reason(e, path)}") from None
    if not info.has_audio and not allow_silence:
        raise PredictError(f"{path}: no audio track; the model needs the audio stream "
                           f"(pass --allow-silence to predict it with silence as audio)")
    if not info.has_audio:
        log.warning("%s: no audio track, predicting with silence as the audio input", path)
    video = Video(path, info, damaged=damage(info))
    if video.damaged:
        log.warning("%s: damaged or truncated (%s); predicting the %d frames that decode", path, video.damaged,
                    info.n_frames)
    if two_person is None:
        align = params["align"]
        detector = FaceDetector(model_file(align["detector"], "det", models_dir), align["det_size"],
                                align["det_threshold"])
        two, looked = count_people(path, detector, info.n_frames)
        two_person = two > looked / 2
        log.info("%s: two or more faces in %d of %d sampled frames: %s", path, two, looked,
                 "two people (_left, _right)" if two_person else "one person")
    video.tracks = [(track_name(path.stem, person), person)
                    for person in (("left", "right") if two_person else ("main",))]
    return video


def frame_table(faces: pa.Table, times: np.ndarray, pred: dict[str, np.ndarray], report: dict) -> pa.Table:
    """The per-frame table of one track (TABLE_COLUMNS): `faces` its FACES rows in frame order, `times` its frame
    times (s), `pred` its predictions (`track_predictions`); `report` goes into the metadata under "affect"."""
    found = faces.column("found").to_numpy(zero_copy_only=False)
    box = faces.column("box").combine_chunks().flatten().to_numpy().reshape(-1, 4).astype(np.float32)
    kps = faces.column("kps").combine_chunks().flatten().to_numpy().reshape(-1, 10).astype(np.float32)
    box[~found], kps[~found] = np.nan, np.nan
    columns = {"time_s": pa.array(times, pa.float64()), "frame": faces.column("frame"),
               "face_found": faces.column("found"), "face_reason": faces.column("reason"),
               "face_score": faces.column("score")}
    columns |= {name: pa.array(box[:, k]) for k, name in enumerate(["box_x1", "box_y1", "box_x2", "box_y2"])}
    columns |= {name: pa.array(kps[:, k]) for k, name in enumerate(TABLE_COLUMNS[9:19])}
    columns |= {f"p_{e}": pa.array(pred["expr_prob"][:, k].astype(np.float32)) for k, e in enumerate(EXPRESSIONS)}
    columns["expression"] = pa.array(np.asarray(EXPRESSIONS, object)[pred["expr"]], pa.string())
    columns |= {f"p_{au}": pa.array(pred["au_prob"][:, k].astype(np.float32)) for k, au in enumerate(AUS)}
    columns |= {au: pa.array(pred["au"][:, k].astype(np.int8)) for k, au in enumerate(AUS)}
    columns |= {"valence": pa.array(pred["va"][:, 0].astype(np.float32)),
                "arousal": pa.array(pred["va"][:, 1].astype(np.float32))}
    table = pa.table(columns)
    return table.replace_schema_metadata({"affect": json.dumps(report, sort_keys=True)})


def write_csv(table: pa.Table, path: Path) -> None:
    """The table as CSV, atomically."""
    with atomic_path(path) as tmp:
        pacsv.write_csv(table, tmp)


def predict_videos(videos: list[str | os.PathLike], model: nn.Module, record: dict, out_dir: str | os.PathLike,
                   models_dir: str | os.PathLike = "data/models", two_person: bool | None = None,
                   allow_silence: bool = False, batch_size: int = 32, csv: bool = False, render: bool = False,
                   work_dir: str | os.PathLike | None = None, threads: int = 2) -> Result:
    """Predict every frame of `videos` with `model` (and `record`, a model file's, `affect.tsav.load_checkpoint`)
    in one stream; write the outputs of the module docstring under `out_dir`.

    SetupError before any work for a call that cannot start; a video that cannot be predicted is an entry of
    `Result.errors` and the others go on. `work_dir`: where the temporary data folder goes (default: the
    system's temporary folder). `threads`: torch's CPU threads of inference (the evaluate stage's
    `evaluate.threads` gives its bytes; 0 = all cores).
    """
    paths, out_dir, models_dir = [Path(v) for v in videos], Path(out_dir), Path(models_dir)
    params = recorded_params(record)
    check_setup(paths, out_dir, params, models_dir)
    result = Result()
    start = time.perf_counter()
    accepted: list[Video] = []
    for path in dict.fromkeys(paths):
        try:
            accepted.append(check_video(path, params, models_dir, two_person, allow_silence))
        except PredictError as e:
            result.errors.append(str(e))
    if not accepted:
        return result
    owners: dict[str, Path] = {}
    for video in accepted:
        for track, _ in video.tracks:
            if track in owners:
                raise SetupError(f"{owners[track]} and {video.path} both give a track named {track!r} (a two-person "
                                 f"video's _left/_right): refused, rename one")
            owners[track] = video.path

    with tempfile.TemporaryDirectory(prefix="affect-predict-", dir=work_dir) as tmp:
        layout = Layout(Path(tmp), models_dir=models_dir)
        try:
            preprocess_videos([v.path for v in accepted], {v.path.stem: v.tracks for v in accepted}, params, layout)
        except (VideoError, SplitError, MelError) as e:  # a file that probes but fails to decode on the way
            result.errors.append(f"cannot preprocess {', '.join(str(v.path) for v in accepted)}: {e}")
            return result
        faces = read_shards(layout.faces(0)).drop_columns(["crop"])
        if render:  # row for row with the faces
            faces = faces.append_column("landmarks", read_shards(layout.landmarks(0)).column("landmarks"))
        audio = read_arrow(layout.split(0) / "audio.arrow").to_pylist()
        has_samples = {row["video"]: row["has_audio"] for row in audio}
        ready = []
        for video in accepted:
            try:
                check_faces(video, faces)
            except PredictError as e:
                result.errors.append(str(e))
                continue
            if video.info.has_audio and not has_samples[video.path.stem]:
                if not allow_silence:
                    result.errors.append(f"{video.path}: the audio track gives no samples; pass --allow-silence "
                                         f"to predict it with silence as audio")
                    continue
                log.warning("%s: the audio track gives no samples, predicting with silence as the audio input",
                            video.path)
            ready.append(video)
        if not ready:
            return result
        dataset = ClipDataset(layout, [(track, f) for v in ready for track, _ in v.tracks
                                       for f in range(v.info.n_frames)], **loader_options(params))
        times = {name: dataset.track_pts[i] for i, name in enumerate(dataset.track_names)}
        result.seconds["preprocess"] = time.perf_counter() - start
        start = time.perf_counter()
        with torch_threads(threads):  # evaluate.threads: the evaluate stage's bytes for the same model
            outputs = infer(model, dataset, batch_size, device=inference_device(),
                            desc=f"predict {len(ready)} video(s)")
        result.seconds["infer"] = time.perf_counter() - start
        start = time.perf_counter()
        for video in ready:
            result.written += write_video(video, faces, times, outputs, out_dir, csv)
            if render:
                picture = out_dir / "render" / f"{video.path.stem}.mp4"
                render_video(video.path, video.info, [
                    (track, faces_of(faces, track), track_predictions(outputs, track)) for track, _ in video.tracks],
                    picture, params["align"]["crop_size"], params["align"]["template"])
                result.written.append(picture)
            result.seconds["video"] += video.info.duration
        result.seconds["write"] = time.perf_counter() - start
    return result


def faces_of(faces: pa.Table, track: str) -> pa.Table:
    """One track's FACES rows (without crops), in frame order."""
    return faces.filter(pc.equal(faces.column("track"), track)).sort_by("frame")


def check_faces(video: Video, faces: pa.Table) -> None:
    """PredictError when a track of `video` has no face in any frame."""
    for track, person in video.tracks:
        found = faces_of(faces, track).column("found")
        if not pc.any(found).as_py():
            raise PredictError(f"{video.path}: no face found in any of its {len(found)} frames"
                               + (f" ({person} half)" if person != "main" else ""))


def write_video(video: Video, faces: pa.Table, times: dict, outputs: dict, out_dir: Path, csv: bool) -> list[Path]:
    """The outputs of one video's tracks (prediction files, table, timeline) and its report; the paths written."""
    report = {"video": str(video.path), "frames": video.info.n_frames,
              "announced_frames": video.info.header_frames, "damaged": video.damaged,
              "decoder_errors": list(video.info.errors[:20]), "has_audio": video.info.has_audio,
              "duration_s": video.info.duration, "tracks": {}}
    written = []
    for track, _ in video.tracks:
        rows = faces_of(faces, track)
        found = rows.column("found").to_numpy(zero_copy_only=False)
        report["tracks"][track] = {"frames": len(found), "face_frames": int(found.sum())}
        pred = track_predictions(outputs, track)
        written += write_predictions(track, pred, TASKS, out_dir)
        table = frame_table(rows, times[track], pred, report | {"track": track})
        write_parquet(table, out_dir / "table" / f"{track}.parquet")
        written.append(out_dir / "table" / f"{track}.parquet")
        if csv:
            write_csv(table, out_dir / "table" / f"{track}.csv")
            written.append(out_dir / "table" / f"{track}.csv")
        picture = out_dir / "timeline" / f"{track}.png"
        plots.timeline(track, times[track], pred, {}, picture, face=found)
        written.append(picture)
    write_json(report, out_dir / "report" / f"{video.path.stem}.json", sort_keys=True)
    written.append(out_dir / "report" / f"{video.path.stem}.json")
    if video.damaged:
        log.warning("%s: recorded as damaged in %s", video.path, written[-1])
    return written
