"""FAISS index files: vectors by position, IDs and payload from files beside them.

A FAISS index holds vectors and, wrapped in an IndexIDMap, their IDs; nothing else. The
vectors are reconstructed in pages of positions (`reconstruct_n`), IDs come from the
IDMap, an `ids` file or the positions themselves, and payload from an optional sidecar
(JSONL or Parquet) with one row per vector in index order. FAISS stores no cosine/dot
distinction, so the job names the distance; the index's metric refuses a contradiction.
Indexes that keep compressed codes (PQ, SQ...) give back approximations: refused unless
`allow_lossy`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import orjson

from qmigrate.errors import SourceError
from qmigrate.records import DISTANCES, Page, Partition, Record, SourceInfo, VectorField
from qmigrate.sources import kit

# Index types whose reconstruct() gives back the vectors added, bit for bit.
EXACT = ("IndexFlat", "IndexFlatL2", "IndexFlatIP", "IndexIVFFlat", "IndexHNSWFlat")
# The job's distances each FAISS metric agrees with.
METRICS = {
    faiss.METRIC_L2: ("L2", {"euclid"}),
    faiss.METRIC_INNER_PRODUCT: ("inner product", {"cosine", "dot"}),
    faiss.METRIC_L1: ("L1", {"manhattan"}),
}


class Source:
    def __init__(self, config: dict[str, Any], batch_size: int) -> None:
        self.path = Path(config["index"])
        self.ids_path = Path(config["ids"]) if config.get("ids") else None
        self.payload_path = Path(config["payload"]) if config.get("payload") else None
        self.distance = config["distance"]
        self.allow_lossy = config["allow_lossy"]
        self.batch_size = batch_size
        self.label = f"FAISS index {self.path}"
        self._whole: Any = None  # the index as read: it owns what an IDMap wraps
        self._index: Any = None  # what reconstructs by position (inside any IDMap)
        self._ids: Any = None  # ID per position: an array, a list, or None (the position)
        self._sidecar: JsonlSidecar | ParquetSidecar | None = None
        self._lock = threading.Lock()

    # --- opening --------------------------------------------------------------------

    def _open(self) -> Any:
        """The index, its IDs and its sidecar, loaded once (the index memory-mapped where
        FAISS can): what every read shares."""
        with self._lock:
            if self._index is None:
                self._load()
        return self._index

    def _load(self) -> None:
        if not self.path.is_file():
            raise SourceError(self.label, f"no file {self.path}")
        try:  # read_index gives the index's own class; it owns any index it wraps
            index = faiss.read_index(str(self.path), faiss.IO_FLAG_MMAP_IFC)
        except RuntimeError:
            index = faiss.read_index(str(self.path))
        self._whole = index  # a wrapper freed frees the index: this one stays
        ids = None
        if isinstance(index, faiss.IndexIDMap | faiss.IndexIDMap2):
            if self.ids_path is not None:
                raise SourceError(
                    self.label, "the index is an IndexIDMap and carries its IDs: drop source.ids"
                )
            ids = faiss.vector_to_array(index.id_map)
            index = faiss.downcast_index(index.index)
        elif self.ids_path is not None:
            ids = _read_ids(self.ids_path)
        kind = type(index).__name__
        if kind not in EXACT and not self.allow_lossy:
            raise SourceError(
                self.label,
                f"{kind} keeps compressed codes, so its vectors come back as approximations; "
                "set allow_lossy: true to move those",
            )
        name, agrees = METRICS.get(index.metric_type, (f"metric {index.metric_type}", set()))
        if self.distance not in agrees:
            raise SourceError(
                self.label,
                f"source.distance: {self.distance} contradicts the index's {name} metric",
            )
        if faiss.try_extract_index_ivf(index) is not None:
            try:
                faiss.extract_index_ivf(index).make_direct_map()
            except RuntimeError:
                raise SourceError(
                    self.label,
                    f"{kind} was given IDs of its own (add_with_ids), so its vectors cannot "
                    "be read by position",
                ) from None
        total = index.ntotal
        if ids is not None and len(ids) != total:
            raise SourceError(
                self.label, f"{self.ids_path} holds {len(ids)} IDs for {total} vectors"
            )
        if self.payload_path is not None:
            self._sidecar = _sidecar(self.payload_path, self.label)
            if self._sidecar.rows != total:
                raise SourceError(
                    self.label,
                    f"{self.payload_path} holds {self._sidecar.rows} rows for {total} vectors",
                )
        self._ids = ids
        self._index = index

    # --- contract -------------------------------------------------------------------

    def push_down(self, filter: dict[str, Any] | None) -> dict[str, Any] | None:
        return filter  # FAISS holds no payload: the engine filters every row

    def describe(self) -> SourceInfo:
        index = self._open()
        details: dict[str, Any] = {"index": type(index).__name__, "file": str(self.path)}
        if type(index).__name__ not in EXACT:
            details["vectors"] = (
                "approximations: reconstructed from the index's compressed codes "
                "(allow_lossy), not the vectors once added"
            )
        fields: list[str] = []
        if self._sidecar is not None:
            fields = self._sidecar.fields
            details["payload"] = str(self.payload_path)
        return SourceInfo(
            count=index.ntotal,
            vectors=[VectorField("", "dense", index.d, DISTANCES[self.distance])],
            payload_fields=fields,
            details=details,
        )

    def partitions(self, n: int) -> list[Partition]:
        return [
            Partition(f"{i:04d}", {"start": start, "end": end})
            for i, (start, end) in enumerate(kit.even_ranges(0, self._open().ntotal, n))
        ]

    def read(self, partition: Partition, cursor: Any) -> Iterator[Page]:
        """Pages of positions [start, end); the cursor is the next position."""
        index = self._open()
        position, end = (
            (partition.spec["start"] if cursor is None else cursor),
            partition.spec["end"],
        )
        while position < end:
            count = min(self.batch_size, end - position)
            vectors = index.reconstruct_n(position, count)
            payloads, invalid = (
                self._sidecar.rows_between(position, position + count)
                if self._sidecar is not None
                else ([{} for _ in range(count)], [None] * count)
            )
            records = [
                Record(self._id(position + i), {"": vectors[i]}, payloads[i], invalid=invalid[i])
                for i in range(count)
            ]
            position += count
            yield Page(records, position, matrices={"": vectors})

    def _id(self, position: int) -> Any:
        if self._ids is None:
            return position
        value = self._ids[position]
        return value.item() if isinstance(value, np.generic) else value

    def search(self, vector_name: str, vector: list[float], k: int) -> list[Any]:
        """IDs of the k nearest vectors by the index's metric: exhaustive where the index
        allows (every IVF list probed, an HNSW graph's flat storage scanned)."""
        index = self._open()
        searched = index
        if isinstance(index, faiss.IndexHNSWFlat):
            searched = faiss.downcast_index(index.storage)
        ivf = faiss.try_extract_index_ivf(index)
        if ivf is not None:
            ivf.nprobe = ivf.nlist
        _, positions = searched.search(np.asarray([vector], np.float32), k)
        return [self._id(int(p)) for p in positions[0] if p >= 0]

    def explain(self, exc: Exception) -> str:
        return kit.first_line(exc)

    def close(self) -> None:
        self._index = self._whole = None
        self._sidecar = None


def _read_ids(path: Path) -> Any:
    """IDs in index order: a .npy array, else a text file of one ID per line (integers
    where every line is one, else strings)."""
    if path.suffix == ".npy":
        return np.load(path, mmap_mode="r", allow_pickle=False)
    lines = path.read_text().splitlines()
    if all(line.isdigit() for line in lines):
        return [int(line) for line in lines]
    return lines


def _sidecar(path: Path, label: str) -> JsonlSidecar | ParquetSidecar:
    if not path.is_file():
        raise SourceError(label, f"no file {path}")
    if path.suffix in (".parquet", ".pq"):
        return ParquetSidecar(path)
    return JsonlSidecar(path, label)


Rows = tuple[list[dict[str, Any]], list[str | None]]  # payloads, and why a row is invalid


class JsonlSidecar:
    """Payload rows in index order, one JSON object a line (blank lines skipped), read by
    position through the line offsets found once on opening."""

    def __init__(self, path: Path, label: str) -> None:
        starts = []
        offset = 0
        with path.open("rb") as handle:
            for line in handle:
                if line.strip():
                    starts.append(offset)
                offset += len(line)
        self.path = path
        self.label = label
        self.starts = np.asarray(starts, np.int64)
        self.rows = len(starts)
        self.fields = kit.payload_fields(
            self.rows_between(0, min(self.rows, kit.SAMPLE_RECORDS))[0]
        )

    def rows_between(self, start: int, end: int) -> Rows:
        rows = []
        with self.path.open("rb") as handle:
            for number in range(start, end):
                handle.seek(int(self.starts[number]))
                try:
                    row = orjson.loads(handle.readline())
                except orjson.JSONDecodeError as exc:
                    raise SourceError(self.label, f"{self.path} row {number}: {exc}") from None
                if not isinstance(row, dict):
                    raise SourceError(self.label, f"{self.path} row {number}: not a JSON object")
                rows.append(row)
        return rows, [None] * len(rows)


class ParquetSidecar:
    """Payload rows in index order, read by position through the row groups they fall in."""

    def __init__(self, path: Path) -> None:
        import pyarrow.parquet as pq

        self.file = pq.ParquetFile(path)
        metadata = self.file.metadata
        sizes = [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)]
        self.group_starts = np.cumsum([0, *sizes])
        self.rows = metadata.num_rows
        self.fields = sorted(self.file.schema_arrow.names)
        self.lock = threading.Lock()  # a ParquetFile is not safe to share between threads

    def rows_between(self, start: int, end: int) -> Rows:
        from qmigrate.sources import arrow_values

        first = int(np.searchsorted(self.group_starts, start, side="right")) - 1
        last = int(np.searchsorted(self.group_starts, end, side="left"))
        with self.lock:
            table = self.file.read_row_groups(list(range(first, last)))
        table = table.slice(start - int(self.group_starts[first]), end - start)
        values, invalid = arrow_values.payload_columns(table, table.column_names)
        rows = [{name: column[i] for name, column in values.items()} for i in range(end - start)]
        return rows, invalid
