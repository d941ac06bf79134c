"""The clip loader: TSAV samples straight from the memory-mapped Arrow shards, and the mixed batch sampler.

One sample is one target frame of one track (docs/method.md, "TSAV"):
- "clip": float32 (4, L, S, S), RGB + mask of L = clip_length frames `dilation` apart (S = crop_size, the
  side of the stored crops and masks, align.crop_size: 112 for TSAV), the target
  frame last (anchor "last": t - (L-1)*d, ..., t) or at index L // 2 (anchor "center"). Frames before
  the start or after the end of the video, or without a face, are black with a black mask. RGB is
  normalised with the Kinetics mean / std, the mask with 0.5 / 0.225, black included (as TSAV does).
- "mel": float32 (1, n_mels, W), W = round(window_s / hop_s) + 1 columns centred on the column of the
  target frame's time, (dB - audio_mean) / audio_std. Where the window runs past either end of the
  audio it is padded with the value zero samples get in that recording (peak - top_db, at least
  -100 dB: see affect.mel); a video without audio is all silence, -100 dB.
- "expr" int64 (-1 = no label), "au" float32 (12,) (-1 = no label), "va" float32 (2,) (NaN = no
  label), "track" str, "frame" int64. Labels are shown only for the (frame, task) pairs that the
  partition puts on the dataset's side.
- "unlabelled" bool (3,), one flag per task in TASKS order: the partition lists this (frame, task) as
  unlabelled training data, the only pairs the Mean Teacher's consistency loss may use. A missing label
  is not the same thing: a pair held out for validation shows no label and is not unlabelled either, so
  it gets no loss at all (`affect.losses`).

`ClipDataset` is four small parts: the index of its tracks (`index_tracks`: video, part, the face-shard row of
every frame, frame times), the memory maps of a part's shards (`open_part`, opened once per process), the
decoding of crops and masks (`decode_crop`) and the mel window (`mel_window`).
Workers: the dataset holds only paths and numpy index arrays; each process memory-maps the shards it
needs on first use (never pickled), and crops / masks are decoded from views of the mapped buffers.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Iterator, Sequence

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch
from torch.utils.data import Dataset, Sampler

from affect.images import decode_image
from affect.labels import label_arrays
from affect.mel import SILENCE_DB, floor_db
from affect.schema import AUS, CROP_SIZE, TASKS, Layout, is_labelled
from affect.shards import read_arrow, shard_paths

log = logging.getLogger(__name__)

CLIP_MEAN = (0.43216, 0.394666, 0.37645, 0.5)    # Kinetics RGB, then the mask
CLIP_STD = (0.22803, 0.22145, 0.216989, 0.225)
ANCHORS = ("last", "center")


def clip_offsets(clip_length: int, dilation: int, anchor: str) -> np.ndarray:
    """Frame offsets of a clip relative to its target frame (last: -(L-1)*d .. 0; center: target at L // 2)."""
    if anchor not in ANCHORS:
        raise ValueError(f"clip anchor {anchor!r}: expected one of {', '.join(ANCHORS)}")
    target = clip_length - 1 if anchor == "last" else clip_length // 2
    return (np.arange(clip_length, dtype=np.int64) - target) * dilation


def mel_window(mel: np.ndarray, centre: int, width: int, pad: float) -> np.ndarray:
    """Columns centre - (width-1)//2 .. of `mel` (n_mels, n_cols), `pad` where they fall outside."""
    out = np.full((mel.shape[0], width), pad, np.float32)
    start = centre - (width - 1) // 2
    lo, hi = max(start, 0), min(start + width, mel.shape[1])
    if hi > lo:
        out[:, lo - start:hi - start] = mel[:, lo:hi]
    return out


def fill_times(times: np.ndarray, where: str) -> np.ndarray:
    """Frame times with the frames the split stage did not time (NaN) interpolated, or extrapolated at the
    median frame interval, and a warning naming `where`; ValueError when no frame has a time."""
    known = ~np.isnan(times)
    if known.all():
        return times
    if not known.any():
        raise ValueError(f"{where}: no frame has a time ({len(times)} frames in the index); rerun the split stage")
    log.warning("%s: %d of the %d frames have no time; interpolated", where, int((~known).sum()), len(times))
    frames = np.arange(len(times))
    step = float(np.median(np.diff(times[known]) / np.diff(frames[known]))) if known.sum() > 1 else 0.04
    filled = np.interp(frames, frames[known], times[known])
    first, last = np.flatnonzero(known)[[0, -1]]
    filled[:first] = times[first] - (first - frames[:first]) * step
    filled[last + 1:] = times[last] + (frames[last + 1:] - last) * step
    return filled


class _BinaryColumn:
    """Zero-copy access to the values of a binary column of memory-mapped record batches."""

    def __init__(self, column: pa.ChunkedArray):
        self.starts, self.offsets, self.data = [], [], []
        start = 0
        for chunk in column.chunks:
            _, offsets, data = chunk.buffers()
            self.starts.append(start)
            self.offsets.append(np.frombuffer(offsets, np.int32)[chunk.offset:chunk.offset + len(chunk) + 1])
            self.data.append(np.frombuffer(data, np.uint8) if data is not None else np.zeros(0, np.uint8))
            start += len(chunk)
        self.starts = np.asarray(self.starts + [start], np.int64)

    def __getitem__(self, row: int) -> np.ndarray:
        k = int(np.searchsorted(self.starts, row, side="right")) - 1
        offsets = self.offsets[k]
        r = row - self.starts[k]
        return self.data[k][offsets[r]:offsets[r + 1]]


def face_shards(layout: Layout, part: int) -> list[Path]:
    """The faces shards of one part, checked against its masks shards (the same names, row for row)."""
    faces, masks = shard_paths(layout.faces(part)), shard_paths(layout.masks(part))
    if not faces:
        raise FileNotFoundError(f"{layout.faces(part)}: no shards; run the align stage")
    if [p.name for p in faces] != [p.name for p in masks]:
        raise ValueError(f"{layout.faces(part)} and {layout.masks(part)}: shards differ "
                         f"({len(faces)} vs {len(masks)} files); rerun the masks stage")
    return faces


def index_tracks(layout: Layout, names: np.ndarray) -> dict:
    """Per track of `names`: "video" (its video), "part", "face_rows" (the part's global face-shard row of each
    frame, -1 without a face) and "pts" (frame times, seconds), from the index, split and align outputs."""
    tracks = pq.read_table(layout.tracks, columns=["track", "video", "part", "n_frames"]).to_pylist()
    by_name = {t["track"]: t for t in tracks}
    missing = [t for t in names if t not in by_name]
    if missing:
        raise ValueError(f"{layout.tracks}: no track {missing[0]!r} ({len(missing)} sample tracks unknown)")
    video = [by_name[t]["video"] for t in names]
    part = np.array([by_name[t]["part"] for t in names], np.int32)
    face_rows = [np.full(by_name[t]["n_frames"], -1, np.int64) for t in names]
    pts: list[np.ndarray] = [np.zeros(0)] * len(names)
    wanted = {t: i for i, t in enumerate(names)}
    for p in sorted(set(part.tolist())):
        frames = read_arrow(layout.frames(p)).sort_by([("video", "ascending"), ("frame", "ascending")])
        videos = frames.column("video").to_numpy(zero_copy_only=False)
        frame, times = frames.column("frame").to_numpy(), frames.column("pts").to_numpy()
        for i in np.flatnonzero(part == p):
            lo = np.searchsorted(videos, video[i], side="left")
            hi = np.searchsorted(videos, video[i], side="right")
            known = np.full(len(face_rows[i]), np.nan)
            keep = frame[lo:hi] < len(known)
            known[frame[lo:hi][keep]] = times[lo:hi][keep]
            pts[i] = fill_times(known, f"{layout.frames(p)}, video {video[i]}")
        start = 0
        for shard in face_shards(layout, p):
            faces = read_arrow(shard).select(["track", "frame", "found"])
            track = faces.column("track").to_numpy(zero_copy_only=False)
            frame = faces.column("frame").to_numpy()
            found = faces.column("found").to_numpy(zero_copy_only=False)
            for name in np.unique(track):
                i = wanted.get(name)
                if i is None:
                    continue
                rows = np.flatnonzero((track == name) & found & (frame < len(face_rows[i])))
                face_rows[i][frame[rows]] = start + rows
            start += faces.num_rows
    return {"video": video, "part": part, "face_rows": face_rows, "pts": pts}


def open_part(layout: Layout, part: int, top_db: float) -> dict:
    """Memory maps of one part's crops, masks and spectrograms, and a cache for its videos' mel views."""
    shards = face_shards(layout, part)
    faces = [read_arrow(p).column("crop") for p in shards]
    masks = [read_arrow(layout.masks(part) / p.name).column("mask") for p in shards]
    if [len(c) for c in faces] != [len(c) for c in masks]:
        raise ValueError(f"{layout.masks(part)}: rows differ from {layout.faces(part)}")
    mel = read_arrow(layout.mel(part))
    return {"crop": _BinaryColumn(pa.chunked_array([c for col in faces for c in col.chunks], pa.binary())),
            "mask": _BinaryColumn(pa.chunked_array([c for col in masks for c in col.chunks], pa.binary())),
            "mel": mel, "mel_rows": {v: i for i, v in enumerate(mel.column("video").to_pylist())},
            "audio": {}, "top_db": top_db, "where": layout.mel(part)}


def video_mel(opened: dict, video: str) -> tuple[np.ndarray, float, float]:
    """(mel dB view (n_mels, n_cols), hop_s, pad dB) of one video of an `open_part` part."""
    if video not in opened["audio"]:
        row = opened["mel_rows"].get(video)
        if row is None:
            raise ValueError(f"{opened['where']}: no row for video {video!r}")
        mel = opened["mel"]
        n_mels, n_cols = mel.column("n_mels")[row].as_py(), mel.column("n_cols")[row].as_py()
        values = mel.column("mel")[row].values.to_numpy(zero_copy_only=True).reshape(n_mels, n_cols)
        pad = floor_db(values, opened["top_db"]) if mel.column("has_audio")[row].as_py() else SILENCE_DB
        opened["audio"][video] = (values, mel.column("hop_s")[row].as_py(), pad)
    return opened["audio"][video]


def decode_crop(data: np.ndarray, grey: bool, size: int, where: str) -> np.ndarray:
    """A stored crop (RGB) or mask (`grey`), checked to be `size` square; ValueError naming `where` if not."""
    image = decode_image(data, grey)
    if image is None or image.shape[:2] != (size, size):
        found = "not an image" if image is None else f"{image.shape[1]}x{image.shape[0]}"
        raise ValueError(f"{where} is {found}, expected {size}x{size} (align.crop_size); rerun the align and "
                         f"masks stages with the same crop size")
    return image


class ClipDataset(Dataset):
    """TSAV samples for (track, frame) pairs from the shards of `layout` (see the module docstring).

    `samples`: a table with columns track and frame, or a sequence of (track, frame) pairs. `labels`:
    arrays "expr" (N,) int64, "au" (N, 12) float32, "va" (N, 2) float32 and "unlabelled" (N, 3) bool
    aligned with the samples; None gives every sample "no label" and no unlabelled task (prediction).
    `augment` is called on each sample dict.
    """

    _scale = torch.tensor([1.0 / (255.0 * s) for s in CLIP_STD]).view(4, 1, 1, 1)
    _shift = torch.tensor([m / s for m, s in zip(CLIP_MEAN, CLIP_STD)]).view(4, 1, 1, 1)

    def __init__(self, layout: Layout, samples: pa.Table | Sequence[tuple[str, int]],
                 clip_length: int = 8, dilation: int = 6, anchor: str = "last", window_s: float = 10.0,
                 audio_mean: float = -14.8, audio_std: float = 19.895, top_db: float = 80.0,
                 crop_size: int = CROP_SIZE, augment: Callable[[dict], dict] | None = None,
                 labels: dict[str, np.ndarray] | None = None):
        self.layout = layout
        self.crop_size = crop_size
        if not isinstance(samples, pa.Table):
            samples = pa.table({"track": [t for t, _ in samples], "frame": [int(f) for _, f in samples]},
                               schema=pa.schema([("track", pa.string()), ("frame", pa.int64())]))
        self.offsets = clip_offsets(clip_length, dilation, anchor)
        self.window_s, self.audio_mean, self.audio_std, self.top_db = window_s, audio_mean, audio_std, top_db
        self.augment = augment
        self.track_names = np.unique(samples.column("track").to_numpy(zero_copy_only=False)).astype(object)
        self.sample_track = pc.index_in(samples.column("track"), pa.array(self.track_names, pa.string())) \
            .to_numpy().astype(np.int32)
        self.sample_frame = samples.column("frame").to_numpy().astype(np.int64)
        n = samples.num_rows
        self.labels = labels if labels is not None else {
            "expr": np.full(n, -1, np.int64), "au": np.full((n, len(AUS)), -1, np.float32),
            "va": np.full((n, 2), np.nan, np.float32), "unlabelled": np.zeros((n, len(TASKS)), bool)}
        tracks = index_tracks(layout, self.track_names)
        self.track_video, self.track_part = tracks["video"], tracks["part"]
        self.face_rows, self.track_pts = tracks["face_rows"], tracks["pts"]
        self._parts: dict[int, dict] = {}

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_parts"] = {}
        return state

    def _part(self, part: int) -> dict:
        """This process's memory maps of one part (opened on first use)."""
        if part not in self._parts:
            self._parts[part] = open_part(self.layout, part, self.top_db)
        return self._parts[part]

    def __len__(self) -> int:
        return len(self.sample_frame)

    def clip_frames(self, index: int) -> np.ndarray:
        """Frame numbers of sample `index`'s clip (may fall outside the video: those frames are black)."""
        return self.sample_frame[index] + self.offsets

    def clip(self, index: int) -> torch.Tensor:
        """The normalised (4, L, S, S) clip of sample `index` (S = crop_size)."""
        i, rows = int(self.sample_track[index]), self.face_rows[int(self.sample_track[index])]
        opened = self._part(int(self.track_part[i]))
        size = self.crop_size
        clip = np.zeros((4, len(self.offsets), size, size), np.uint8)  # planar: contiguous copies
        for k, frame in enumerate(self.clip_frames(index)):
            row = rows[frame] if 0 <= frame < len(rows) else -1
            if row < 0:
                continue
            crop, mask = opened["crop"][row], opened["mask"][row]
            where = f"{self.layout.interim}: crop or mask of {self.track_names[i]} frame {frame}"
            if crop.size:
                clip[0, k], clip[1, k], clip[2, k] = cv2.split(decode_crop(crop, False, size, where))
            if mask.size:
                clip[3, k] = decode_crop(mask, True, size, where)
        return torch.from_numpy(clip).float().mul_(self._scale).sub_(self._shift)

    @property
    def silent_mel(self) -> float:
        """The normalised value of every mel bin of a video without audio (SILENCE_DB), as `mel` computes it
        (float32), for the student's silent-mel augmentation (`affect.mean_teacher.silence`)."""
        return float(torch.tensor(SILENCE_DB).sub_(self.audio_mean).div_(self.audio_std))

    def mel(self, index: int) -> torch.Tensor:
        """The normalised (1, n_mels, W) mel window centred on sample `index`'s frame time."""
        i, target = int(self.sample_track[index]), int(self.sample_frame[index])
        values, hop_s, pad = video_mel(self._part(int(self.track_part[i])), self.track_video[i])
        width = int(round(self.window_s / hop_s)) + 1
        window = mel_window(values, int(round(self.track_pts[i][target] / hop_s)), width, pad)
        return torch.from_numpy(window).sub_(self.audio_mean).div_(self.audio_std).unsqueeze(0)

    def __getitem__(self, index: int) -> dict:
        i, target = int(self.sample_track[index]), int(self.sample_frame[index])
        if not 0 <= target < len(self.face_rows[i]):
            raise IndexError(f"sample {index}: frame {target} is outside track {self.track_names[i]} "
                             f"({len(self.face_rows[i])} frames)")
        sample = {"clip": self.clip(index), "mel": self.mel(index), **self.targets(index),
                  "track": str(self.track_names[i]), "frame": torch.tensor(target, dtype=torch.int64)}
        return self.augment(sample) if self.augment is not None else sample

    def targets(self, index: int | np.ndarray) -> dict[str, torch.Tensor]:
        """The labels and the unlabelled flags of sample `index` (or of an array of samples, stacked)."""
        return {"expr": torch.as_tensor(self.labels["expr"][index], dtype=torch.int64),
                "au": torch.tensor(self.labels["au"][index], dtype=torch.float32),
                "va": torch.tensor(self.labels["va"][index], dtype=torch.float32),
                "unlabelled": torch.tensor(self.labels["unlabelled"][index], dtype=torch.bool)}

    def labelled_indices(self) -> np.ndarray:
        """Samples with a label shown for at least one task."""
        return np.flatnonzero(is_labelled("expr", self.labels["expr"]) | is_labelled("au", self.labels["au"])
                              | is_labelled("va", self.labels["va"]))

    def unlabelled_indices(self) -> np.ndarray:
        """Samples with no label shown for any task (on the training side: unlabelled for some task)."""
        return np.setdiff1d(np.arange(len(self)), self.labelled_indices())

    @classmethod
    def from_partition(cls, layout: Layout, side: str = "train", whole_tracks: bool = False,
                       **options) -> "ClipDataset":
        """The frames of one side of the partition (`layout.partition`, labels from `layout.labels`): for
        "train" its labelled train frames and its unlabelled pool, for "val" its labelled val frames; with
        `whole_tracks` (evaluation), every frame of every track that has a frame on the side, in frame order.
        Labels are shown for the side's (frame, task) rows only, and "unlabelled" flags the (frame, task)
        rows the partition lists as unlabelled (train side only). A (frame, task) pair on the other side
        gets neither: a frame that is train for one task and val for another is trained on for the first
        task and on nothing else. `options`: the ClipDataset keywords (affect.pipeline.loader_options)."""
        if side not in ("train", "val"):
            raise ValueError(f"dataset side {side!r}: expected train or val")
        rows = pq.read_table(layout.partition)
        rows = rows.filter(pc.is_in(rows.column("side"), pa.array([side, "unlabelled"] if side == "train" else [side])))
        labels = pq.read_table(layout.labels)
        if whole_tracks:
            samples = labels.filter(pc.is_in(labels.column("track"), pc.unique(rows.column("track"))))
        else:
            samples = rows
        samples = samples.group_by(["track", "frame"]).aggregate([]).sort_by([("track", "ascending"),
                                                                              ("frame", "ascending")])
        keyed = samples.append_column("row", pa.array(np.arange(samples.num_rows)))
        for task in TASKS:
            task_rows = rows.filter(pc.equal(rows.column("task"), task)).select(["track", "frame", "side"])
            keyed = keyed.join(task_rows.rename_columns(["track", "frame", f"{task}_side"]), ["track", "frame"],
                               join_type="left outer")
        label_rows = labels.select(["track", "frame"]).append_column("label_row", pa.array(np.arange(labels.num_rows)))
        keyed = keyed.join(label_rows, ["track", "frame"], join_type="left outer").sort_by("row")
        missing = pc.is_null(keyed.column("label_row")).to_numpy(zero_copy_only=False)
        if missing.any():
            k = int(np.flatnonzero(missing)[0])
            raise ValueError(f"{layout.partition}: ({keyed.column('track')[k]}, {keyed.column('frame')[k]}) "
                             f"has no row in {layout.labels}; rerun the partition stage")
        values = label_arrays(labels.take(keyed.column("label_row")))
        shown = {task: pc.fill_null(pc.equal(keyed.column(f"{task}_side"), side), False).to_numpy(zero_copy_only=False)
                 for task in TASKS}
        unlabelled = np.stack([pc.fill_null(pc.equal(keyed.column(f"{task}_side"), "unlabelled"), False)
                               .to_numpy(zero_copy_only=False) for task in TASKS], axis=1)
        arrays = {
            "expr": np.where(shown["expr"], values["expr"], -1).astype(np.int64),
            "au": np.where(shown["au"][:, None], values["au"], -1.0).astype(np.float32),
            "va": np.where(shown["va"][:, None], values["va"], np.nan).astype(np.float32),
            "unlabelled": unlabelled,
        }
        return cls(layout, samples, labels=arrays, **options)


class MixedBatchSampler(Sampler):
    """Batches of `batch_size` indices, round(batch_size * labelled_fraction) of them from `labelled`.

    Each pool is drawn without replacement in a fresh seeded permutation per pass over it, so batch b
    depends only on (seed, b): iterating from `start_batch` resumes exactly where a run stopped.
    With `world_size` > 1, `batch_size` is the global batch and rank r gets labelled[r::world_size]
    and unlabelled[r::world_size] of each global batch. If one pool is empty, batches come from the other.
    """

    def __init__(self, labelled: Sequence[int], unlabelled: Sequence[int], batch_size: int,
                 labelled_fraction: float, seed: int, num_batches: int, start_batch: int = 0,
                 rank: int = 0, world_size: int = 1):
        self.labelled = np.asarray(labelled, np.int64)
        self.unlabelled = np.asarray(unlabelled, np.int64)
        if not len(self.labelled) and not len(self.unlabelled):
            raise ValueError("MixedBatchSampler: no labelled and no unlabelled samples")
        if not 0.0 <= labelled_fraction <= 1.0:
            raise ValueError(f"labelled_fraction {labelled_fraction}: expected a share in [0, 1]")
        if batch_size < world_size or not 0 <= rank < world_size:
            raise ValueError(f"batch_size {batch_size}, rank {rank}, world_size {world_size}: "
                             f"each rank needs at least one sample")
        n_labelled = int(round(batch_size * labelled_fraction))
        if not len(self.unlabelled) or not len(self.labelled):
            n_labelled = batch_size if len(self.labelled) else 0
            if 0.0 < labelled_fraction < 1.0:
                log.warning("MixedBatchSampler: no %s samples, every batch is %s",
                            "unlabelled" if len(self.labelled) else "labelled",
                            "labelled" if len(self.labelled) else "unlabelled")
        if len(self.unlabelled) and n_labelled == batch_size and labelled_fraction < 1.0:
            log.warning("batch_size %d x labelled_fraction %s rounds to no unlabelled samples per batch",
                        batch_size, labelled_fraction)
        self.n_labelled, self.n_unlabelled = n_labelled, batch_size - n_labelled
        self.seed, self.num_batches, self.start_batch = seed, num_batches, start_batch
        self.rank, self.world_size = rank, world_size

    def _draw(self, pool: np.ndarray, stream: int, first: int, count: int) -> np.ndarray:
        """Elements first .. first + count - 1 of the endless stream of seeded permutations of `pool`."""
        positions = np.arange(first, first + count)
        out = np.empty(count, np.int64)
        for epoch in np.unique(positions // len(pool)):
            at = positions // len(pool) == epoch
            order = np.random.default_rng([self.seed, stream, int(epoch)]).permutation(len(pool))
            out[at] = pool[order[positions[at] % len(pool)]]
        return out

    def batch(self, b: int) -> list[int]:
        """Global batch `b`'s indices for this rank: labelled first, then unlabelled."""
        labelled = self._draw(self.labelled, 0, b * self.n_labelled, self.n_labelled) if self.n_labelled else []
        unlabelled = (self._draw(self.unlabelled, 1, b * self.n_unlabelled, self.n_unlabelled)
                      if self.n_unlabelled else [])
        r, w = self.rank, self.world_size
        return [int(i) for i in labelled[r::w]] + [int(i) for i in unlabelled[r::w]]

    def __iter__(self) -> Iterator[list[int]]:
        for b in range(self.start_batch, self.num_batches):
            yield self.batch(b)

    def __len__(self) -> int:
        return max(self.num_batches - self.start_batch, 0)
