"""QA pictures: a PNG grid of sampled face crops, with landmarks and the mask overlaid when given."""

from __future__ import annotations

import os

import cv2
import numpy as np
import pyarrow as pa

from affect.images import decode_image
from affect.schema import CROP_SIZE, N_LANDMARKS
from affect.shards import atomic_path

SCALE = 2       # tiles are crops enlarged this many times
COLUMNS = 6


def sample_rows(faces: pa.Table, n: int) -> list[int]:
    """Up to `n` rows with a face, evenly spread over the table (deterministic)."""
    found = np.flatnonzero(np.asarray(faces.column("found").to_numpy(zero_copy_only=False), bool))
    if len(found) <= n:
        return found.tolist()
    return found[np.linspace(0, len(found) - 1, n).round().astype(int)].tolist()


def _tile(faces: pa.Table, row: int, landmarks: pa.Table | None, masks: pa.Table | None) -> np.ndarray:
    crop = np.ascontiguousarray(decode_image(faces.column("crop")[row].as_py())[:, :, ::-1])
    size = crop.shape[0]
    tile = cv2.resize(crop, (size * SCALE, size * SCALE), interpolation=cv2.INTER_NEAREST)  # BGR, as cv2 writes
    if masks is not None and masks.column("mask")[row].as_py():
        mask = decode_image(masks.column("mask")[row].as_py(), grey=True)
        colour = cv2.applyColorMap(cv2.resize(mask, tile.shape[1::-1], interpolation=cv2.INTER_NEAREST),
                                   cv2.COLORMAP_JET)
        tile = np.where(cv2.resize(mask, tile.shape[1::-1], interpolation=cv2.INTER_NEAREST)[..., None] > 0,
                        (0.5 * tile + 0.5 * colour).astype(np.uint8), tile)
    if landmarks is not None:
        points = np.asarray(landmarks.column("landmarks")[row].as_py(), np.float32).reshape(N_LANDMARKS, 2)
        for x, y in (points * SCALE).round().astype(int):
            cv2.circle(tile, (int(x), int(y)), 1, (0, 255, 0), -1)
    label = f"{faces.column('track')[row].as_py()[-22:]} {faces.column('frame')[row].as_py()}"
    (width, height), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, 0.4, 1)
    cv2.rectangle(tile, (0, 0), (width + 5, height + 6), (0, 0, 0), -1)
    cv2.putText(tile, label, (2, height + 2), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
    return tile


def gallery(faces: pa.Table, landmarks: pa.Table | None = None, masks: pa.Table | None = None, *,
            path: str | os.PathLike, n: int = 24) -> None:
    """Write a PNG grid of up to `n` sampled crops (landmarks as green dots, mask as a colour overlay)."""
    rows = sample_rows(faces, n)
    side = CROP_SIZE * SCALE
    if rows:
        tiles = [_tile(faces, r, landmarks, masks) for r in rows]
        side = tiles[0].shape[0]
    else:
        tiles = [np.zeros((side, side, 3), np.uint8)]
        cv2.putText(tiles[0], "no face found", (10, side // 2), cv2.FONT_HERSHEY_SIMPLEX, 0.6,
                    (255, 255, 255), 1, cv2.LINE_AA)
    columns = min(COLUMNS, len(tiles))
    grid = np.zeros((side * -(-len(tiles) // columns), side * columns, 3), np.uint8)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, columns)
        grid[r * side:(r + 1) * side, c * side:(c + 1) * side] = tile
    with atomic_path(path) as tmp:
        ok, data = cv2.imencode(".png", grid)
        tmp.write_bytes(data.tobytes())
