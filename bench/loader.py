"""Clip loader vs TSAV's file layout: samples per second on one core, bytes per frame, files for Aff-Wild2.

Both read the same crops: the real steps (index, split, align with scrfd_500m, landmarks, masks, mel)
run on the videos of ../shared/media, then the crops are written out as TSAV lays them out: one JPEG per
crop (the same bytes; a black one where no face was found) and one JPEG per mask (quality 100, as
TSAV's face_alignment.render_img_and_mask) in per-track folders, read back with OpenCV, plus one WAV per video from which TSAV computes each sample's
mel window (torchaudio MelSpectrogram + AmplitudeToDB, TSAV's aff2compdataset). Both give the same
normalised (4, 8, 112, 112) clip and (1, 64, 1001) mel. Timed in one process with one thread
(`torch.set_num_threads(1)`, `cv2.setNumThreads(1)`) as samples per CPU second, the same random
samples in the same order, the best of five rounds taken in turns. Files are in the page cache for
both; a cold disk would favour the shards further (2 files instead of 16 opened per clip).

Run: `OMP_NUM_THREADS=1 .venv/bin/python -m bench.loader` (about a minute).
"""

from __future__ import annotations

import math
import tempfile
import time
import wave
from pathlib import Path

import cv2
import numpy as np
import pyarrow.compute as pc
import torch
import torchaudio

from affect.data import CLIP_MEAN, CLIP_STD, ClipDataset
from affect.index import build_index, write_index
from affect.models import materialise
from affect.pipeline import preprocess
from affect.schema import CROP_SIZE, Layout
from affect.shards import read_shards, shard_paths
from stages import load_params

ROOT = Path(__file__).resolve().parents[1]
MEDIA = ROOT.parent / "shared" / "media"
MIRROR = ROOT.parent / "shared" / "models"
VIDEOS = ["grid_bbaf2n.mpg", "grid_lwbsza.mpg", "grid_sbwe5n.mpg", "grid_swiz3n.mpg", "pyfeat_single_face.mp4"]
AUDIO = {"sample_rate": 44100, "n_fft": 1024, "win_length": 882, "hop_length": 441, "n_mels": 64, "top_db": 80}
AFFWILD2_FRAMES = 2_800_000
AFFWILD2_VIDEOS = 548
SHARD_ROWS = 4096
N_SAMPLES = 300


def build(folder: Path) -> tuple[Layout, Path]:
    """The shards (a layout's data/) and TSAV's folders (tsav/) of the media videos' faces."""
    root, layout, tsav = folder / "root", Layout(folder / "data", folder / "models"), folder / "tsav"
    (root / "videos").mkdir(parents=True)
    for name in VIDEOS:
        (root / "videos" / name).symlink_to(MEDIA / name)
    materialise(["scrfd_500m", "pfld106"], layout.models, mirror=MIRROR, download=False)
    params = load_params()
    params |= {"dataset": {"root": str(root)}, "audio": params["audio"] | AUDIO,
               "split": {"on_error": "fail", "jobs": 1}, "mel": {"jobs": 1},
               "align": params["align"] | {"detector": "scrfd_500m", "det_size": 320, "shard_rows": SHARD_ROWS,
                                           "crop_size": CROP_SIZE, "jobs": 1},  # TSAV's 112 px
               "landmarks": {"model": "pfld106", "jobs": 1}, "mask": {"style": "regions", "jobs": 1}}
    write_index(build_index(root, 1, jobs=1), layout.index)
    preprocess(0, params, layout)

    faces, masks = read_shards(layout.faces(0)), read_shards(layout.masks(0))
    black = np.zeros((112, 112), np.uint8)
    for face, mask in zip(faces.to_pylist(), masks.column("mask").to_pylist()):
        track = tsav / face["track"]
        (track / "mask").mkdir(parents=True, exist_ok=True)
        name = f"{face['frame']:05d}.jpg"
        if face["found"]:
            (track / name).write_bytes(face["crop"])
            grey = cv2.imdecode(np.frombuffer(mask, np.uint8), cv2.IMREAD_GRAYSCALE)
        else:  # TSAV renders a black crop and mask for a frame without a face
            cv2.imwrite(str(track / name), np.zeros((112, 112, 3), np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 95])
            grey = black
        cv2.imwrite(str(track / "mask" / name), grey, [cv2.IMWRITE_JPEG_QUALITY, 100])
    return layout, tsav


class TsavLoader:
    """TSAV's way: per-frame JPEG files read with OpenCV, each sample's mel computed from the WAV."""

    def __init__(self, tsav: Path, wav_dir: Path, dataset: ClipDataset):
        self.tsav, self.wav_dir, self.ds = tsav, wav_dir, dataset
        self.mel_transform = torchaudio.transforms.MelSpectrogram(
            sample_rate=44100, n_mels=64, n_fft=1024, win_length=882, hop_length=441, window_fn=torch.hann_window)
        self.to_db = torchaudio.transforms.AmplitudeToDB("power", 80)
        self.mean = torch.tensor(CLIP_MEAN).view(4, 1, 1, 1)
        self.std = torch.tensor(CLIP_STD).view(4, 1, 1, 1)

    def clip(self, index: int) -> torch.Tensor:
        track = self.tsav / str(self.ds.track_names[self.ds.sample_track[index]])
        clip = np.zeros((8, 112, 112, 4), np.uint8)
        for k, frame in enumerate(self.ds.clip_frames(index)):
            if frame < 0:
                continue
            clip[k, :, :, :3] = cv2.cvtColor(cv2.imread(str(track / f"{frame:05d}.jpg")), cv2.COLOR_BGR2RGB)
            clip[k, :, :, 3] = cv2.imread(str(track / "mask" / f"{frame:05d}.jpg"), cv2.IMREAD_GRAYSCALE)
        clip = torch.from_numpy(clip.astype(np.float32) / 255).permute(3, 0, 1, 2)  # TSAV's NumpyToTensor
        return clip.sub_(self.mean).div_(self.std)  # and Normalize

    def mel(self, index: int) -> torch.Tensor:
        i = int(self.ds.sample_track[index])
        pts = self.ds.track_pts[i][self.ds.sample_frame[index]]
        with wave.open(str(self.wav_dir / f"{self.ds.track_video[i]}.wav"), "rb") as f:
            start = int(pts * 44100) - 5 * 44100
            f.setpos(min(max(start, 0), f.getnframes()))
            data = f.readframes(10 * 44100 + (min(start, 0)))
        audio = torch.from_numpy(np.frombuffer(data, "<i2").astype(np.float32) / 32768.0).view(1, -1)
        features = self.mel_transform(audio)
        out = torch.zeros(1, 64, 1001)
        width = min(features.shape[2], 1001)
        offset = max(0, -start) // 441 if start < 0 else 0
        out[:, :, offset:offset + width] = features[:, :, :1001 - offset]
        return self.to_db(out).sub_(-14.8).div_(19.895)


