"""The clip loader and the mixed batch sampler, on a small tree built from ../shared/media by the real stages."""

import pickle
import subprocess

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import torch
from torch.utils.data import DataLoader

from affect.align import align_part
from affect.annotations import write_annotation
from affect.data import CLIP_MEAN, CLIP_STD, ClipDataset, MixedBatchSampler, clip_offsets, fill_times
from affect.images import decode_image
from affect.index import build_index, find_annotations
from affect.labels import build_labels
from affect.landmarks import landmarks_part
from affect.losses import consistency_losses, supervised_losses
from affect.mask import masks_part
from affect.mel import SILENCE_DB, floor_db, mel_spectrogram
from affect.partition import partition
from affect.schema import TASK_FOLDERS, TASKS, Layout
from affect.shards import read_arrow, read_shards, write_parquet
from tests.pipeline import build_tree

PARAMS = {"sample_rate": 44100, "n_fft": 1024, "win_length": 882, "hop_length": 441, "n_mels": 64, "top_db": 80}
HOP_S = 441 / 44100
N_PARTS = 2


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", *args], check=True)


def make_videos(root, media):
    """Five videos: no face in frames 20-29, two people, variable frame rate, no audio, audio shorter than video."""
    videos = root / "videos"
    videos.mkdir(parents=True)
    x264 = ["-c:v", "libx264", "-preset", "ultrafast", "-crf", "18"]
    ffmpeg("-i", str(media / "grid_bbaf2n.mpg"), "-vf", "drawbox=enable='between(n,20,29)':color=black:t=fill",
           *x264, "-c:a", "aac", str(videos / "grid.mp4"))
    (videos / "two.mp4").symlink_to(media / "two_person_grid_bbaf2n_swiz3n_sbs.mp4")
    ffmpeg("-i", str(media / "grid_lwbsza_h264.mp4"), "-vf", "setpts='(N+8*gte(N,30))/25/TB'",
           "-fps_mode", "passthrough", *x264, "-c:a", "copy", str(videos / "vfr.mp4"))
    ffmpeg("-i", str(media / "pyfeat_single_face.mp4"), "-an", "-c:v", "copy", str(videos / "mute.mp4"))
    ffmpeg("-i", str(media / "grid_swiz3n.mpg"), "-af", "atrim=0:1.2", "-c:v", "copy", "-c:a", "pcm_s16le",
           str(videos / "short.mkv"))


def annotate(root, rng):
    """Annotations: grid has 80 VA rows for 75 frames, two_left is in EXPR only, two_right in none."""
    def write(task, set_name, track, values):
        write_annotation(values, root / "annotations" / f"{TASK_FOLDERS[task]}_Set" / set_name / f"{track}.txt", task)

    def va(n):
        return np.round(rng.uniform(-1, 1, (n, 2)), 3).astype(np.float32)

    write("va", "Train_Set", "grid", va(80))
    write("expr", "Validation_Set", "grid", rng.integers(0, 7, 75))
    write("expr", "Train_Set", "two_left", np.where(rng.random(75) < 0.8, rng.integers(0, 7, 75), -1))
    write("au", "Train_Set", "vfr", rng.integers(0, 2, (75, 12)))
    write("va", "Train_Set", "mute", va(72))
    write("va", "Train_Set", "short", va(75))
    write("au", "Validation_Set", "short", rng.integers(0, 2, (75, 12)))


@pytest.fixture(scope="module")
def tree(tmp_path_factory, media, models_dir):
    """root (ABAW2 tree) and a layout holding what index, split, align, landmarks, masks, mel, labels and
    partition make of it (the pipeline's own steps; faces shards of 100 rows)."""
    base = tmp_path_factory.mktemp("data")
    root, layout = base / "root", Layout(base / "data", models_dir)
    make_videos(root, media)
    annotate(root, np.random.default_rng(0))
    params = build_tree(root, layout, N_PARTS, {"align": {"shard_rows": 100}})
    index = build_index(root, N_PARTS, jobs=1)
    labels = build_labels(index.tracks, find_annotations(root))
    write_parquet(labels, layout.labels)
    write_parquet(partition(labels, "by_video", 0.8, 0), layout.partition)
    return {"base": base, "root": root, "layout": layout, "params": params, "index": index, "labels": labels}


