"""Pick, in each frame's detections, the face that belongs to a track: `main`, or `left` / `right`.

`main` follows one person by temporal continuity: the detection overlapping its last box (IoU), else one
close to it of a similar size. When no detection continues it, the track is lost for that frame; it takes the
most prominent (largest) face again only when it has been lost for `reacquire_s` seconds, or when every frame
since it was lost had no face at all (the person left the picture and nobody else is there); a face
that is there in the very frame the track is lost in is never taken at once.
`left` / `right`: each side continues its own last box; when both continue, identities are kept even if the
two move. Otherwise two faces are assigned by x order (the left one of the two is `left`), and a single face
to the side it continues (when both could: the side seen last, then the one it overlaps more), else to the
frame half its centre lies in.
"""

from __future__ import annotations

import numpy as np

MIN_IOU = 0.3          # a detection continues the last box at this IoU or above
MAX_SHIFT = 0.5        # ... or with its centre within this fraction of the last box's side
MAX_SCALE = 1.5        # ... and a side ratio within [1 / MAX_SCALE, MAX_SCALE]


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two boxes x1, y1, x2, y2."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def _side(box: np.ndarray) -> float:
    return float(max(box[2] - box[0], box[3] - box[1]))


def _centre(box: np.ndarray) -> np.ndarray:
    return np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])


def continuing(boxes: np.ndarray, last: np.ndarray | None) -> int | None:
    """Index of the detection that continues `last` (highest IoU, else nearest close one of similar size), or None."""
    if last is None or len(boxes) == 0:
        return None
    overlaps = [iou(b, last) for b in boxes]
    best = int(np.argmax(overlaps))
    if overlaps[best] >= MIN_IOU:
        return best
    side = _side(last)
    close = []
    for i, box in enumerate(boxes):
        ratio = _side(box) / side
        shift = float(np.linalg.norm(_centre(box) - _centre(last))) / side
        if shift <= MAX_SHIFT and 1 / MAX_SCALE <= ratio <= MAX_SCALE:
            close.append((shift, i))
    return min(close)[1] if close else None


def largest(boxes: np.ndarray) -> int:
    """Index of the largest box (the first of equals)."""
    return int(np.argmax((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])))


class MainTracker:
    """Follows one person: `update(boxes, t)` -> (index into boxes or None, reason)."""

    def __init__(self, reacquire_s: float = 0.5):
        self.reacquire_s = reacquire_s
        self.last: np.ndarray | None = None
        self.lost_since: float | None = None   # time of the first frame it was lost in
        self.empty_since_lost = True           # no face at all in any frame since it was lost

    def update(self, boxes: np.ndarray, t: float) -> tuple[int | None, str]:
        index = continuing(boxes, self.last)
        if index is None and len(boxes):
            lost_before = self.lost_since is not None
            waited = lost_before and t - self.lost_since >= self.reacquire_s
            if self.last is None or waited or (lost_before and self.empty_since_lost):
                index = largest(boxes)
        if index is not None:
            self.last, self.lost_since = boxes[index, :4].copy(), None
            return index, ""
        if self.lost_since is None:
            self.lost_since, self.empty_since_lost = t, True
        self.empty_since_lost = self.empty_since_lost and len(boxes) == 0
        return None, "lost" if len(boxes) else "no_face"


class PairTracker:
    """Follows the left and the right person: `update(boxes, width)` -> ((left index, reason), (right ...))."""

    def __init__(self):
        self.last: list[np.ndarray | None] = [None, None]
        self.seen = [-1, -1]  # update number of each side's last sighting
        self.updates = 0

    def update(self, boxes: np.ndarray, width: int) -> tuple[tuple[int | None, str], tuple[int | None, str]]:
        self.updates += 1
        if len(boxes) == 0:
            return (None, "no_face"), (None, "no_face")
        left, right = (continuing(boxes, last) for last in self.last)
        if left is not None and right is not None and left != right:
            picked = [left, right]
        elif len(boxes) >= 2:
            areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
            two = sorted(np.argsort(-areas, kind="stable")[:2].tolist(), key=lambda i: _centre(boxes[i])[0])
            picked = two
        else:
            overlaps = [iou(boxes[0], last) if last is not None else 0.0 for last in self.last]
            if left == 0 and right == 0 and self.seen[0] != self.seen[1]:
                on_left = self.seen[0] > self.seen[1]  # both could continue it: the side seen last
            elif left == 0 and right == 0 and overlaps[0] != overlaps[1]:
                on_left = overlaps[0] > overlaps[1]    # ... then the side it overlaps more
            elif (left == 0) != (right == 0):
                on_left = left == 0
            else:
                on_left = _centre(boxes[0])[0] < width / 2
            picked = [0, None] if on_left else [None, 0]
        out = []
        for side, index in enumerate(picked):
            if index is None:
                out.append((None, "other_side"))
            else:
                self.last[side], self.seen[side] = boxes[index, :4].copy(), self.updates
                out.append((int(index), ""))
        return out[0], out[1]
