"""Sharded Apache Arrow IPC files and the other files the pipeline writes: atomic writes, memory-mapped reads.

Every file the pipeline writes goes through `atomic_path`: it is written under a temporary name
in the same folder and renamed into place only when complete, so a crash never leaves a file that
looks finished. Shards are Arrow IPC files (`shard-00000.arrow`, ...) that `pyarrow.memory_map`
opens without copying.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Iterator

import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

SHARD_GLOB = "shard-*.arrow"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it to `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual permissions
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def sha256_of(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_json(document, path: str | os.PathLike, indent: int = 1, sort_keys: bool = False) -> None:
    """Write a JSON document (a newline at the end), atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(document, indent=indent, sort_keys=sort_keys) + "\n")


def write_arrow(table: pa.Table, path: str | os.PathLike) -> None:
    """Write one table as an Arrow IPC file, atomically."""
    with atomic_path(path) as tmp:
        with pa.OSFile(str(tmp), "wb") as sink, ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table)


def write_parquet(table: pa.Table, path: str | os.PathLike) -> None:
    """Write one table as a Parquet file, atomically (no timestamps inside: same rows, same bytes)."""
    with atomic_path(path) as tmp:
        pq.write_table(table, str(tmp), compression="zstd")


def read_arrow(path: str | os.PathLike) -> pa.Table:
    """Memory-map one Arrow IPC file (zero-copy)."""
    with pa.memory_map(str(path), "r") as source:
        return ipc.open_file(source).read_all()


def shard_paths(folder: str | os.PathLike) -> list[Path]:
    """The shards of one folder, in order."""
    return sorted(Path(folder).glob(SHARD_GLOB))


def read_shards(folder: str | os.PathLike) -> pa.Table:
    """All shards of one folder as one (memory-mapped) table."""
    paths = shard_paths(folder)
    if not paths:
        raise FileNotFoundError(f"{folder}: no {SHARD_GLOB} files")
    return pa.concat_tables([read_arrow(p) for p in paths])


class ShardWriter:
    """Stream rows into `folder/shard-00000.arrow`, `shard-00001.arrow`, ... of `rows_per_shard` rows each.

    Use as a context manager. Each shard is written atomically as soon as it is full; on a clean exit
    the last one is flushed and shards left over from an earlier, longer run are removed. On an
    exception nothing more is written, so an interrupted run never leaves a shard that looks complete.
    """

    def __init__(self, folder: str | os.PathLike, schema: pa.Schema, rows_per_shard: int):
        self.folder = Path(folder)
        self.schema = schema
        self.rows_per_shard = rows_per_shard
        self.paths: list[Path] = []
        self._pending: list[pa.RecordBatch] = []
        self._pending_rows = 0

    def __enter__(self) -> "ShardWriter":
        self.folder.mkdir(parents=True, exist_ok=True)
        return self

    def write(self, table: pa.Table | pa.RecordBatch) -> None:
        """Append rows (their schema must equal the writer's)."""
        if isinstance(table, pa.RecordBatch):
            table = pa.Table.from_batches([table])
        table = table.cast(self.schema) if table.schema != self.schema else table
        for batch in table.to_batches():
            self._pending.append(batch)
            self._pending_rows += batch.num_rows
            while self._pending_rows >= self.rows_per_shard:
                self._flush(self.rows_per_shard)

    def _flush(self, n_rows: int) -> None:
        pending = pa.Table.from_batches(self._pending, schema=self.schema)
        head, rest = pending.slice(0, n_rows), pending.slice(n_rows)
        path = self.folder / f"shard-{len(self.paths):05d}.arrow"
        write_arrow(head.combine_chunks(), path)
        self.paths.append(path)
        self._pending = rest.to_batches()
        self._pending_rows = rest.num_rows

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            return
        if self._pending_rows or not self.paths:
            self._flush(self._pending_rows)
        for stale in set(shard_paths(self.folder)) - set(self.paths):
            stale.unlink()


def write_shards(table: pa.Table, folder: str | os.PathLike, rows_per_shard: int) -> list[Path]:
    """Cut `table` into shards of `rows_per_shard` rows in `folder`; return their paths.

    An empty table still gives one (empty) shard, so every part has a file with the schema.
    """
    with ShardWriter(folder, table.schema, rows_per_shard) as writer:
        writer.write(table)
    return writer.paths
