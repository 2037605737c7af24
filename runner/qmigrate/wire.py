"""Points straight onto the wire, for a Qdrant server: protobuf bytes for gRPC and orjson
bytes for REST, built from the mapped points without a pydantic model or a REST-to-gRPC
conversion in between. On the server path that per-point work, not the server, is what
limits a migration.

Dense vectors arrive as float32 arrays (`mapping`). Over gRPC their bytes are the packed
`repeated float` field as it is, so a vector costs a copy, not a loop over its numbers;
`tests/test_wire.py` checks every encoding against protobuf's own and qdrant-client's.
"""

from __future__ import annotations

import uuid
from typing import Any

import numpy as np
import orjson
from qdrant_client import grpc as pb
from qdrant_client import models
from qdrant_client.conversions.conversion import json_to_value

JSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


def rest_upsert_body(points: list[models.PointStruct]) -> bytes:
    """The JSON body of PUT /collections/{name}/points."""
    return orjson.dumps(
        {"points": [_rest_point(p) for p in points]}, option=JSON_OPTIONS, default=_rest_default
    )


def _rest_point(point: models.PointStruct) -> dict[str, Any]:
    return {"id": point.id, "vector": point.vector, "payload": point.payload or {}}


def _rest_default(value: Any) -> Any:
    if isinstance(value, models.SparseVector):
        return {"indices": value.indices, "values": value.values}
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


def local_points(points: list[models.PointStruct]) -> list[models.PointStruct]:
    """Local mode reads an unnamed vector only as a list."""
    return [
        models.PointStruct.model_construct(id=p.id, vector=_lists(p.vector), payload=p.payload)
        for p in points
    ]


def _lists(vector: Any) -> Any:
    if isinstance(vector, dict):
        return {name: _lists(value) for name, value in vector.items()}
    if isinstance(vector, np.ndarray):
        return vector.tolist()
    if isinstance(vector, list):  # a multi-vector's rows
        return [_lists(row) for row in vector]
    return vector


# --- gRPC: the UpsertPoints message, encoded by hand ------------------------------------
# Field numbers are those of qdrant's points.proto; only length-delimited fields and
# varints occur. https://protobuf.dev/programming-guides/encoding/


def grpc_upsert_request(collection: str, points: list[models.PointStruct], wait: bool) -> bytes:
    """The serialised `UpsertPoints` request (collection_name 1, wait 2, points 3)."""
    head = _delimited(1, collection.encode()) + (b"\x10\x01" if wait else b"\x10\x00")
    return head + b"".join(_delimited(3, _point(p)) for p in points)


def _point(point: models.PointStruct) -> bytes:
    """PointStruct: id 1, payload 3 (protobuf's own encoding), vectors 4."""
    body = _delimited(1, _point_id(point.id)) + _delimited(4, _vectors(point.vector))
    if point.payload:
        payload = {key: json_to_value(value) for key, value in point.payload.items()}
        body += pb.PointStruct(payload=payload).SerializeToString()
    return body


def _point_id(point_id: int | str) -> bytes:
    """PointId: num 1 (varint) or uuid 2 (string)."""
    if isinstance(point_id, int):
        return b"\x08" + _varint(point_id)
    return _delimited(2, str(point_id).encode())


def _vectors(vector: Any) -> bytes:
    """Vectors: vector 1, or vectors 2 (NamedVectors: map<string, Vector> 1)."""
    if not isinstance(vector, dict):
        return _delimited(1, _vector(vector))
    entries = b"".join(
        _delimited(1, _delimited(1, name.encode()) + _delimited(2, _vector(value)))
        for name, value in vector.items()
    )
    return _delimited(2, entries)


def _vector(value: Any) -> bytes:
    """Vector: dense 101 (DenseVector: data 1), sparse 102, multi_dense 103 (DenseVector 1)."""
    if isinstance(value, models.SparseVector):
        sparse = pb.SparseVector(indices=value.indices, values=value.values)
        return _delimited(102, sparse.SerializeToString())
    if isinstance(value, list) and value and isinstance(value[0], (list, np.ndarray)):
        rows = b"".join(_delimited(1, _delimited(1, _float_bytes(row))) for row in value)
        return _delimited(103, rows)
    return _delimited(101, _delimited(1, _float_bytes(value)))


def _float_bytes(values: Any) -> bytes:
    """A packed `repeated float`: little-endian float32s, back to back."""
    return np.asarray(values, dtype="<f4").tobytes()  # no copy for a mapped vector


def _delimited(field: int, body: bytes) -> bytes:
    return _varint(field << 3 | 2) + _varint(len(body)) + body


def _varint(number: int) -> bytes:
    if number < 0x80:
        return bytes((number,))
    if number < 0x4000:  # a vector's length, mostly
        return bytes((number & 0x7F | 0x80, number >> 7))
    out = bytearray()
    while number >= 0x80:
        out.append(number & 0x7F | 0x80)
        number >>= 7
    out.append(number)
    return bytes(out)
