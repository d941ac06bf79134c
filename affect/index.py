"""The dataset index: every video and track of an ABAW2 tree (docs/method.md, "Data layout"), probed,
fingerprinted and assigned to a part.

Videos are the files with a video suffix (.mp4, .avi, .mpg, ...) anywhere under `videos/`, `raw_video/`,
`batch1/` and `batch2/` of the root; a video is named by its file stem, which must be unique (`x.mp4`
beside `x.avi` is an error naming both). Other files there are ignored and listed in the report; a file
with a video suffix that ffmpeg cannot read is an error naming it.

Tracks come from annotation file names (`annotations/{VA,EXPR,AU}_Set/{Train,Validation}_Set/<track>.txt`):
- `<stem>.txt` -> track `<stem>`, person `main`, of video `<stem>`;
- `<stem>_left.txt` / `<stem>_right.txt` -> person `left` / `right` of video `<stem>` (unless a video is
  itself named `<stem>_left`, which then wins). A video with one side annotated gets the other side as
  an unlabelled track too. A video annotated both as one person and as two is an error;
- a video with no annotation in any task is one `main` track named after it, unlabelled;
- an annotation whose video is missing is an error naming the file; so is a track found in both the
  Train_Set and the Validation_Set of one task.

Unlabelled corpora (`find_corpora`): each subfolder of the `unlabelled` folder (params.yaml
dataset.unlabelled) is a corpus of face videos without annotations (interviews, talk shows, VoxCeleb-like
collections), found recursively. A corpus video is named by its corpus and its path in it, joined by
CORPUS_MARK (`vox/id10001/00001.mp4` -> `vox~id10001~00001`), and is one `main` track, unlabelled for every
task: it joins every task's unlabelled pool on the training side (affect.partition) and goes through the
same per-part stages as the tree's videos, by the same stable part hash, so adding a corpus reruns only the
parts its videos land in. ABAW2 video names may not contain CORPUS_MARK.
Every annotation file is read and validated (`affect.annotations`). Row counts that differ from the decoded
frame count are reconciled (extra rows dropped, missing rows unlabelled, never shifted) and reported per
track. A truncated or damaged video keeps the frames that decode and is reported; a video without audio is
recorded with has_audio False and reported (later stages feed silence).

The part of a video is a stable hash of its name (sha256, not Python's salted hash) modulo the number of
parts; each part's JSON lists its videos with their content fingerprint (sha256 of the bytes), so a
per-part stage depends on its own part only. Nothing is written until every check has passed.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from affect.annotations import read_annotation, reconcile
from affect.parallel import run_units
from affect.schema import (CORPUS_MARK, PAIR, SETS, TASK_FOLDERS, TASKS, TRACKS, VIDEOS, corpus_of, split_track,
                           track_name, write_part)
from affect.shards import sha256_of, write_json, write_parquet
from affect.video import VideoInfo, probe

log = logging.getLogger(__name__)

VIDEO_FOLDERS = ("videos", "raw_video", "batch1", "batch2")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".mpg", ".mpeg", ".m4v", ".flv", ".wmv", ".ts")


class DatasetError(ValueError):
    """A dataset tree that cannot be indexed; the message names the files involved."""


@dataclass
class Index:
    """What the index stage writes: the two tables, one JSON document per part, and the report."""

    videos: pa.Table
    tracks: pa.Table
    parts: dict[int, dict]
    report: dict


def find_annotations(root: str | os.PathLike) -> dict[str, dict[str, tuple[str, Path]]]:
    """task -> track -> (set name "Train_Set" | "Validation_Set", annotation path), all sorted by track."""
    root = Path(root)
    found: dict[str, dict[str, tuple[str, Path]]] = {}
    for task in TASKS:
        tracks: dict[str, tuple[str, Path]] = {}
        for set_name in SETS:
            for path in sorted((root / "annotations" / f"{TASK_FOLDERS[task]}_Set" / set_name).glob("*.txt")):
                if path.name.startswith("."):
                    continue
                if path.stem in tracks:
                    raise DatasetError(f"track {path.stem} is annotated twice for {task}: "
                                       f"{tracks[path.stem][1]} and {path}")
                tracks[path.stem] = (set_name, path)
        found[task] = dict(sorted(tracks.items()))
    return found


def find_videos(root: str | os.PathLike) -> tuple[dict[str, Path], list[Path]]:
    """Video stem -> path (sorted), and the other files found in the video folders (ignored)."""
    root = Path(root)
    videos: dict[str, Path] = {}
    ignored: list[Path] = []
    for folder in VIDEO_FOLDERS:
        for path in sorted((root / folder).rglob("*")):
            if not path.is_file() or path.name.startswith("."):
                continue
            if path.suffix.lower() not in VIDEO_SUFFIXES:
                ignored.append(path)
                continue
            if path.stem in videos:
                raise DatasetError(f"two videos named {path.stem}: {videos[path.stem]} and {path}; "
                                   f"video names (file stems) must be unique, remove or rename one")
            if CORPUS_MARK in path.stem:
                raise DatasetError(f"{path}: {CORPUS_MARK!r} in a video name marks unlabelled corpora; rename it")
            videos[path.stem] = path
    return dict(sorted(videos.items())), ignored


def find_corpora(folder: str | os.PathLike | None) -> tuple[dict[str, Path], list[Path]]:
    """Videos of the unlabelled corpora under `folder` (each subfolder one corpus; see the module docstring):
    name -> path (sorted), and the other files found (ignored). No folder, or an empty one: nothing."""
    videos: dict[str, Path] = {}
    ignored: list[Path] = []
    if not folder or not Path(folder).is_dir():
        return videos, ignored
    for path in sorted(Path(folder).rglob("*")):
        if not path.is_file() or any(p.startswith(".") for p in path.relative_to(folder).parts):
            continue
        relative = path.relative_to(folder).with_suffix("")
        if path.suffix.lower() not in VIDEO_SUFFIXES or len(relative.parts) < 2:
            ignored.append(path)  # not a video, or a file beside the corpora rather than in one
            continue
        name = CORPUS_MARK.join(relative.parts)
        if name in videos:
            raise DatasetError(f"two videos named {name}: {videos[name]} and {path}; keep one")
        videos[name] = path
    return dict(sorted(videos.items())), ignored


def stable_part(video: str, n_parts: int) -> int:
    """The part of a video: sha256 of its name modulo `n_parts` (the same on every machine and run)."""
    return int.from_bytes(hashlib.sha256(video.encode("utf-8")).digest()[:8], "big") % n_parts


def assign_tracks(videos: list[str], annotations: dict[str, dict[str, tuple[str, Path]]]
                  ) -> tuple[dict[str, list[tuple[str, str]]], dict[str, list[str]]]:
    """video -> [(track, person)] sorted by track, and report lines per track (see the module docstring)."""
    known = set(videos)
    owner: dict[str, tuple[str, str]] = {}
    orphans = []
    for task in TASKS:
        for track, (_, path) in annotations[task].items():
            if track in known:
                owner[track] = (track, "main")
                continue
            base, side = split_track(track)
            if side != "main" and base in known:
                owner[track] = (base, side)
            else:
                orphans.append(str(path))
    if orphans:
        raise DatasetError(f"{len(orphans)} annotation file(s) without a video (no video named after the "
                           f"track, nor after the track without _left/_right): {', '.join(sorted(orphans)[:10])}")
    tracks: dict[str, list[tuple[str, str]]] = {video: [] for video in videos}
    for track, (video, person) in sorted(owner.items()):
        tracks[video].append((track, person))
    notes: dict[str, list[str]] = {}
    for video, found in tracks.items():
        persons = {person for _, person in found}
        if "main" in persons and persons & set(PAIR):
            raise DatasetError(f"video {video} is annotated both as one person ({video}.txt) and as two "
                               f"({video}_left.txt / {video}_right.txt): keep one kind")
        if not found:
            tracks[video] = [(video, "main")]
            notes[video] = ["no annotation for any task: kept as unlabelled data"]
        for side in PAIR:
            if persons and persons <= set(PAIR) and side not in persons:
                track = track_name(video, side)
                tracks[video] = sorted(tracks[video] + [(track, side)])
                notes[track] = [f"no annotation, but {video} has a {'/'.join(sorted(persons))} track: "
                                f"kept as unlabelled data"]
    return tracks, notes


def _probe_one(path: Path) -> tuple[VideoInfo, str]:
    return probe(path), sha256_of(path)


def _video_notes(info: VideoInfo) -> list[str]:
    notes = []
    expected = max(round(info.duration * info.fps_avg), info.header_frames)
    if info.errors or info.n_frames < expected - 1:
        first = f"; first: {info.errors[0]}" if info.errors else ""
        notes.append(f"truncated or damaged: {info.n_frames} frames decode, the container suggests {expected} "
                     f"({info.duration:.3f} s at {info.fps_avg:g} fps, {info.header_frames or 'no'} frames in its "
                     f"header); {len(info.errors)} decoder error line(s){first}; kept the frames that decode")
    if not info.has_audio:
        notes.append("no audio stream: recorded with has_audio false (later stages feed silence)")
    if info.vfr:
        notes.append("variable frame rate: frame times are the decoded timestamps")
    return notes


def build_index(root: str | os.PathLike, n_parts: int, jobs: int = 0, unlabelled: str | os.PathLike | None = None
                ) -> Index:
    """Find, validate, probe and assign every video and track of the ABAW2 tree at `root`, and of the
    unlabelled corpora under `unlabelled` (`find_corpora`)."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset root is not a folder")
    if n_parts < 1:
        raise DatasetError(f"need at least one part, got {n_parts}")
    videos, ignored = find_videos(root)
    annotations = find_annotations(root)
    tracks, track_notes = assign_tracks(list(videos), annotations)
    corpora, ignored_there = find_corpora(unlabelled)
    for video in corpora:
        tracks[video] = [(video, "main")]
    return index_videos(videos | corpora, tracks, annotations, n_parts, jobs, root=root,
                        ignored=ignored + ignored_there, notes=track_notes)


