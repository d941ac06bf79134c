"""Work units spread over processes: one pool, one start method, results in input order whatever `jobs`.

A per-part stage's unit of work is a plain, importable function of picklable arguments: a video for split,
align and mel, a chunk of shard rows for landmarks and masks. `run_units` runs the units in a process pool
(or in this process when one is enough) and yields their results in input order; the stage's driver
collects them and writes its outputs atomically.

Executors (params.yaml `executor`, passed as `executor`): `local` (default) is the process pool above, `jobs`
processes on this machine. `ray` runs the same units as Ray tasks on a cluster (`ray.init(address=...)`):
each task is retried by Ray when its worker or node dies (`RAY_RETRIES`), a unit's own error (a video that
fails with on_error "fail") is raised here as it is locally, and results come back in input order, so the
driver writes the same bytes as with the local pool. The cluster's workers get this `affect` package from the
driver (Ray's runtime_env py_modules) and run in the driver's working directory: every node must see the
project's files at the same path (one machine, or a shared filesystem such as NFS). A worker builds its
per-process state once (`initializer`), as a pool process does. At most two units per cluster CPU are in
flight at once (`jobs` is the local pool's), so the driver holds a bounded number of results.

Start method `spawn`: each worker is a fresh interpreter that builds its own state (an ONNX Runtime session,
a thread setting) in `initializer`. Forking a process whose cv2 or ONNX Runtime thread pools are running can
deadlock the child; a fresh interpreter cannot inherit them, and `spawn` is the default on macOS and Windows
too. A worker imports the caller's `__main__` module as `__mp_main__`, so scripts that start a pool keep their
work under `if __name__ == "__main__":`.
"""

from __future__ import annotations

import multiprocessing
import os
from collections import deque
from pathlib import Path
from typing import Callable, Iterator

import pyarrow as pa
from tqdm import tqdm

from affect.shards import read_arrow, shard_paths, write_arrow

START_METHOD = "spawn"
CHUNK_ROWS = 512  # shard rows per unit of `map_shards`
BACKENDS = ("local", "ray")
RAY_RETRIES = 3  # times Ray reruns a unit whose worker process or node died


def no_setup() -> None:
    """An initializer for work that needs no per-process state."""


def run_units(function: Callable, units: list, jobs: int, desc: str, initializer: Callable = no_setup,
              initargs: tuple = (), executor: dict | None = None) -> Iterator:
    """`function(unit)` for every unit, results in input order, with a tqdm bar: in `jobs` local processes
    (0 = all cores), or on a Ray cluster when `executor` (params.yaml `executor`) says backend "ray".

    `initializer(*initargs)` runs once per process (in this one when a single process is enough).
    """
    backend = (executor or {}).get("backend", "local")
    if backend not in BACKENDS:
        raise ValueError(f"executor.backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
    if backend == "ray":
        yield from tqdm(_ray_units(function, units, initializer, initargs, executor.get("address", "auto")),
                        total=len(units), desc=f"{desc} (ray)")
        return
    processes = min(len(units), jobs or len(os.sched_getaffinity(0)))
    if processes <= 1:
        initializer(*initargs)
        yield from tqdm(map(function, units), total=len(units), desc=desc)
        return
    with multiprocessing.get_context(START_METHOD).Pool(processes, initializer, initargs) as pool:
        yield from tqdm(pool.imap(function, units), total=len(units), desc=desc)


def connect(address: str = "auto") -> None:
    """Join the Ray cluster at `address` (host:port, or "auto": the one this machine joined with `ray start`)
    unless this process already has, shipping this `affect` package to its workers."""
    import ray

    if not ray.is_initialized():
        import affect

        ray.init(address=address, log_to_driver=False, logging_level="WARNING",
                 runtime_env={"py_modules": [str(Path(affect.__file__).parent)]})


_state: dict = {}


def _ray_unit(work: tuple[Callable, Callable, tuple], unit, cwd: str):
    """A unit in a Ray worker: the driver's working directory, this process's state built once.
    `work` is (function, initializer, initargs)."""
    function, initializer, initargs = work
    os.chdir(cwd)
    key = (initializer.__module__, initializer.__qualname__, repr(initargs))
    if _state.get("key") != key:
        initializer(*initargs)
        _state["key"] = key
    return function(unit)


def _ray_units(function: Callable, units: list, initializer: Callable, initargs: tuple,
               address: str) -> Iterator:
    import ray

    connect(address)
    remote = ray.remote(max_retries=RAY_RETRIES, num_cpus=1)(_ray_unit)
    window = 2 * max(1, int(ray.cluster_resources().get("CPU", 1)))
    cwd, pending, todo = os.getcwd(), deque(), iter(units)
    work = ray.put((function, initializer, initargs))  # stored once, not sent with every unit

    def submit() -> None:
        for unit in todo:
            pending.append(remote.remote(work, unit, cwd))
            return

    for _ in range(window):
        submit()
    while pending:
        try:
            result = ray.get(pending.popleft())
        except ray.exceptions.RayTaskError as err:
            raise err.cause from None  # the unit's own error, as the local pool raises it
        submit()
        yield result


def _chunk(unit: tuple) -> pa.Table:
    function, path, start, length = unit
    return function(read_arrow(path).slice(start, length))


def map_shards(function: Callable[[pa.Table], pa.Table], in_dir: str | os.PathLike, out_dir: str | os.PathLike,
               jobs: int, desc: str, initializer: Callable = no_setup, initargs: tuple = (),
               executor: dict | None = None) -> list[Path]:
    """Apply `function` to every shard of `in_dir` (units of CHUNK_ROWS rows, in parallel: `run_units`'s `jobs`
    and `executor`); write each result
    under the same shard name in `out_dir`, row for row; remove `out_dir` shards left from an earlier run."""
    inputs = shard_paths(in_dir)
    if not inputs:
        raise FileNotFoundError(f"{in_dir}: no shards")
    chunks, rows_of = [], {}
    for path in inputs:
        rows = rows_of[str(path)] = read_arrow(path).num_rows
        chunks += [(str(path), start, min(CHUNK_ROWS, rows - start)) for start in range(0, max(rows, 1), CHUNK_ROWS)]
    results = run_units(_chunk, [(function, *c) for c in chunks], jobs, desc, initializer, initargs, executor)
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