def dataset(tree, side="train", **kwargs):
    return ClipDataset.from_partition(tree["layout"], side=side, **kwargs)


def black_value(channel: int) -> float:
    return -CLIP_MEAN[channel] / CLIP_STD[channel]


def rgb_frames(clip: torch.Tensor) -> np.ndarray:
    """(L, 112, 112, 3) uint8 RGB of a normalised clip."""
    std, mean = torch.tensor(CLIP_STD[:3]).view(3, 1, 1, 1), torch.tensor(CLIP_MEAN[:3]).view(3, 1, 1, 1)
    return ((clip[:3] * std + mean) * 255).round().clamp(0, 255).byte().permute(1, 2, 3, 0).numpy()


def part_of(tree, track: str) -> int:
    return tree["index"].tracks.filter(pc.equal(tree["index"].tracks.column("track"), track))["part"][0].as_py()


def track_crops(tree, track: str) -> dict[int, np.ndarray]:
    """frame -> decoded RGB crop of one track, straight from its faces shards."""
    faces = read_shards(tree["layout"].faces(part_of(tree, track)))
    faces = faces.filter(pc.equal(faces.column("track"), track)).to_pylist()
    return {r["frame"]: decode_image(r["crop"]) for r in faces if r["found"]}


def index_of(ds: ClipDataset, track: str, frame: int) -> int:
    i = int(np.flatnonzero(ds.track_names == track)[0])
    return int(np.flatnonzero((ds.sample_track == i) & (ds.sample_frame == frame))[0])


def test_clip_is_the_target_and_its_dilated_history(tree):
    assert list(clip_offsets(8, 6, "last")) == list(range(-42, 1, 6))
    assert list(clip_offsets(8, 6, "center")) == list(range(-24, 19, 6))
    ds = ClipDataset(tree["layout"], [("two_left", 60)])
    assert list(ds.clip_frames(0)) == list(range(18, 61, 6))
    crops = track_crops(tree, "two_left")
    frames = rgb_frames(ds[0]["clip"])
    candidates = sorted(crops)
    for k, expected in enumerate(range(18, 61, 6)):
        errors = [np.abs(frames[k].astype(int) - crops[f]).mean() for f in candidates]
        assert candidates[int(np.argmin(errors))] == expected and min(errors) < 1.0
    assert ds[0]["clip"].shape == (4, 8, 112, 112) and ds[0]["clip"].dtype == torch.float32
    assert (ds[0]["clip"][3] > black_value(3)).any(), "the mask channel is empty"


def test_frames_before_the_start_or_without_a_face_are_black_and_keep_labels(tree):
    ds = ClipDataset(tree["layout"], [("grid", 12), ("grid", 27)])
    early, hidden = ds[0]["clip"], ds[1]["clip"]
    for c in range(4):
        assert torch.allclose(early[c, :5], torch.full_like(early[c, :5], black_value(c)))
        assert torch.allclose(hidden[c, -1], torch.full_like(hidden[c, -1], black_value(c)))
    assert (early[:3, 5:] != early[:3, :1]).any(), "frames 0 and 6 have faces"
    faces = read_shards(tree["layout"].faces(part_of(tree, "grid")))
    found = [r["found"] for r in faces.select(["track", "frame", "found"]).to_pylist() if r["track"] == "grid"]
    assert len(found) == 75 and not any(found[20:30]) and sum(found[:20]) >= 15
    rows = pq.read_table(tree["layout"].partition).to_pylist()
    side = next(r["side"] for r in rows if (r["track"], r["frame"], r["task"]) == ("grid", 25, "va"))
    assert side in ("train", "val"), "a labelled frame without a face keeps its label"
    ds = dataset(tree, side)
    sample = ds[index_of(ds, "grid", 25)]
    valence = tree["labels"].filter(pc.equal(tree["labels"].column("track"), "grid"))["valence"][25].as_py()
    assert sample["va"][0] == pytest.approx(valence)
    assert torch.allclose(sample["clip"][:, -1], torch.tensor([black_value(c) for c in range(4)]).view(4, 1, 1)
                          .expand(4, 112, 112))


