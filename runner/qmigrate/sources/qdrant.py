"""Another Qdrant collection, on a server or in an embedded directory.

Qdrant evaluates the job's filter itself, so all of it is pushed down. Partitions are ID
ranges in Qdrant's scroll order (unsigned integers first, then UUIDs by value), so each
one is a plain scroll that stops at its upper bound. A server collection with custom
sharding is read one shard key at a time (each partition names its key), so that every
point keeps its key in the target (`target.shard_key: {from_source: true}`).

Over gRPC, pages are read from the protobuf messages themselves: a dense vector becomes a
float32 array straight from its packed field, without qdrant-client's pydantic records
(four fifths of a 768-d page's reading, bench/BENCHMARKS.md).
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from qdrant_client import grpc as pb
from qdrant_client import models
from qdrant_client.conversions.conversion import GrpcToRest, RestToGrpc

from qmigrate.errors import QmigrateError, SourceError
from qmigrate.qdrant_connection import QdrantConnection, connect
from qmigrate.records import (
    IndexSpec,
    Page,
    Partition,
    Record,
    SourceInfo,
    SparseVector,
    VectorField,
)
from qmigrate.retry import describe
from qmigrate.sources import kit

UUID_MIN = str(uuid.UUID(int=0))
MAX_INT_ID = 2**64 - 1
EXHAUSTED = {"exhausted": True}
COLLECTION_SETTINGS = (
    "shard_number",
    "replication_factor",
    "write_consistency_factor",
    "on_disk_payload",
)


def _order_key(point_id: int | str) -> tuple[int, int]:
    """Qdrant's scroll order: integer IDs, then UUIDs compared as 128-bit numbers."""
    if isinstance(point_id, int):
        return (0, point_id)
    return (1, uuid.UUID(point_id).int)


def _dump(model: Any, allowed: type[models.BaseModel] | None = None) -> dict[str, Any]:
    """A settings model as plain JSON values, kept to the fields `allowed` accepts."""
    data = model.model_dump(mode="json", exclude_none=True)
    if allowed is not None:
        data = {k: v for k, v in data.items() if k in allowed.model_fields}
    return data