def rates(functions: list, indices: np.ndarray, rounds: int = 5) -> list[float]:
    """Calls per CPU second of each function over `indices` (this process's CPU time, so other work on a
    shared machine does not count): the best of `rounds` rounds, the functions taking turns in each."""
    best = [math.inf] * len(functions)
    for _ in range(rounds):
        for k, function in enumerate(functions):
            start = time.process_time()
            for i in indices:
                function(int(i))
            best[k] = min(best[k], time.process_time() - start)
    return [len(indices) / b for b in best]


def sizes(paths: list[Path]) -> tuple[int, int]:
    """(bytes in the files, bytes allocated on disk)."""
    stats = [p.stat() for p in paths]
    return sum(s.st_size for s in stats), sum(s.st_blocks * 512 for s in stats)


def main() -> None:
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    with tempfile.TemporaryDirectory(prefix="bench-loader-") as tmp:
        layout, tsav = build(Path(tmp))
        faces = read_shards(layout.faces(0)).select(["track", "frame", "found"])
        ds = ClipDataset(layout, list(zip(faces.column("track").to_pylist(), faces.column("frame").to_pylist())))
        n_frames, n_found = faces.num_rows, int(pc.sum(faces.column("found")).as_py())
        tsav_loader = TsavLoader(tsav, layout.split(0) / "audio", ds)
        indices = np.random.default_rng(0).choice(len(ds), min(N_SAMPLES, len(ds)), replace=False)
        for i in indices[:3]:
            ours, theirs = ds.clip(int(i)), tsav_loader.clip(int(i))
            assert torch.allclose(ours[:3], theirs[:3], atol=1e-4), "the layouts give different crops"
            assert (ours[3] - theirs[3]).abs().mean() < 0.1, "the layouts give different masks"
        ds[0], tsav_loader.mel(0)

        shards = shard_paths(layout.faces(0)) + shard_paths(layout.masks(0))
        files = sorted(p for p in tsav.rglob("*.jpg"))
        ours, theirs = sizes(shards), sizes(files)
        mel_bytes = layout.mel(0).stat().st_size

        clip_rates = rates([tsav_loader.clip, ds.clip], indices)
        sample_rates = rates([lambda i: (tsav_loader.clip(i), tsav_loader.mel(i)), ds.__getitem__], indices)
        rows = [("clip (4x8x112x112)", *clip_rates), ("clip + mel (full sample)", *sample_rates)]
        print(f"{len(VIDEOS)} videos, {n_frames} frames ({n_found} with a face), {len(indices)} random samples, "
              f"1 thread\n")
        print("| per core | TSAV folders (baseline) | Arrow shards | ratio |")
        print("|---|---|---|---|")
        for name, base, mine in rows:
            print(f"| {name}, samples/s | {base:.0f} | {mine:.0f} | {mine / base:.2f}x |")
        print(f"| crop + mask, bytes/frame (file contents) | {theirs[0] / n_frames:.0f} | {ours[0] / n_frames:.0f} | "
              f"{ours[0] / theirs[0]:.2f}x |")
        print(f"| crop + mask, bytes/frame (allocated on disk) | {theirs[1] / n_frames:.0f} | "
              f"{ours[1] / n_frames:.0f} | {ours[1] / theirs[1]:.2f}x |")
        mask_jpeg = sum(p.stat().st_size for p in files if p.parent.name == "mask")
        mask_png = sum(len(m) for m in read_shards(layout.masks(0)).column("mask").to_pylist())
        print(f"| mask alone, bytes/frame (JPEG file vs PNG value) | {mask_jpeg / n_frames:.0f} | "
              f"{mask_png / n_frames:.0f} | {mask_png / mask_jpeg:.2f}x |")
        print(f"| files here (crops + masks) | {len(files)} | {len(shards)} | |")
        per_part = math.ceil(AFFWILD2_FRAMES / SHARD_ROWS)
        print(f"| files for Aff-Wild2 (~2.8M frames, {AFFWILD2_VIDEOS} videos) | {2 * AFFWILD2_FRAMES:,} + "
              f"{AFFWILD2_VIDEOS} WAVs | ~{2 * per_part:,} shards (+ 2 per extra part) + {AFFWILD2_VIDEOS} WAVs "
              f"+ 1 mel file per part | |")
        print(f"\nmel shards: {mel_bytes / n_frames:.0f} bytes/frame (stored dB, float32), beside the WAVs both keep")


if __name__ == "__main__":
    main()