def test_mel_window_is_centred_on_the_target_time(tree):
    ds = ClipDataset(tree["layout"], [("grid", 40), ("vfr", 50), ("vfr", 5), ("vfr", 74)])
    for index in range(len(ds)):
        sample = ds[index]
        track = str(sample["track"])
        frames = read_arrow(tree["layout"].frames(ds.track_part[ds.sample_track[index]])).to_pylist()
        pts = [r["pts"] for r in frames if r["video"] == track][int(sample["frame"])]
        if track == "vfr" and sample["frame"] == 50:
            assert abs(pts - 50 / 25) > 0.3, "the VFR copy's times are not frame / fps"
        full = mel_spectrogram(tree["layout"].split(ds.track_part[ds.sample_track[index]]) / "audio" / f"{track}.wav",
                               PARAMS)
        mel = sample["mel"][0].numpy() * 19.895 - 14.8
        assert mel.shape == (64, 1001)
        centre = mel[:, 500]
        if pts > (full.shape[1] - 0.5) * HOP_S:  # after the audio's end: padding
            assert np.allclose(centre, floor_db(full, 80), atol=1e-4)
            continue
        column = int(np.argmin(np.abs(full - centre[:, None]).sum(axis=0)))
        assert np.abs(full[:, column] - centre).max() < 1e-3
        assert abs(column * HOP_S - pts) <= HOP_S
        pad = floor_db(full, 80)
        left = 500 - column
        if left > 0:
            assert np.allclose(mel[:, :left], pad, atol=1e-4), "zero-padded before the audio starts"


def test_audio_shorter_than_the_video_and_no_audio_are_padded_with_silence(tree):
    ds = ClipDataset(tree["layout"], [("short", 70), ("mute", 30)])
    audio = {r["video"]: r for p in range(N_PARTS)
             for r in read_arrow(tree["layout"].split(p) / "audio.arrow").to_pylist()}
    assert audio["short"]["n_samples"] < 1.3 * 44100 and not audio["mute"]["has_audio"]
    short = ds[0]["mel"][0].numpy() * 19.895 - 14.8
    last = audio["short"]["n_samples"] // 441  # the last column of the WAV
    centre = int(round(70 / 25 / HOP_S))
    full = mel_spectrogram(tree["layout"].split(ds.track_part[ds.sample_track[0]]) / "audio" / "short.wav", PARAMS)
    assert np.allclose(short[:, last + 1 - centre + 500:], floor_db(full, 80), atol=1e-4)
    assert np.abs(short[:, :last - centre + 500] - floor_db(full, 80)).max() > 10, "speech before the end"
    mute = ds[1]["mel"][0].numpy() * 19.895 - 14.8
    assert np.allclose(mute, SILENCE_DB, atol=1e-4)
    assert (ds[1]["mel"] == ds.silent_mel).all(), "the student's silent mel is exactly a mute video's window"


def test_labels_are_shown_only_on_the_datasets_side(tree):
    rows = pc.unique(pq.read_table(tree["layout"].partition).column("side")).to_pylist()
    assert set(rows) == {"train", "val", "unlabelled"}
    train, val = dataset(tree, "train"), dataset(tree, "val")
    assert len(train.labelled_indices()) and len(train.unlabelled_indices()) and len(val.labelled_indices())
    assert not len(val.unlabelled_indices())
    train_tracks = {str(t) for t in train.track_names[train.sample_track[train.labelled_indices()]]}
    val_tracks = {str(t) for t in val.track_names[val.sample_track]}
    videos = {t: t.split("_")[0] for t in train_tracks | val_tracks}
    assert not {videos[t] for t in train_tracks} & {videos[t] for t in val_tracks}
    for ds in (train, val):
        labels = {(r["track"], r["frame"]): r for r in tree["labels"].to_pylist()}
        for index in ds.labelled_indices()[::37]:
            sample, row = ds[int(index)], labels[(str(ds.track_names[ds.sample_track[index]]),
                                                  int(ds.sample_frame[index]))]
            assert int(sample["expr"]) in (-1, row["expr"])
            if not torch.isnan(sample["va"][0]):
                assert sample["va"][0] == pytest.approx(row["valence"])


