"""Work units spread over processes: one pool, one start method, results in input order whatever `jobs`.

A per-part stage's unit of work is a plain, importable function of picklable arguments: a video for split,
align and mel, a chunk of shard rows for landmarks and masks. `run_units` runs the units in a process pool
(or in this process when one is enough) and yields their results in input order; the stage's driver
collects them and writes its outputs atomically. Another executor (a cluster) can run the same units.

Start method `spawn`: each worker is a fresh interpreter that builds its own state (an ONNX Runtime session,
a thread setting) in `initializer`. Forking a process whose cv2 or ONNX Runtime thread pools are running can
deadlock the child; a fresh interpreter cannot inherit them, and `spawn` is the default on macOS and Windows
too. A worker imports the caller's `__main__` module as `__mp_main__`, so scripts that start a pool keep their
work under `if __name__ == "__main__":`.
"""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path
from typing import Callable, Iterator

import pyarrow as pa
from tqdm import tqdm

from affect.shards import read_arrow, shard_paths, write_arrow

START_METHOD = "spawn"
CHUNK_ROWS = 512  # shard rows per unit of `map_shards`


def no_setup() -> None:
    """An initializer for work that needs no per-process state."""


def run_units(function: Callable, units: list, jobs: int, desc: str, initializer: Callable = no_setup,
              initargs: tuple = ()) -> Iterator:
    """`function(unit)` for every unit, in `jobs` processes (0 = all cores), results in input order, with a tqdm bar.

    `initializer(*initargs)` runs once per process (in this one when a single process is enough).
    """
    processes = min(len(units), jobs or len(os.sched_getaffinity(0)))
    if processes <= 1:
        initializer(*initargs)
        yield from tqdm(map(function, units), total=len(units), desc=desc)
        return
    with multiprocessing.get_context(START_METHOD).Pool(processes, initializer, initargs) as pool:
        yield from tqdm(pool.imap(function, units), total=len(units), desc=desc)


def _chunk(unit: tuple) -> pa.Table:
    function, path, start, length = unit
    return function(read_arrow(path).slice(start, length))


def map_shards(function: Callable[[pa.Table], pa.Table], in_dir: str | os.PathLike, out_dir: str | os.PathLike,
               jobs: int, desc: str, initializer: Callable = no_setup, initargs: tuple = ()) -> list[Path]:
    """Apply `function` to every shard of `in_dir` (units of CHUNK_ROWS rows, in parallel); write each result
    under the same shard name in `out_dir`, row for row; remove `out_dir` shards left from an earlier run."""
    inputs = shard_paths(in_dir)
    if not inputs:
        raise FileNotFoundError(f"{in_dir}: no shards")
    chunks, rows_of = [], {}
    for path in inputs:
        rows = rows_of[str(path)] = read_arrow(path).num_rows
        chunks += [(str(path), start, min(CHUNK_ROWS, rows - start)) for start in range(0, max(rows, 1), CHUNK_ROWS)]
    results = run_units(_chunk, [(function, *c) for c in chunks], jobs, desc, initializer, initargs)
    pending: dict[str, list[pa.Table]] = {}
    written = []
    for table, (path, start, length) in zip(results, chunks):
        pending.setdefault(path, []).append(table)
        if start + length >= rows_of[path]:
            out = Path(out_dir) / Path(path).name
            write_arrow(pa.concat_tables(pending.pop(path)).combine_chunks(), out)
            written.append(out)
    for stale in set(shard_paths(out_dir)) - set(written):
        stale.unlink()
    return written
