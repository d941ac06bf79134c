"""Masks from real landmarks: both styles differ, are non-empty and sit where the landmarks are."""

from pathlib import Path

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import pytest

from affect.landmarks import LandmarkModel, landmarks_part, model_folder
from affect.mask import FACE_PARTS, REGIONS, TSAV_LINES, masks_part, render_mask
from affect.schema import MASKS, Layout
from affect.shards import read_arrow, read_shards, shard_paths
from tests.pipeline import FAST, params
from tests.test_align import align, make_part

LEVEL = dict(REGIONS)


@pytest.fixture(scope="module")
def landmarks(media, models_dir):
    crop = cv2.imread(str(media / "images" / "insightface_Tom_Hanks_54745.png"))[:, :, ::-1]
    return LandmarkModel(models_dir / "pfld106" / "landmarks.onnx").predict(np.ascontiguousarray(crop))


def at(mask: np.ndarray, point: np.ndarray) -> int:
    return int(mask[int(round(point[1])), int(round(point[0]))])


def test_both_styles_differ_and_are_not_empty(landmarks):
    regions, lines = render_mask(landmarks, "regions"), render_mask(landmarks, "tsav_lines")
    assert regions.shape == lines.shape == (112, 112) and regions.dtype == np.uint8
    assert (regions > 0).mean() > 0.3 and 0.01 < (lines > 0).mean() < 0.1
    assert not np.array_equal(regions, lines)
    assert set(np.unique(lines)) == {0} | {level for _, level, _ in TSAV_LINES}
    assert set(np.unique(regions)) == {0} | set(LEVEL.values())


def test_regions_sit_where_the_landmarks_are(landmarks):
    mask = render_mask(landmarks, "regions")
    parts = FACE_PARTS
    assert at(mask, landmarks[parts["left_eye"]].mean(0)) == LEVEL["left_eye"]
    assert at(mask, landmarks[parts["right_eye"]].mean(0)) == LEVEL["right_eye"]
    assert at(mask, landmarks[74]) == LEVEL["nose"]  # on the bridge
    assert at(mask, landmarks[parts["left_brow"]].mean(0)) == LEVEL["left_brow"]
    lower_lip = landmarks[[53, 60]].mean(0)  # between the outer and inner lower lip lines
    assert at(mask, lower_lip) == LEVEL["lips"]
    assert at(mask, landmarks[12] * 0.8 + landmarks[74] * 0.2) == LEVEL["face"]  # the cheek
    assert mask[0, 0] == mask[0, 111] == 0  # outside the face
    # nothing is drawn far from the landmarks: every lit pixel is inside their convex hull (1 px slack)
    hull = cv2.convexHull(landmarks.astype(np.float32))
    lit = np.argwhere(mask > 0)[:, ::-1].astype(np.float32)
    assert all(cv2.pointPolygonTest(hull, (float(x), float(y)), True) > -1.5 for x, y in lit)


def test_tsav_lines_run_through_the_landmarks(landmarks):
    mask = render_mask(landmarks, "tsav_lines")
    lit = np.argwhere(mask > 0)[:, ::-1]
    used = sorted({i for part, _, _ in TSAV_LINES for i in FACE_PARTS[part]})
    distance = np.linalg.norm(lit[:, None, :] - landmarks[used][None], axis=2).min(1)
    assert distance.max() < 12  # pixels lie on segments between neighbouring points
    inside = [p for p in landmarks[used] if (p >= 1).all() and (p <= 110).all()]
    near = [np.abs(lit - p).max(1).min() for p in inside]
    assert len(inside) > 35 and max(near) <= 1.0  # every point of a drawn part is on (or next to) a line


