"""Points straight onto the wire, for a Qdrant server: protobuf bytes for gRPC and orjson
bytes for REST, built from the mapped points without a pydantic model or a REST-to-gRPC
conversion in between. On the server path that per-point work, not the server, is what
limits a migration.

Dense vectors arrive as float32 arrays (`mapping`). Over gRPC their bytes are the packed
`repeated float` field as it is, so a vector costs a copy, not a loop over its numbers;
`tests/test_wire.py` checks every encoding against protobuf's own and qdrant-client's.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Callable
from typing import Any

import numpy as np
import orjson
from qdrant_client import grpc as pb
from qdrant_client import models
from qdrant_client.conversions.conversion import json_to_value

JSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


def rest_upsert_body(
    points: list[models.PointStruct], insert_only: bool = False, shard_key: str | int | None = None
) -> bytes:
    """The JSON body of PUT /collections/{name}/points. `insert_only` adds PointsList's
    `update_mode: insert_only` (Qdrant 1.17+): points the collection holds are left alone;
    `shard_key` its `shard_key` (a ShardKeySelector: one key), for custom sharding."""
    body: dict[str, Any] = {"points": [_rest_point(p) for p in points]}
    if insert_only:
        body["update_mode"] = "insert_only"
    if shard_key is not None:
        body["shard_key"] = shard_key
    return orjson.dumps(body, option=JSON_OPTIONS, default=_rest_default)


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


def encoded_upsert_call(client: Any) -> Callable[..., Any]:
    """Points.Upsert for a request already encoded (`wire`), on qdrant-client's own channel,
    so that its API key, TLS and options apply. qdrant-client offers no public handle on the
    channel; tests/test_target.py guards this against its upgrades."""
    client.grpc_points  # noqa: B018 (opens the client's channels)
    channel = client._client._grpc_channel_pool[0]
    return channel.unary_unary(
        "/qdrant.Points/Upsert",
        request_serializer=None,
        response_deserializer=pb.PointsOperationResponse.FromString,
    )


# --- gRPC: the UpsertPoints message, encoded by hand ------------------------------------
# Field numbers are those of qdrant's points.proto and json_with_int.proto; besides
# length-delimited fields and varints only a payload's doubles (fixed64) occur.
# https://protobuf.dev/programming-guides/encoding/


def grpc_upsert_request(
    collection: str,
    points: list[models.PointStruct],
    wait: bool,
    insert_only: bool = False,
    shard_key: str | int | None = None,
) -> bytes:
    """The serialised `UpsertPoints` request (collection_name 1, wait 2, points 3, and with
    `insert_only` update_mode 8 = UpdateMode.InsertOnly (1), Qdrant 1.17+; with `shard_key`
    shard_key_selector 5, a ShardKeySelector of that one key)."""
    head = _delimited(1, collection.encode()) + (b"\x10\x01" if wait else b"\x10\x00")
    if insert_only:
        head += b"\x40\x01"  # field 8, varint
    if shard_key is not None:
        head += _delimited(5, _delimited(1, _shard_key(shard_key)))
    return head + b"".join(_delimited(3, _point(p)) for p in points)


def _shard_key(key: str | int) -> bytes:
    """ShardKey, a oneof: keyword 1 (string) or number 2 (uint64 varint)."""
    if isinstance(key, str):
        return _delimited(1, key.encode())
    return b"\x10" + _varint(key)


def _point(point: models.PointStruct) -> bytes:
    """PointStruct: id 1, payload 3 (map<string, Value>), vectors 4."""
    body = _delimited(1, _point_id(point.id)) + _delimited(4, _vectors(point.vector))
    if point.payload:
        body += _map(3, point.payload)
    return body


def _point_id(point_id: int | str | uuid.UUID) -> bytes:
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


def _map(field: int, values: dict[str, Any]) -> bytes:
    """A map<string, Value>: one entry (key 1, value 2) per key, each as `field`. A key that
    is no str raises TypeError, as protobuf does.

    Most entries are short, and then every length is one byte: their parts are joined once
    instead of nested, which takes a fifth off a payload's encoding."""
    tag, parts = _TAGS[field], list[bytes]()
    for key, value in values.items():
        encoded_key, encoded_value = str.encode(key), _value(value)
        size = len(encoded_key) + len(encoded_value)
        if size < 0x7C:  # with the 4 bytes of tags and lengths, under 128
            parts += (tag, _SMALL[size + 4], b"\n", _SMALL[len(encoded_key)], encoded_key)
            parts += (b"\x12", _SMALL[len(encoded_value)], encoded_value)
        else:
            entry = _delimited(1, encoded_key) + _delimited(2, encoded_value)
            parts.append(_delimited(field, entry))
    return b"".join(parts)


def _value(value: Any) -> bytes:
    """Value, a oneof: null_value 1, double_value 2, integer_value 3 (int64), string_value 4,
    bool_value 5, struct_value 6 (Struct: fields 1), list_value 7 (ListValue: values 1).

    A oneof member is written even when it holds its default (0, "", false). Exact types
    only (a bool is an int subclass); anything else, such as an int beyond int64, a
    datetime or a numpy scalar, is left to qdrant-client's `json_to_value`, so that it
    converts or raises exactly as the client does."""
    kind = type(value)
    if kind is str:
        return _delimited(4, value.encode())
    if kind is int and -(2**63) <= value < 2**63:
        return b"\x18" + _varint(value & 0xFFFFFFFFFFFFFFFF)  # two's complement, 10 bytes if < 0
    if kind is float:
        return _DOUBLE.pack(0x11, value)
    if kind is bool:
        return b"\x28\x01" if value else b"\x28\x00"
    if value is None:
        return b"\x08\x00"
    if kind is dict:
        try:
            return _delimited(6, _map(1, value))
        except TypeError:  # a key that is no str, here or deeper: the client makes it one
            pass
    elif kind is list:
        return _delimited(7, b"".join([_delimited(1, _value(item)) for item in value]))
    return json_to_value(value).SerializeToString()


_DOUBLE = struct.Struct("<Bd")  # a double's tag (field 2, fixed64) and its little-endian bytes


def _delimited(field: int, body: bytes) -> bytes:
    """Tag (field, wire type 2), length, body: the tag and a short length from tables, as
    this runs several times for every payload value."""
    size = len(body)
    return _TAGS[field] + (_SMALL[size] if size < 0x80 else _varint(size)) + body


def _varint(number: int) -> bytes:
    if number < 0x80:
        return _SMALL[number]
    if number < 0x4000:  # a vector's length, mostly
        return bytes((number & 0x7F | 0x80, number >> 7))
    out = bytearray()
    while number >= 0x80:
        out.append(number & 0x7F | 0x80)
        number >>= 7
    out.append(number)
    return bytes(out)


_SMALL = tuple(bytes((number,)) for number in range(0x80))  # one-byte varints
_TAGS = tuple(_varint(field << 3 | 2) for field in range(104))  # up to multi_dense 103
