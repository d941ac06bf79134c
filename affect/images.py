"""The image bytes stored in the shards: aligned crops as JPEG (align), masks as PNG (masks).

Encoding is deterministic (the same pixels and settings give the same bytes, on any machine with the same
OpenCV). Every reader decodes through `decode_image`.
"""

from __future__ import annotations

import cv2
import numpy as np

PNG_COMPRESSION = 6


def encode_jpeg(image_rgb: np.ndarray, quality: int) -> bytes:
    """JPEG bytes of an RGB uint8 image at `quality` (0-100)."""
    ok, data = cv2.imencode(".jpg", np.ascontiguousarray(image_rgb[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return data.tobytes()


def encode_png(grey: np.ndarray) -> bytes:
    """PNG bytes of a grey uint8 image."""
    ok, data = cv2.imencode(".png", grey, [cv2.IMWRITE_PNG_COMPRESSION, PNG_COMPRESSION])
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return data.tobytes()


def decode_image(data: bytes | np.ndarray, grey: bool = False) -> np.ndarray | None:
    """(H, W, 3) RGB uint8, or (H, W) grey uint8 with `grey`, from JPEG or PNG bytes (or a uint8 view of
    them); None when the bytes are not an image."""
    buffer = np.frombuffer(data, np.uint8) if isinstance(data, (bytes, bytearray, memoryview)) else data
    return cv2.imdecode(buffer, cv2.IMREAD_GRAYSCALE if grey else cv2.IMREAD_COLOR_RGB)