def index_videos(videos: dict[str, Path], tracks: dict[str, list[tuple[str, str]]],
                 annotations: dict[str, dict[str, tuple[str, Path]]], n_parts: int, jobs: int = 0,
                 root: str | os.PathLike = "", ignored: list[Path] = (), notes: dict[str, list[str]] | None = None
                 ) -> Index:
    """The index of `videos` (name -> path) with their `tracks` (video -> [(track, person)]) and the
    `annotations` of `find_annotations` (every task may be empty): probed and fingerprinted in `jobs`
    processes, assigned to parts. `root`, `ignored` and `notes` (track -> report lines) go into the report."""
    if n_parts < 1:
        raise DatasetError(f"need at least one part, got {n_parts}")
    track_notes = dict(notes or {})
    read = {task: {track: read_annotation(path, task) for track, (_, path) in annotations[task].items()}
            for task in TASKS}
    probed = dict(zip(videos, run_units(_probe_one, list(videos.values()), jobs, "index")))

    video_rows, track_rows, video_notes = [], [], {}
    parts: dict[int, dict] = {p: {"part": p, "videos": []} for p in range(n_parts)}
    for video, path in videos.items():
        info, digest = probed[video]
        part = stable_part(video, n_parts)
        video_rows.append({"video": video, "path": path.as_posix(), "part": part, "fingerprint": digest,
                           **{k: v for k, v in vars(info).items() if k in VIDEOS.names}})
        if video_note := _video_notes(info):
            video_notes[video] = video_note
        parts[part]["videos"].append({
            "video": video, "path": path.as_posix(), "fingerprint": digest, "n_frames": info.n_frames,
            "has_audio": info.has_audio, "tracks": [{"track": t, "person": p} for t, p in tracks[video]]})
        for track, person in tracks[video]:
            row = {"track": track, "video": video, "person": person, "part": part, "n_frames": info.n_frames}
            for task in TASKS:
                annotation = read[task].get(track)
                row[f"{task}_set"] = annotations[task][track][0] if annotation is not None else ""
                row[f"{task}_rows"] = len(annotation) if annotation is not None else 0
                row[f"{task}_labelled"] = 0
                if annotation is not None:
                    fitted, note = reconcile(annotation, info.n_frames)
                    row[f"{task}_labelled"] = int(fitted.labelled.sum())
                    if note:
                        track_notes.setdefault(track, []).append(f"{task}: {note}")
            track_rows.append(row)
    track_rows.sort(key=lambda r: r["track"])
    report = {
        "root": Path(root).as_posix(),
        "n_parts": n_parts,
        "counts": {"videos": len(video_rows), "tracks": len(track_rows),
                   "unlabelled_tracks": sum(not any(r[f"{t}_labelled"] for t in TASKS) for r in track_rows),
                   "ignored_files": len(ignored)},
        **({"corpora": dict(sorted(Counter(corpus_of(v) for v in videos if corpus_of(v)).items()))}
           if any(corpus_of(v) for v in videos) else {}),
        "videos": video_notes,
        "tracks": dict(sorted(track_notes.items())),
        "ignored_files": [p.as_posix() for p in ignored],
    }
    for name, lines in [*video_notes.items(), *report["tracks"].items()]:
        for line in lines:
            log.warning("%s: %s", name, line)
    return Index(pa.Table.from_pylist(video_rows, VIDEOS), pa.Table.from_pylist(track_rows, TRACKS), parts, report)


def write_index(index: Index, out_dir: str | os.PathLike) -> None:
    """videos.parquet, tracks.parquet, parts/part-<p>.json and report.json under `out_dir` (the layout's
    `index` folder), each atomically."""
    out_dir = Path(out_dir)
    write_parquet(index.videos, out_dir / "videos.parquet")
    write_parquet(index.tracks, out_dir / "tracks.parquet")
    names = set()
    for p, document in sorted(index.parts.items()):
        names.add(f"part-{p}.json")
        write_part(document, out_dir / "parts" / f"part-{p}.json")
    for stale in sorted((out_dir / "parts").glob("part-*.json")):
        if stale.name not in names:
            stale.unlink()
    write_json(index.report, out_dir / "report.json")