class Source:
    def __init__(self, config: dict[str, Any], batch_size: int) -> None:
        self.config = config
        self.collection: str = config["collection"]
        self.batch_size = batch_size
        self.filter: models.Filter | None = None
        self.label = f"Qdrant at {config.get('url') or config.get('path')}"
        self._connection: QdrantConnection | None = None
        self.shard_keys: list[str | int] | None = None  # custom sharding: read per key

    @property
    def connection(self) -> QdrantConnection:
        if self._connection is None:
            path = self.config.get("path")
            if path is not None and not (Path(path) / "meta.json").is_file():
                # Local mode would create an empty storage there: refuse instead.
                raise SourceError(self.label, "no Qdrant local-mode data there")
            self._connection = connect(
                path=self.config.get("path"),
                url=self.config.get("url"),
                api_key=self.config.get("api_key"),
                prefer_grpc=self.config.get("prefer_grpc"),
                timeout=self.config["timeout"],
                grpc_port=self.config["grpc_port"],
                role="source",
            )
        return self._connection

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def explain(self, exc: Exception) -> str:
        return describe(exc)  # names HTTP statuses and gRPC codes, as for the target

    def describe(self) -> SourceInfo:
        connection = self.connection
        client = connection.client
        with connection.lock:
            if not client.collection_exists(self.collection):
                names = kit.some_of(
                    (c.name for c in client.get_collections().collections), "no collections"
                )
                raise QmigrateError(
                    f"source collection '{self.collection}' does not exist at "
                    f"{connection.where} (it has: {names})"
                )
            info = client.get_collection(self.collection)
            count = client.count(self.collection, exact=True).count
            sample, _ = client.scroll(self.collection, limit=kit.SAMPLE_RECORDS, with_payload=True)
            params = info.config.params
            if params.sharding_method == models.ShardingMethod.CUSTOM and not connection.local:
                listed = client.list_shard_keys(self.collection).shard_keys or []
                self.shard_keys = [description.key for description in listed]
        vectors = []
        dense = params.vectors
        named = {"": dense} if isinstance(dense, models.VectorParams) else dict(dense or {})
        for name, vector in named.items():
            options = _dump(vector, models.VectorParams)
            size = options.pop("size")
            distance = options.pop("distance")
            multi = vector.multivector_config is not None
            vectors.append(
                VectorField(name, "multi" if multi else "dense", size, distance, options)
            )
        for name, sparse in (params.sparse_vectors or {}).items():
            options = _dump(sparse, models.SparseVectorParams)
            vectors.append(VectorField(name, "sparse", options=options))
        settings: dict[str, Any] = {
            "hnsw_config": _dump(info.config.hnsw_config, models.HnswConfigDiff)
        }
        if info.config.quantization_config is not None:
            settings["quantization_config"] = _dump(info.config.quantization_config)
        for key in COLLECTION_SETTINGS:
            if getattr(params, key, None) is not None:
                settings[key] = getattr(params, key)
        indexes = {
            field: _index_spec(schema)
            for field, schema in (info.payload_schema or {}).items()
            if schema.data_type is not None
        }
        return SourceInfo(
            count=count,
            vectors=vectors,
            payload_fields=kit.payload_fields(p.payload for p in sample),
            payload_indexes=indexes,
            collection_settings=settings,
            details={"location": connection.where, "collection": self.collection},
            shard_keys=self.shard_keys,
        )

    def push_down(self, filter: dict[str, Any] | None) -> dict[str, Any] | None:
        self.filter = models.Filter.model_validate(filter) if filter else None
        return None

    def search(self, vector_name: str, vector: list[float], k: int) -> list[Any]:
        """IDs of the k nearest points the job reads (its filter applies), by exact search."""
        with self.connection.lock:
            response = self.connection.client.query_points(
                self.collection,
                query=vector,
                using=vector_name or None,
                limit=k,
                query_filter=self.filter,
                with_payload=False,
                search_params=None if self.connection.local else models.SearchParams(exact=True),
            )
        return [point.id for point in response.points]

    # --- partitions -----------------------------------------------------------------

    def _first_from(self, offset: int | str | None) -> int | str | None:
        """The first point ID at or after `offset`, in scroll order."""
        with self.connection.lock:
            points, _ = self.connection.client.scroll(
                self.collection, limit=1, offset=offset, with_payload=False, with_vectors=False
            )
        return _id_value(points[0].id) if points else None

    def _last_integer_id(self, first: int) -> int:
        """Largest integer ID: gallop up from `first`, then bisect.

        About 2*log2(span) one-point scrolls, so small ID ranges cost few requests (each
        scroll sorts every ID in local mode).
        """
        low, step = first, 1
        while True:
            probe = first + step
            found = self._first_from(probe) if probe <= MAX_INT_ID else None
            if not isinstance(found, int):
                high = min(probe, MAX_INT_ID + 1) - 1
                break
            low, step = found, step * 2
        while low < high:
            middle = (low + high + 1) // 2
            found = self._first_from(middle)
            if isinstance(found, int):
                low = found
            else:
                high = middle - 1
        return low

    def partitions(self, n: int) -> list[Partition]:
        """Split the integer and UUID ID ranges evenly; skewed IDs only unbalance the work.
        With custom sharding, each shard key's points are split alike (the ranges of the
        whole collection, so a key holding few of them gives empty partitions)."""
        if self.shard_keys is None:
            ranges = self._id_ranges(n)
            if len(ranges) == 1:
                return [Partition("all", {"start": None, "end": None})]
            return [
                Partition(f"{i:04d}", {"start": start, "end": end})
                for i, (start, end) in enumerate(ranges)
            ]
        ranges = self._id_ranges(max(1, n // max(1, len(self.shard_keys))))
        return [
            Partition(f"shard {key!r} {i:04d}", {"start": start, "end": end, "shard_key": key})
            for key in self.shard_keys
            for i, (start, end) in enumerate(ranges)
        ]

    def _id_ranges(self, n: int) -> list[tuple[int | str | None, int | str | None]]:
        first = self._first_from(None)
        if n <= 1 or first is None:
            return [(None, None)]
        first_uuid = self._first_from(UUID_MIN)
        int_parts = (n // 2 if first_uuid else n) if isinstance(first, int) else 0
        uuid_parts = n - int_parts if first_uuid else 0
        bounds: list[int | str | None] = [None]
        if int_parts and isinstance(first, int):
            last = self._last_integer_id(first)
            step = (last + 1 - first) / int_parts
            bounds += sorted({first + int(step * i) for i in range(1, int_parts)} - {first})
            if uuid_parts:
                bounds.append(UUID_MIN)
        if uuid_parts:
            low = uuid.UUID(str(first_uuid)).int
            step = (2**128 - low) / uuid_parts
            bounds += [str(uuid.UUID(int=low + int(step * i))) for i in range(1, uuid_parts)]
        bounds.append(None)
        return list(itertools.pairwise(bounds))

    # --- reading --------------------------------------------------------------------

    def read(self, partition: Partition, cursor: Any) -> Iterator[Page]:
        if cursor == EXHAUSTED:
            return
        end = partition.spec["end"]
        end_key = _order_key(end) if end is not None else None
        offset = cursor if cursor is not None else partition.spec["start"]
        scroll = self._scroll_grpc if self.connection.grpc else self._scroll
        while True:
            records, next_offset = scroll(offset, partition.shard_key)
            inside = [r for r in records if end_key is None or _order_key(r.id) < end_key]
            finished = (
                len(inside) < len(records)
                or next_offset is None
                or (end_key is not None and _order_key(next_offset) >= end_key)
            )
            cursor = EXHAUSTED if finished else next_offset
            yield Page(inside, cursor, matrices=kit.page_matrices(inside))
            if finished:
                return
            offset = next_offset

    def _scroll(self, offset: Any, shard_key: str | int | None) -> tuple[list[Record], Any]:
        with self.connection.lock:
            points, next_offset = self.connection.client.scroll(
                self.collection,
                scroll_filter=self.filter,
                limit=self.batch_size,
                offset=offset,
                with_payload=True,
                with_vectors=True,
                shard_key_selector=shard_key,
            )
        return [Record(p.id, _vectors(p.vector), p.payload or {}) for p in points], next_offset

    def _scroll_grpc(self, offset: Any, shard_key: str | int | None) -> tuple[list[Record], Any]:
        selector = (
            RestToGrpc.convert_shard_key_selector(shard_key) if shard_key is not None else None
        )
        request = pb.ScrollPoints(
            shard_key_selector=selector,
            collection_name=self.collection,
            filter=RestToGrpc.convert_filter(self.filter) if self.filter else None,
            offset=RestToGrpc.convert_extended_point_id(offset) if offset is not None else None,
            limit=self.batch_size,
            with_payload=pb.WithPayloadSelector(enable=True),
            with_vectors=pb.WithVectorsSelector(enable=True),
        )
        client = self.connection.client
        response = client.grpc_points.Scroll(request, timeout=self.config["timeout"])
        records = [
            Record(
                GrpcToRest.convert_point_id(point.id),
                _grpc_vectors(point.vectors) if point.HasField("vectors") else {},
                GrpcToRest.convert_payload(point.payload),
            )
            for point in response.result
        ]
        if not response.HasField("next_page_offset"):
            return records, None
        return records, GrpcToRest.convert_point_id(response.next_page_offset)


def _vectors(vector: Any) -> dict[str, Any]:
    if vector is None:
        return {}
    if not isinstance(vector, dict):
        return {"": _vector(vector)}
    return {name: _vector(value) for name, value in vector.items()}


def _vector(value: Any) -> Any:
    if isinstance(value, models.SparseVector):
        return SparseVector(list(value.indices), list(value.values))
    return value


def _grpc_vectors(vectors: pb.VectorsOutput) -> dict[str, Any]:
    if vectors.WhichOneof("vectors_options") == "vector":
        return {"": _grpc_vector(vectors.vector)}
    return {name: _grpc_vector(value) for name, value in vectors.vectors.vectors.items()}


def _grpc_vector(vector: pb.VectorOutput) -> Any:
    """A dense vector as a float32 array read from the packed field, as servers send it now
    (`dense`) or did (`data` alone); sparse and multi-vectors as qdrant-client reads them."""
    kind = vector.WhichOneof("vector")
    if kind == "dense":
        return _packed_floats(vector.dense.SerializeToString())
    if kind is None and not vector.HasField("indices") and not vector.HasField("vectors_count"):
        return np.array(vector.data, dtype=np.float32)
    return _vector(GrpcToRest.convert_vector_output(vector))


def _packed_floats(dense: bytes) -> np.ndarray:
    """A serialised DenseVector (data 1, a packed `repeated float`) as float32s, read from
    its bytes: numpy over the message's repeated field converts one Python float at a time
    (bench/BENCHMARKS.md, "Vectors as arrays")."""
    if not dense:  # an empty vector: no field at all
        return np.empty(0, dtype=np.float32)
    start = 1  # after the tag; then the length, a varint
    while dense[start] & 0x80:
        start += 1
    return np.frombuffer(dense, dtype="<f4", offset=start + 1)


def _id_value(point_id: int | str | uuid.UUID) -> int | str:
    """A point ID as a cursor holds it: an integer, or a UUID's string."""
    return point_id if isinstance(point_id, int) else str(point_id)


def _index_spec(schema: models.PayloadIndexInfo) -> IndexSpec:
    """A payload index as the job would write it: tenant and principal indexes keep their
    flag, so the target is created with them (`is_tenant`, `is_principal`)."""
    kind = schema.data_type.value
    flags = {
        flag: True for flag in ("is_tenant", "is_principal") if getattr(schema.params, flag, None)
    }
    return {"type": kind, **flags} if flags else kind
