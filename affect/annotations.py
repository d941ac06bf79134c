"""ABAW annotation files: read with strict validation, write in the same format, reconcile with videos
(docs/method.md, "Annotation format").

One file per (task, track): a header line, then one line per video frame (line i + 2 is frame i).
- va: header `valence,arousal`; two floats in [-1, 1]; -5 in either column = frame not annotated.
- expr: header `Neutral,Anger,...,Surprise`; one integer 0..6; -1 = not annotated.
- au: header `AU1,AU2,...,AU26`; twelve integers 0/1; -1 in any column = frame not annotated.
Cells may carry surrounding spaces and lines a `\\r`; a blank last line is ignored. A file with a header
and no rows is valid (0 rows); an empty file is not. Every error names the file and the line.

`write_annotation` writes the header, then one line per row: integers as such, floats in the shortest
text that reads back to the same float32 (`0.5`, `-0.0625`, `-5`), `\\n` line ends. Reading such a file
and writing it again gives the same bytes.

`reconcile` matches an annotation to the decoded frame count: rows beyond the last frame are dropped,
frames beyond the last row are unlabelled, rows are never shifted.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from affect.schema import AUS, EXPRESSIONS, VA_UNLABELLED, is_labelled
from affect.shards import atomic_path

HEADERS = {"va": ("valence", "arousal"), "expr": EXPRESSIONS, "au": AUS}
UNLABELLED = {"va": VA_UNLABELLED, "expr": -1, "au": -1}
DTYPES = {"va": np.float32, "expr": np.int8, "au": np.int8}


class AnnotationError(ValueError):
    """A malformed annotation file; the message names the file and the line."""


@dataclass(frozen=True)
class Annotation:
    """One annotation file: values (va float32 (N,2); expr int8 (N,); au int8 (N,12)) and a labelled mask (N,)."""

    values: np.ndarray
    labelled: np.ndarray
    path: Path | None = None
    task: str = ""

    def __len__(self) -> int:
        return len(self.labelled)


def _check_task(task: str) -> None:
    if task not in HEADERS:
        raise ValueError(f"unknown task {task!r}: expected one of {', '.join(HEADERS)}")


def _shape(task: str, n: int) -> tuple[int, ...]:
    return (n,) if task == "expr" else (n, len(HEADERS[task]))


def _parse_cell(task: str, cell: str) -> float | int:
    """One cell as a number of the task's kind, or ValueError with the reason."""
    if task == "va":
        try:
            value = float(cell)
        except ValueError:
            raise ValueError(f"cell {cell!r} is not a number") from None
        if value != -5 and not -1 <= value <= 1:
            raise ValueError(f"value {cell!r} outside [-1, 1] (and not -5, the 'not annotated' mark)")
        return value
    try:
        value = int(cell)
    except ValueError:
        raise ValueError(f"cell {cell!r} is not an integer") from None
    allowed = range(-1, 7) if task == "expr" else (-1, 0, 1)
    if value not in allowed:
        kind = "an expression 0..6" if task == "expr" else "an AU value 0 or 1"
        raise ValueError(f"value {cell!r} is not {kind} (or -1, the 'not annotated' mark)")
    return value


def read_annotation(path: str | os.PathLike, task: str) -> Annotation:
    """Read and validate one ABAW annotation file of `task` ("va", "expr" or "au")."""
    _check_task(task)
    path = Path(path)
    text = path.read_text(encoding="utf-8-sig")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if not lines or not lines[0].strip():
        raise AnnotationError(f"{path}:1: empty file, expected the header {','.join(HEADERS[task])!r}")
    header = tuple(cell.strip() for cell in lines[0].rstrip("\r").split(","))
    if header != HEADERS[task]:
        raise AnnotationError(f"{path}:1: header {lines[0].strip()!r} is not the {task} header "
                              f"{','.join(HEADERS[task])!r}")
    width = 1 if task == "expr" else len(HEADERS[task])
    rows = []
    for number, line in enumerate(lines[1:], start=2):
        cells = line.rstrip("\r").split(",")
        if len(cells) != width:
            raise AnnotationError(f"{path}:{number}: {len(cells)} column(s), expected {width} for {task}")
        try:
            rows.append([_parse_cell(task, cell.strip()) for cell in cells])
        except ValueError as e:
            raise AnnotationError(f"{path}:{number}: {e}") from None
    values = np.asarray(rows, dtype=DTYPES[task]).reshape(_shape(task, len(rows)))
    return Annotation(values, is_labelled(task, values), path, task)


def _format(value) -> str:
    if isinstance(value, (np.floating, float)):
        return np.format_float_positional(np.float32(value), unique=True, trim="-")
    return str(int(value))


def write_annotation(annotation: Annotation | np.ndarray, path: str | os.PathLike, task: str) -> None:
    """Write an Annotation (or an array of values) as an ABAW file of `task`, atomically."""
    _check_task(task)
    values = annotation.values if isinstance(annotation, Annotation) else np.asarray(annotation)
    values = values.astype(DTYPES[task]).reshape(_shape(task, len(values)))
    lines = [",".join(HEADERS[task])]
    for row in values.reshape(len(values), -1):
        lines.append(",".join(_format(v) for v in row))
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")


def reconcile(annotation: Annotation, n_frames: int) -> tuple[Annotation, str]:
    """Fit the rows to `n_frames`: extra rows dropped, missing rows unlabelled; the report line ("" if equal)."""
    n_rows = len(annotation)
    task = annotation.task or {2: "va", 1: "expr"}.get(annotation.values.shape[-1], "au")
    if annotation.values.ndim == 1:
        task = "expr"
    if n_rows == n_frames:
        return annotation, ""
    if n_rows > n_frames:
        lost = int(annotation.labelled[n_frames:].sum())
        kept = replace(annotation, values=annotation.values[:n_frames], labelled=annotation.labelled[:n_frames])
        return kept, (f"{n_rows} annotation rows for {n_frames} video frames: dropped the last "
                      f"{n_rows - n_frames} rows ({lost} labelled)")
    pad = np.full(_shape(task, n_frames - n_rows), UNLABELLED[task], annotation.values.dtype)
    padded = replace(annotation, values=np.concatenate([annotation.values, pad]),
                     labelled=np.concatenate([annotation.labelled, np.zeros(n_frames - n_rows, bool)]))
    return padded, (f"{n_rows} annotation rows for {n_frames} video frames: the last "
                    f"{n_frames - n_rows} frames are unlabelled")
