"""Work spread over processes, one ONNX Runtime thread each, with results in input order whatever `jobs`."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path
from typing import Callable, Iterator

import onnxruntime as ort
import pyarrow as pa
from tqdm import tqdm

from affect.shards import read_arrow, shard_paths, write_arrow

CHUNK_ROWS = 512  # shard rows per task of `map_shards`


def ort_session(model_path: str | os.PathLike, threads: int = 1) -> ort.InferenceSession:
    """A CPU ONNX Runtime session with `threads` intra-op threads and sequential execution."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    return ort.InferenceSession(str(model_path), sess_options=options, providers=["CPUExecutionProvider"])


def ordered_map(function: Callable, items: list, jobs: int, initializer: Callable, initargs: tuple,
                desc: str) -> Iterator:
    """`function` over `items` in `jobs` forked processes (0 = all cores), results in input order, with tqdm.

    `initializer(*initargs)` runs once per process (in this one when a single process is enough).
    """
    processes = min(len(items), jobs or len(os.sched_getaffinity(0)))
    if processes <= 1:
        initializer(*initargs)
        yield from tqdm(map(function, items), total=len(items), desc=desc)
        return
    with multiprocessing.get_context("fork").Pool(processes, initializer, initargs) as pool:
        yield from tqdm(pool.imap(function, items), total=len(items), desc=desc)


def _chunk(job: tuple) -> pa.Table:
    function, path, start, length = job
    return function(read_arrow(path).slice(start, length))


def map_shards(function: Callable[[pa.Table], pa.Table], in_dir: str | os.PathLike, out_dir: str | os.PathLike,
               jobs: int, initializer: Callable, initargs: tuple, desc: str) -> list[Path]:
    """Apply `function` to every shard of `in_dir` (in chunks of CHUNK_ROWS rows, in parallel); write each result
    under the same shard name in `out_dir`, row for row; remove `out_dir` shards left from an earlier run."""
    inputs = shard_paths(in_dir)
    if not inputs:
        raise FileNotFoundError(f"{in_dir}: no shards")
    chunks, rows_of = [], {}
    for path in inputs:
        rows = rows_of[str(path)] = read_arrow(path).num_rows
        chunks += [(str(path), start, min(CHUNK_ROWS, rows - start)) for start in range(0, max(rows, 1), CHUNK_ROWS)]
    results = ordered_map(_chunk, [(function, *c) for c in chunks], jobs, initializer, initargs, desc)
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


def no_setup() -> None:
    """An initializer for work that needs no per-process state."""