def linked(layout: Layout, root, names: list[str], files: tuple = ()) -> Layout:
    """A layout rooted at `root` whose interim folders `names` and processed `files` are links to `layout`'s."""
    other = Layout(root, layout.models)
    for name in names:
        (other.interim / name).parent.mkdir(parents=True, exist_ok=True)
        (other.interim / name).symlink_to(layout.interim / name)
    for name in files:
        (other.labels.parent / name).parent.mkdir(parents=True, exist_ok=True)
        (other.labels.parent / name).symlink_to(layout.labels.parent / name)
    return other


def test_crop_size_flows_through_landmarks_masks_and_loader(tree, tmp_path):
    """align.crop_size 64: crops, landmarks and masks of that side, clips of that side, and a loader told
    another size names the mismatch instead of building wrong clips."""
    layout = linked(tree["layout"], tmp_path, ["index", "split", "mel"])
    p = part_of(tree, "grid")
    params = tree["params"] | {"align": tree["params"]["align"] | {"crop_size": 64}}
    for step in (align_part, landmarks_part, masks_part):
        step(p, params, layout)
    points = np.asarray(read_shards(layout.landmarks(p)).column("landmarks").to_pylist()[60], np.float32).reshape(-1, 2)
    assert 0 < points.min() and points.max() < 64 * 1.1  # the jaw may end a little below the crop
    assert points[[35, 39], 1].mean() < points[[52, 61], 1].mean()  # eyes above the mouth corners
    assert 0.25 * 64 < points[39, 0] - points[35, 0] + points[93, 0] - points[89, 0] < 0.6 * 64  # eye widths
    clip = ClipDataset(layout, [("grid", 60)], crop_size=64)[0]["clip"]
    assert clip.shape == (4, 8, 64, 64) and (clip[3, -1] > black_value(3)).float().mean() > 0.2
    with pytest.raises(ValueError, match=r"is 64x64, expected 112x112 \(align.crop_size\)"):
        ClipDataset(layout, [("grid", 60)], crop_size=112)[0]


@pytest.mark.parametrize("on", ["unlabelled", "training"])
@pytest.mark.parametrize("mode", ["random_frames", "by_video", "official"])
def test_no_validation_pair_gets_any_loss(tree, tmp_path, mode, on):
    """Through the real ClipDataset and affect.losses, in every partition mode: the supervised loss reaches
    exactly the partition's train (frame, task) pairs, the consistency loss exactly its unlabelled pairs (with
    `on="training"`: its train and unlabelled pairs), and no pair of the validation side gets either. A pair
    gets a loss when its output has a nonzero gradient.
    The tree holds the cases that leaked before: in `official`, grid is Train_Set for VA and Validation_Set
    for EXPR, short Train_Set for VA and Validation_Set for AU; `random_frames` splits every task's frames."""
    table = partition(tree["labels"], mode, 0.8, 0)
    layout = linked(tree["layout"], tmp_path, ["index", "split", "faces", "masks", "mel"], ("labels.parquet",))
    write_parquet(table, layout.partition)
    ds = ClipDataset.from_partition(layout)
    sides = {(r["track"], r["frame"], r["task"]): r["side"] for r in table.to_pylist()}
    generator = torch.Generator().manual_seed(0)
    widths = {"expr": 7, "au": 12, "va": 2}
    reached = {"supervised": set(), "consistency": set()}
    keys = []
    for batch in DataLoader(ds, batch_size=64):
        keys += list(zip(batch["track"], batch["frame"].tolist()))
        for kind, pairs in reached.items():
            n = len(batch["frame"])
            student = {task: torch.rand(n, k, generator=generator).mul(2).sub(1).requires_grad_()
                       for task, k in widths.items()}
            teacher = {task: torch.rand(n, k, generator=generator).mul(2).sub(1) for task, k in widths.items()}
            losses = (supervised_losses(student, batch) if kind == "supervised"
                      else consistency_losses(student, teacher, batch, "hard", on=on))
            sum(losses.values()).backward()
            pairs |= {(batch["track"][i], int(batch["frame"][i]), task) for task in TASKS
                      for i in np.flatnonzero(student[task].grad.abs().sum(dim=1).numpy() > 0)}
    assert reached["supervised"] == {key for key, side in sides.items() if side == "train"}
    consistent = ("unlabelled",) if on == "unlabelled" else ("train", "unlabelled")
    assert reached["consistency"] == {key for key, side in sides.items() if side in consistent}
    held_out = {key for key, side in sides.items() if side == "val"}
    assert held_out and not (reached["supervised"] | reached["consistency"]) & held_out
    if mode != "by_video":  # frames that are train for one task and val for another are in the training set
        assert {(track, frame) for track, frame, _ in held_out} & set(keys)