def test_tsav_lines_draw_tsavs_parts_not_the_whole_contour(landmarks):
    """Both styles from one landmark set: `regions` fills the face from temple to temple, while TSAV's line mask
    (draw_mask, mask.py docstring) draws its 5-point chin across the chin only, and its 3-point nose bridge
    from below the root (the point between the eyes) down to the tip; parts keep TSAV's point counts."""
    regions, lines = render_mask(landmarks, "regions"), render_mask(landmarks, "tsav_lines")
    parts = FACE_PARTS
    contour = landmarks[parts["face_contour"]]
    width = np.ptp(contour[:, 0])
    face_x = np.nonzero(regions == LEVEL["face"])[1]
    assert np.ptp(face_x) > 0.9 * width
    chin_y, chin_x = np.nonzero(lines == 31)
    assert 0.25 * width < np.ptp(chin_x) < 0.6 * width, "the chin line spans the chin, not temple to temple"
    assert chin_y.min() > landmarks[parts["lips"]][:, 1].max() - 2, "the chin line lies below the mouth"
    bridge_y, bridge_x = np.nonzero(lines == 63)
    eye_line = landmarks[parts["left_eye"] + parts["right_eye"]][:, 1].mean()
    assert bridge_y.min() > eye_line + 3 and bridge_y.min() > landmarks[72][1] + 3, "the bridge leaves out its root"
    assert abs(bridge_y.max() - landmarks[86][1]) <= 1 and np.ptp(bridge_x) < 0.1 * width
    assert {part: (len(parts[part]), level, closed) for part, level, closed in TSAV_LINES} == {
        "lips": (12, 255, True), "tsav_left_brow": (5, 223, False), "tsav_right_brow": (5, 191, False),
        "tsav_left_eye": (6, 159, True), "tsav_right_eye": (6, 127, True), "tsav_nose_bridge": (3, 63, False),
        "tsav_chin": (5, 31, False)}


def test_bad_style_or_landmark_model_is_named(landmarks):
    with pytest.raises(ValueError, match="blobs"):
        render_mask(landmarks, "blobs")
    with pytest.raises(ValueError, match="jd106"):  # one 106-point numbering: the model name is what is checked
        model_folder("jd106")


def styled(layout: Layout, root: Path, style: str, jobs: int) -> Layout:
    """The masks step of `style` on `layout`'s part 0 faces and landmarks, into a layout rooted at `root`."""
    styled = Layout(root, layout.models)
    for folder in (styled.faces(0), styled.landmarks(0)):
        folder.parent.mkdir(parents=True, exist_ok=True)
        folder.symlink_to(layout.interim / folder.relative_to(styled.interim))
    masks_part(0, params(FAST, {"mask": {"style": style, "jobs": jobs}}), styled)
    return styled


def test_stage_shards_line_up_row_for_row_in_both_styles(tmp_path, media, models_dir):
    layout = make_part(Layout(tmp_path / "data", models_dir), [("grid_swiz3n", media / "grid_swiz3n.mpg", ["main"])])
    align(layout, shard_rows=40)
    landmarks_part(0, params(FAST), layout)
    folders = {"regions": styled(layout, tmp_path / "regions", "regions", 2).masks(0),
               "lines": styled(layout, tmp_path / "lines", "tsav_lines", 1).masks(0)}
    names = [p.name for p in shard_paths(layout.faces(0))]
    assert len(names) == 2
    for style in ("regions", "lines"):
        assert [p.name for p in shard_paths(folders[style])] == names
        for path in shard_paths(folders[style]):
            with pa.memory_map(str(path)) as source:
                table = ipc.open_file(source).read_all()
            assert table.schema == MASKS
            assert table.num_rows == read_arrow(layout.faces(0) / path.name).num_rows
    regions, lines = read_shards(folders["regions"]), read_shards(folders["lines"])
    found = read_shards(layout.faces(0)).column("found").to_pylist()
    for r, l, f in zip(regions.column("mask").to_pylist(), lines.column("mask").to_pylist(), found):
        assert (r != b"") == f and (l != b"") == f
        if f:
            assert r != l
            assert cv2.imdecode(np.frombuffer(r, np.uint8), cv2.IMREAD_UNCHANGED).shape == (112, 112)
    again = styled(layout, tmp_path / "again", "regions", 1).masks(0)
    assert [p.read_bytes() for p in shard_paths(again)] == [p.read_bytes() for p in shard_paths(folders["regions"])]
