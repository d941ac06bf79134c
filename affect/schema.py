"""The tables the pipeline writes: their columns, and where each one lives (`Layout`). One place to read them,
one place to change them.

Per-part shards (`data/interim/<stage>/part-<p>/shard-*.arrow`) of the face stages line up row for
row: row i of a `faces` shard, the `landmarks` shard of the same name and the `masks` shard of the
same name describe the same (track, frame). Rows are ordered by track name, then frame.
Times are seconds on the video's presentation timeline, where 0 is the first video frame.

Every stage imports this module, and only the modules of its own step besides (so that DVC reruns a stage
only when its own code changes): the layout lives here rather than beside the steps.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from affect.shards import write_json

TASKS = ("va", "expr", "au")
TASK_FOLDERS = {"va": "VA", "expr": "EXPR", "au": "AU"}  # ABAW2's task names: predictions VA/, annotations VA_Set/
SETS = ("Train_Set", "Validation_Set")  # the annotation sets of the ABAW2 tree
EXPRESSIONS = ("Neutral", "Anger", "Disgust", "Fear", "Happiness", "Sadness", "Surprise")
AUS = ("AU1", "AU2", "AU4", "AU6", "AU7", "AU10", "AU12", "AU15", "AU23", "AU24", "AU25", "AU26")
VA_UNLABELLED = -5.0  # the annotation files' mark for an unannotated valence/arousal frame (tables use NaN)
CROP_SIZE = 112  # TSAV's crop side, pixels: the default of align.crop_size
N_LANDMARKS = 106
PERSONS = ("main", "left", "right")  # the one person of a video, or a side of a two-person video
PAIR = ("left", "right")             # the persons of a two-person video


def track_name(video: str, person: str) -> str:
    """A track's name: the video's name for its `main` person, `<video>_left` / `<video>_right` for a side."""
    if person not in PERSONS:
        raise ValueError(f"unknown person {person!r}; expected one of {', '.join(PERSONS)}")
    return video if person == "main" else f"{video}_{person}"


CORPUS_MARK = "~"  # joins an unlabelled corpus's name and a video's path in it: `vox~id10001~00001`


def corpus_of(video: str) -> str:
    """The unlabelled corpus (`dataset.unlabelled` subfolder) a video comes from; "" for the ABAW2 tree."""
    return video.split(CORPUS_MARK, 1)[0] if CORPUS_MARK in video else ""


def split_track(track: str) -> tuple[str, str]:
    """(video, person) read off a track's name: `x_left` -> ("x", "left"), `x` -> ("x", "main"). The index's
    tracks.parquet has the final word (a video may itself be named `x_left`)."""
    for person in PAIR:
        if track.endswith(f"_{person}"):
            return track[: -len(person) - 1], person
    return track, "main"


def is_labelled(task: str, values):
    """(N,) bool: the rows of one task's labels (numpy array or torch tensor) that carry a label.

    expr (N,): a class >= 0 (-1: none); au (N, 12): all twelve >= 0 (-1 in any: none); va (N, 2): valence
    and arousal both finite and neither -5 (NaN or -5: none). The annotation files, the LABELS table, the
    loader's batches and the metrics share these marks.
    """
    if task == "expr":
        return values >= 0
    if task == "au":
        return (values >= 0).all(1)
    finite = values.isfinite() if hasattr(values, "isfinite") else np.isfinite(values)
    return (finite & (values != VA_UNLABELLED)).all(1)


# index stage: data/interim/index/videos.parquet, one row per video file.
VIDEOS = pa.schema([
    ("video", pa.string()),          # file stem, unique in the dataset
    ("path", pa.string()),           # path of the file as found under the dataset root
    ("part", pa.int32()),            # stable hash of `video` modulo the number of parts
    ("fingerprint", pa.string()),    # sha256 of the file's bytes
    ("container", pa.string()),
    ("codec", pa.string()),
    ("width", pa.int32()),
    ("height", pa.int32()),
    ("fps_avg", pa.float64()),       # frames / duration as ffprobe's avg_frame_rate
    ("fps_nominal", pa.float64()),   # ffprobe's r_frame_rate
    ("n_frames", pa.int32()),        # counted by decoding packets, never duration * fps
    ("duration", pa.float64()),
    ("has_audio", pa.bool_()),
    ("audio_rate", pa.int32()),      # 0 without audio
    ("vfr", pa.bool_()),             # variable frame rate
])

# index stage: data/interim/index/tracks.parquet, one row per track (person in a video).
TRACKS = pa.schema([
    ("track", pa.string()),          # video stem, or <stem>_left / <stem>_right
    ("video", pa.string()),
    ("person", pa.string()),         # main | left | right
    ("part", pa.int32()),
    ("n_frames", pa.int32()),        # decoded frames of the video
    ("va_set", pa.string()),         # Train_Set | Validation_Set | "" (no annotation for the task)
    ("expr_set", pa.string()),
    ("au_set", pa.string()),
    ("va_rows", pa.int32()),         # annotation rows in the file (0 without one)
    ("expr_rows", pa.int32()),
    ("au_rows", pa.int32()),
    ("va_labelled", pa.int32()),     # labelled frames after reconciling rows with n_frames
    ("expr_labelled", pa.int32()),
    ("au_labelled", pa.int32()),
])

# split stage: data/interim/split/part-<p>/frames.arrow, one row per decoded video frame.
FRAMES = pa.schema([
    ("video", pa.string()),
    ("frame", pa.int32()),           # 0-based decode order; annotation line frame+1
    ("pts", pa.float64()),           # presentation time in seconds, 0 = first frame
])

# split stage: data/interim/split/part-<p>/audio.arrow, one row per video; WAVs beside it.
AUDIO = pa.schema([
    ("video", pa.string()),
    ("has_audio", pa.bool_()),
    ("wav", pa.string()),            # file name inside the part folder's audio/, "" without audio
    ("sample_rate", pa.int32()),
    ("n_samples", pa.int64()),       # sample 0 is at time 0 (late audio padded, early audio cut)
])

# align stage: data/interim/faces/part-<p>/shard-*.arrow, one row per (track, frame).
FACES = pa.schema([
    ("track", pa.string()),
    ("video", pa.string()),
    ("frame", pa.int32()),
    ("pts", pa.float64()),
    ("found", pa.bool_()),
    ("reason", pa.string()),         # "" when found, else why not: no_face | lost | other_side ...
    ("score", pa.float32()),         # detector score, 0 when not found
    ("box", pa.list_(pa.float32(), 4)),        # x1, y1, x2, y2 in frame pixels
    ("kps", pa.list_(pa.float32(), 10)),       # 5 keypoints (x, y) in frame pixels
    ("crop", pa.binary()),           # aligned RGB face (align.crop_size square, 112 for TSAV) as JPEG, b"" when not found
])

# landmarks stage: data/interim/landmarks/part-<p>/shard-*.arrow, row for row with faces.
LANDMARKS = pa.schema([
    ("track", pa.string()),
    ("frame", pa.int32()),
    ("landmarks", pa.list_(pa.float32(), 2 * N_LANDMARKS)),  # (x, y) in crop pixels; NaN when not found
])

# masks stage: data/interim/masks/part-<p>/shard-*.arrow, row for row with faces.
MASKS = pa.schema([
    ("track", pa.string()),
    ("frame", pa.int32()),
    ("mask", pa.binary()),           # 8-bit grey PNG of the crop's size, b"" when not found
])

# mel stage: data/interim/mel/part-<p>/mel.arrow, one row per video.
MEL = pa.schema([
    ("video", pa.string()),
    ("has_audio", pa.bool_()),
    ("hop_s", pa.float64()),         # seconds between columns; column c is centred at c * hop_s
    ("n_mels", pa.int32()),
    ("n_cols", pa.int32()),
    ("mel", pa.list_(pa.float32())),  # n_mels x n_cols in dB, row-major (mel-major); empty without audio
])

# labels stage: data/processed/labels.parquet, one row per (track, frame) of every track.
LABELS = pa.schema([
    ("track", pa.string()),
    ("frame", pa.int32()),
    ("valence", pa.float32()),       # NaN where unlabelled
    ("arousal", pa.float32()),
    ("expr", pa.int8()),             # 0..6, -1 where unlabelled
    ("au", pa.list_(pa.int8(), len(AUS))),  # 0/1, -1 where unlabelled
    ("va_set", pa.string()),
    ("expr_set", pa.string()),
    ("au_set", pa.string()),
])

# partition stage: data/processed/partition.parquet, one row per (track, frame, task) used.
PARTITION = pa.schema([
    ("track", pa.string()),
    ("frame", pa.int32()),
    ("task", pa.string()),           # va | expr | au
    ("side", pa.string()),           # train | val (labelled) | unlabelled (training side, no label)
])

# index stage: data/interim/index/parts/part-<p>.json, the videos of one part: what a per-part stage reads.
PART_VIDEO = {
    "video": str,        # the video's name (file stem)
    "path": str,         # its file, as found under the dataset root (or absolute)
    "fingerprint": str,  # sha256 of the file's bytes: the split stage refuses a file that changed
    "n_frames": int,     # decoded frames
    "has_audio": bool,
    "tracks": list,      # [{"track": name, "person": main | left | right}], sorted by track
}


def check_part(document: dict, where: str | os.PathLike) -> dict:
    """The part document if it has the PART_VIDEO fields with their types, else ValueError naming `where`."""
    if not isinstance(document, dict) or not isinstance(document.get("part"), int) \
            or not isinstance(document.get("videos"), list):
        raise ValueError(f"{where}: not a part file ({{'part': int, 'videos': [...]}}); "
                         f"rerun the index stage")
    for entry in document["videos"]:
        wrong = [key for key, kind in PART_VIDEO.items() if not isinstance(entry.get(key), kind)]
        wrong += [f"tracks[{i}]" for i, t in enumerate(entry.get("tracks") or [])
                  if not isinstance(t, dict) or not isinstance(t.get("track"), str) or t.get("person") not in PERSONS]
        if wrong:
            raise ValueError(f"{where}: video {entry.get('video')!r} has a missing or wrong {', '.join(wrong)}; "
                             f"rerun the index stage")
    return document


def read_part(path: str | os.PathLike) -> dict:
    """One part file, checked against PART_VIDEO."""
    return check_part(json.loads(Path(path).read_text()), path)


def write_part(document: dict, path: str | os.PathLike) -> None:
    """Write one part file (checked against PART_VIDEO), atomically: the one writer of the format."""
    write_json(check_part(document, path), path)


@dataclass(frozen=True)
class Layout:
    """Where every stage's outputs live, under `root` (`data/` in the project; a temporary folder for
    `affect predict` and the tests). Paths only: nothing is created. `models_dir` is the folder of the face
    models, `root/models` (the `models` stage's output) unless given."""

    root: Path = Path("data")
    models_dir: Path | None = field(default=None)

    @property
    def models(self) -> Path:
        return Path(self.models_dir) if self.models_dir is not None else Path(self.root) / "models"

    @property
    def interim(self) -> Path:
        return Path(self.root) / "interim"

    @property
    def index(self) -> Path:                       # index: videos.parquet, tracks.parquet, parts/, report.json
        return self.interim / "index"

    @property
    def tracks(self) -> Path:
        return self.index / "tracks.parquet"

    def part_json(self, part: int) -> Path:
        return self.index / "parts" / f"part-{part}.json"

    def split(self, part: int) -> Path:           # split: frames.arrow, audio.arrow, audio/<video>.wav, skipped.json
        return self.interim / "split" / f"part-{part}"

    def frames(self, part: int) -> Path:
        return self.split(part) / "frames.arrow"

    def faces(self, part: int) -> Path:           # align: shard-*.arrow, report.json
        return self.interim / "faces" / f"part-{part}"

    def landmarks(self, part: int) -> Path:
        return self.interim / "landmarks" / f"part-{part}"

    def masks(self, part: int) -> Path:
        return self.interim / "masks" / f"part-{part}"

    def mel(self, part: int) -> Path:
        return self.interim / "mel" / f"part-{part}" / "mel.arrow"

    def gallery(self, stage: str, part: int) -> Path:  # QA pictures of align (faces), landmarks and masks
        return Path(self.root) / "qa" / stage / f"part-{part}.png"

    @property
    def labels(self) -> Path:
        return Path(self.root) / "processed" / "labels.parquet"

    @property
    def partition(self) -> Path:
        return Path(self.root) / "processed" / "partition.parquet"

    @property
    def partition_counts(self) -> Path:
        return Path(self.root) / "processed" / "partition.json"

    def model(self, name: str) -> Path:           # train: student.pt, teacher.pt
        return Path(self.root) / "train" / f"{name}.pt"

    @property
    def checkpoints(self) -> Path:
        return Path(self.root) / "train" / "checkpoints"

    @property
    def evaluate(self) -> Path:                    # evaluate: metrics.json, plots/, predictions/
        return Path(self.root) / "evaluate"