def test_two_workers_give_the_same_samples_as_none(tree):
    ds = dataset(tree, "train")
    sampler = MixedBatchSampler(ds.labelled_indices(), ds.unlabelled_indices(), 4, 0.5, seed=1, num_batches=3)
    ds[0]
    state = pickle.loads(pickle.dumps(ds))
    assert state._parts == {} and len(ds._parts) == 1
    batches = [list(DataLoader(ds, batch_sampler=sampler, num_workers=w)) for w in (0, 2)]
    for a, b in zip(*batches):
        assert a["track"] == b["track"] and torch.equal(a["frame"], b["frame"])
        for key in ("clip", "mel", "expr", "au", "va", "unlabelled"):
            assert torch.equal(a[key].nan_to_num(7), b[key].nan_to_num(7))


def test_augment_hook_sees_every_sample(tree):
    seen = []

    def flip(sample):
        seen.append(int(sample["frame"]))
        sample["clip"] = sample["clip"].flip(-1)
        return sample

    plain, flipped = ClipDataset(tree["layout"], [("vfr", 60)]), ClipDataset(tree["layout"], [("vfr", 60)],
                                                                               augment=flip)
    assert torch.equal(plain[0]["clip"].flip(-1), flipped[0]["clip"]) and seen == [60]


def test_sampler_mixes_labelled_and_unlabelled_in_every_batch():
    labelled, unlabelled = np.arange(0, 37), np.arange(100, 1100)
    sampler = MixedBatchSampler(labelled, unlabelled, 16, 0.25, seed=3, num_batches=20)
    batches = list(sampler)
    assert len(batches) == 20
    for batch in batches:
        assert sum(i < 100 for i in batch) == 4 and len(batch) == 16 and len({i for i in batch if i >= 100}) == 12
    first = [i for b in batches for i in b if i < 100]
    assert sorted(first[:37]) == list(range(37)), "each pass draws every labelled sample once"
    assert batches == list(MixedBatchSampler(labelled, unlabelled, 16, 0.25, seed=3, num_batches=20))
    assert batches != list(MixedBatchSampler(labelled, unlabelled, 16, 0.25, seed=4, num_batches=20))
    resumed = list(MixedBatchSampler(labelled, unlabelled, 16, 0.25, seed=3, num_batches=20, start_batch=13))
    assert resumed == batches[13:]
    ranks = [list(MixedBatchSampler(labelled, unlabelled, 16, 0.25, seed=3, num_batches=20, rank=r, world_size=2))
             for r in range(2)]
    for b, batch in enumerate(batches):
        assert sorted(ranks[0][b] + ranks[1][b]) == sorted(batch)
        assert all(len(rank[b]) == 8 and sum(i < 100 for i in rank[b]) == 2 for rank in ranks)


def test_frames_without_a_time_are_interpolated_or_an_error():
    times = np.array([np.nan, 0.04, 0.08, np.nan, 0.16, np.nan, np.nan])
    assert np.allclose(fill_times(times, "x"), [0.0, 0.04, 0.08, 0.12, 0.16, 0.2, 0.24])
    with pytest.raises(ValueError, match="frames.arrow: no frame has a time"):
        fill_times(np.full(3, np.nan), "frames.arrow")
