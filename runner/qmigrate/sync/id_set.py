"""The point IDs one sync pass read from the source, kept on disk instead of in memory.

A Qdrant point ID is an unsigned 64-bit integer or a UUID. Each partition appends the IDs of
its acknowledged pages to two files of its own, before the page's checkpoint is saved: a
file of uint64 for integer IDs and one of (high, low) uint64 pairs for UUIDs; a page cut
short by a kill leaves a partial record at the end, which reading drops. So the files hold
at least every ID up to the saved cursors, and a resumed pass appends the rest (an ID twice
is harmless: the merge drops repeats).

To compare with the target, the files are cut into runs of `RUN_KEYS` IDs, each sorted in
memory (numpy) and written back, and the runs are merged lazily: `sorted_keys` yields every
ID once, ascending in Qdrant's scroll order (integers ascending, then UUIDs by their 128-bit
value), as Python integers (`key`). Memory: one run being sorted, plus a buffer per run.
100 million IDs are 0.8-1.6 GB on disk and about 16 MB of memory per run sorted.
"""

from __future__ import annotations

import hashlib
import heapq
import shutil
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

RUN_KEYS = 1 << 20  # IDs sorted in memory at once
READ_KEYS = 1 << 16  # IDs read at once from each sorted run while merging
UUID_BASE = 1 << 64  # key of a UUID: above every integer ID, as Qdrant orders them
UUID_TYPE = np.dtype([("hi", "<u8"), ("lo", "<u8")])
INT_TYPE = np.dtype("<u8")


def key(point_id: Any) -> int:
    """A point ID as one integer, ordered as Qdrant scrolls: integers, then UUIDs."""
    if isinstance(point_id, int):
        return point_id
    return UUID_BASE + uuid.UUID(str(point_id)).int


def point_id(key_: int) -> int | str:
    return key_ if key_ < UUID_BASE else str(uuid.UUID(int=key_ - UUID_BASE))


class IdSpill:
    """The ID files of one pass, in `directory` (created; `clear` empties it)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)

    def clear(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)
        self.directory.mkdir(parents=True, exist_ok=True)

    def _file(self, partition: str, kind: str) -> Path:
        name = hashlib.sha1(partition.encode()).hexdigest()[:16]
        return self.directory / f"ids-{name}.{kind}"

    def append(self, partition: str, ids: Iterable[Any]) -> None:
        """Add IDs read from `partition` (one thread per partition)."""
        integers: list[int] = []
        uuids: list[tuple[int, int]] = []
        for point_id_ in ids:
            if isinstance(point_id_, int):
                integers.append(point_id_)
            else:
                value = uuid.UUID(str(point_id_)).int
                uuids.append((value >> 64, value & 0xFFFFFFFFFFFFFFFF))
        if integers:
            with open(self._file(partition, "int"), "ab") as out:
                out.write(np.asarray(integers, dtype=INT_TYPE).tobytes())
        if uuids:
            with open(self._file(partition, "uuid"), "ab") as out:
                out.write(np.asarray(uuids, dtype=UUID_TYPE).tobytes())

    def sorted_keys(self) -> Iterator[int]:
        """Every ID appended, once each, ascending in scroll order (see `key`)."""
        yield from _unique(heapq.merge(*self._runs("int", INT_TYPE)))
        yield from _unique(heapq.merge(*self._runs("uuid", UUID_TYPE)))

    def _runs(self, kind: str, dtype: np.dtype[Any]) -> list[Iterator[int]]:
        runs_dir = self.directory / f"runs-{kind}"
        shutil.rmtree(runs_dir, ignore_errors=True)
        runs_dir.mkdir()
        runs: list[Iterator[int]] = []
        for file in sorted(self.directory.glob(f"ids-*.{kind}")):
            whole = file.stat().st_size // dtype.itemsize  # a torn last record is dropped
            if not whole:
                continue
            data: np.ndarray[Any, Any] = np.memmap(file, dtype=dtype, mode="r", shape=(whole,))
            for start in range(0, whole, RUN_KEYS):
                chunk = np.array(data[start : start + RUN_KEYS])
                chunk.sort(order=["hi", "lo"] if kind == "uuid" else None)
                run = runs_dir / f"run-{len(runs):06d}.bin"
                chunk.tofile(run)
                runs.append(_read_run(run, dtype, kind == "uuid"))
        return runs


def _read_run(path: Path, dtype: np.dtype[Any], is_uuid: bool) -> Iterator[int]:
    data = np.memmap(path, dtype=dtype, mode="r")
    for start in range(0, len(data), READ_KEYS):
        chunk = data[start : start + READ_KEYS]
        if is_uuid:
            his, los = chunk["hi"].tolist(), chunk["lo"].tolist()
            yield from (UUID_BASE + (hi << 64 | lo) for hi, lo in zip(his, los, strict=True))
        else:
            yield from chunk.tolist()


def _unique(keys: Iterator[int]) -> Iterator[int]:
    last = None
    for k in keys:
        if k != last:
            yield k
            last = k
