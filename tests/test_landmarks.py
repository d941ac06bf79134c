"""106 landmarks on real aligned crops: plausible, close to the model's own framing, row for row with faces."""

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import pytest

from affect.align import align_matrix
from affect.images import decode_image
from affect.landmarks import LandmarkModel, landmarks_part, model_folder
from affect.schema import LANDMARKS, Layout
from affect.shards import read_arrow, read_shards, shard_paths
from affect.video import iter_frames
from tests.pipeline import FAST, params
from tests.test_align import align, ffmpeg, make_part

EYES = list(range(33, 43)) + list(range(87, 97))
MOUTH = list(range(52, 72))
NOSE_TIP = 86


@pytest.fixture(scope="module")
def model(models_dir):
    return LandmarkModel(models_dir / "pfld106" / "landmarks.onnx")


@pytest.fixture(scope="module")
def part(tmp_path_factory, media, models_dir):
    folder = tmp_path_factory.mktemp("landmarks")
    noface = folder / "noface.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=160x120:rate=25:duration=0.2", "-pix_fmt", "yuv420p", str(noface))
    videos = [("grid_sbwe5n", media / "grid_sbwe5n.mpg", ["main"]), ("noface", noface, ["main"]),
              ("pyfeat", media / "pyfeat_single_face.mp4", ["main"])]
    layout = make_part(Layout(folder, models_dir), videos)
    align(layout, shard_rows=64, jobs=2)
    landmarks_part(0, params(FAST, {"landmarks": {"jobs": 2}}), layout)
    return layout


def plausible(points: np.ndarray) -> None:
    assert points.shape == (106, 2) and points.dtype == np.float32
    inner = points[33:]  # brows, eyes, nose, mouth: inside the crop
    assert (inner >= 0).all() and (inner < 112).all()
    # the ArcFace crop ends at about the chin: the jaw line may reach a few pixels below it
    assert (points[:33] >= -8).all() and (points[:33] < 120).all()
    eyes_y, nose_y, mouth_y = points[EYES, 1].mean(), points[NOSE_TIP, 1], points[MOUTH, 1].mean()
    assert eyes_y < nose_y < mouth_y
    assert points[33:43, 0].mean() < points[NOSE_TIP, 0] < points[87:97, 0].mean()  # image-left eye first


def test_landmarks_on_an_insightface_aligned_crop_are_plausible(media, model):
    crop = cv2.imread(str(media / "images" / "insightface_Tom_Hanks_54745.png"))[:, :, ::-1]
    plausible(model.predict(np.ascontiguousarray(crop)))


def test_stage_rows_line_up_with_faces_and_are_plausible(part):
    faces, landmarks = read_shards(part.faces(0)), read_shards(part.landmarks(0))
    assert [p.name for p in shard_paths(part.landmarks(0))] == [p.name for p in shard_paths(part.faces(0))]
    for f, l in zip(shard_paths(part.faces(0)), shard_paths(part.landmarks(0))):
        with pa.memory_map(str(l)) as source:
            table = ipc.open_file(source).read_all()
        assert table.schema == LANDMARKS
        assert table.num_rows == read_arrow(f).num_rows
    assert landmarks.column("track").to_pylist() == faces.column("track").to_pylist()
    assert landmarks.column("frame").to_pylist() == faces.column("frame").to_pylist()
    points = np.asarray(landmarks.column("landmarks").to_pylist(), np.float32).reshape(-1, 106, 2)
    found = np.asarray(faces.column("found").to_pylist())
    assert found.sum() >= 0.95 * (75 + 72) and np.isnan(points[~found]).all()
    assert faces.column("track").to_pylist().count("noface") == 5
    for p in points[found]:
        plausible(p)


def test_crop_landmarks_agree_with_the_model_on_the_frame(part, model, media):
    """The crop framing must give about what the model gives on its native framing (box square of the frame)."""
    faces = read_shards(part.faces(0)).filter(pa.compute.equal(pa.compute.field("track"), "pyfeat"))
    rows = faces.to_pydict()
    errors = []
    for frame, image in enumerate(iter_frames(media / "pyfeat_single_face.mp4")):
        if frame % 12 or not rows["found"][frame]:
            continue
        matrix = align_matrix(np.array(rows["kps"][frame]))
        native = model.predict_in_box(image, np.array(rows["box"][frame])) @ matrix[:, :2].T + matrix[:, 2]
        errors.append(np.linalg.norm(model.predict(decode_image(rows["crop"][frame])) - native, axis=1).mean())
    assert len(errors) == 6 and np.mean(errors) < 4.0


def test_same_bytes_whatever_jobs(part, models_dir, tmp_path):
    again = Layout(tmp_path, models_dir)
    again.faces(0).parent.mkdir(parents=True)
    again.faces(0).symlink_to(part.faces(0))
    landmarks_part(0, params(FAST), again)
    assert [p.read_bytes() for p in shard_paths(again.landmarks(0))] == [
        p.read_bytes() for p in shard_paths(part.landmarks(0))]


def test_model_names_map_to_folders():
    assert model_folder("pfld106") == "pfld106" and model_folder("2d106det") == "buffalo_l"
    with pytest.raises(ValueError, match="hrnet"):
        model_folder("hrnet")
