"""The wire encoders send what qdrant-client itself would send, for every kind of vector."""

from __future__ import annotations

import datetime
import enum
import json
import math
import uuid
from typing import Any

import numpy as np
import orjson
import pytest
from qdrant_client import grpc as pb
from qdrant_client import models
from qdrant_client.conversions.conversion import RestToGrpc, json_to_value

from qmigrate import wire

PAYLOAD = {
    "s": "text",
    "i": 7,
    "f": 1.5,
    "b": True,
    "n": None,
    "list": [1, "a", {"x": [2.5]}],
    "nested": {"deep": {"er": [True, None]}},
}
VECTORS: list[Any] = [
    [0.25, -1.0, 3.5],
    {"dense": [0.5, 0.25], "text": models.SparseVector(indices=[1, 9], values=[0.5, 2.0])},
    {"colbert": [[1.0, 2.0], [3.0, 4.0]], "other": [1.0]},
]
IDS = [0, 2**63 + 5, "550e8400-e29b-41d4-a716-446655440000"]


def points() -> list[models.PointStruct]:
    return [
        models.PointStruct.model_construct(id=point_id, vector=vector, payload=PAYLOAD)
        for point_id, vector in zip(IDS, VECTORS, strict=True)
    ]


def mapped(point: models.PointStruct) -> models.PointStruct:
    """The point as `mapping` hands it on: dense vectors and multi-vector rows as float32."""

    def arrays(vector: Any) -> Any:
        if isinstance(vector, dict):
            return {name: arrays(value) for name, value in vector.items()}
        if isinstance(vector, list) and isinstance(vector[0], list):
            return [np.asarray(row, dtype=np.float32) for row in vector]
        if isinstance(vector, list):
            return np.asarray(vector, dtype=np.float32)
        return vector

    return models.PointStruct.model_construct(
        id=point.id, vector=arrays(point.vector), payload=point.payload
    )


@pytest.mark.parametrize("wait", [True, False])
@pytest.mark.parametrize("as_mapped", [False, True])
@pytest.mark.parametrize("index", range(len(IDS)))
def test_grpc_request_equals_the_clients_conversion(
    index: int, as_mapped: bool, wait: bool
) -> None:
    point = points()[index]
    sent = mapped(point) if as_mapped else point
    request = pb.UpsertPoints.FromString(wire.grpc_upsert_request("c", [sent, sent], wait))
    expected = pb.UpsertPoints(
        collection_name="c", wait=wait, points=[RestToGrpc.convert_point_struct(point)] * 2
    )
    assert request == expected


def test_grpc_request_without_payload_and_with_long_lengths() -> None:
    """Lengths of 128 bytes and more take varints of several bytes."""
    point = models.PointStruct.model_construct(
        id=2**40, vector=np.arange(3072, dtype=np.float32), payload=None
    )
    request = pb.UpsertPoints.FromString(wire.grpc_upsert_request("c" * 200, [point], True))
    assert request.collection_name == "c" * 200
    assert request.points[0].id.num == 2**40
    assert list(request.points[0].vectors.vector.dense.data) == list(range(3072))
    assert not request.points[0].payload


def test_local_points_are_lists() -> None:
    for point in map(mapped, points()):
        local = wire.local_points([point])[0]
        assert orjson.dumps(local.vector, default=wire._rest_default) == orjson.dumps(
            point.vector, option=wire.JSON_OPTIONS, default=wire._rest_default
        )
        assert not any(isinstance(v, np.ndarray) for v in _leaves(local.vector))


def _leaves(vector: Any) -> list[Any]:
    if isinstance(vector, dict):
        return [leaf for value in vector.values() for leaf in _leaves(value)]
    if isinstance(vector, list):
        return [vector] + [leaf for row in vector for leaf in _leaves(row)]
    return [vector]


@pytest.mark.parametrize("as_mapped", [False, True])
def test_rest_body_equals_the_clients_json(as_mapped: bool) -> None:
    batch = points()
    sent = [mapped(p) for p in batch] if as_mapped else batch
    body = orjson.loads(wire.rest_upsert_body(sent))
    expected = json.loads(models.PointsList(points=batch).model_dump_json(exclude_none=True))
    assert body == expected


def test_numpy_vectors_go_out_as_numbers() -> None:
    point = models.PointStruct.model_construct(
        id=1, vector=np.asarray([0.5, 1.5], dtype=np.float32), payload={}
    )
    assert orjson.loads(wire.rest_upsert_body([point]))["points"][0]["vector"] == [0.5, 1.5]


class Level(enum.IntEnum):
    HIGH = 3


LONG = "long text é " * 2000  # 26 KB: lengths take 3-byte varints
# Every kind of JSON value, at its edges, and what json_to_value converts (datetime, UUID,
# tuples, enums, float subclasses, non-str keys of a nested dict).
VALUES: list[Any] = [
    None,
    True,
    False,
    0,
    1,
    -1,
    127,
    128,
    2**31,
    -(2**31),
    2**63 - 1,
    -(2**63),
    0.0,
    -0.0,
    1.5,
    -2.5e-300,
    5e-324,
    1.7976931348623157e308,
    math.inf,
    -math.inf,
    math.nan,
    "",
    "text",
    "é ü 日本語 🦆",
    LONG,
    {},
    [],
    {"": {}},
    [[], {}, [None]],
    [None, True, False, 0, -7, 1.5, "s", {"k": [1]}],
    {"deep": {"er": {"est": [{"x": -(2**40)}]}}},
    {"big": [LONG, {"more": LONG}]},
    datetime.datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=datetime.timezone.utc),
    datetime.date(2024, 1, 2),
    uuid.UUID("550e8400-e29b-41d4-a716-446655440000"),
    (1, "a"),
    Level.HIGH,
    np.float64(2.5),
    {1: "a"},
    [datetime.date(2024, 1, 2), {"in": (None,)}],
]


@pytest.mark.parametrize("value", VALUES, ids=lambda value: repr(value)[:30])
@pytest.mark.parametrize("key", ["k", "ключ 🔑", "", "K" * 300])
def test_grpc_payload_bytes_equal_protobufs(key: str, value: Any) -> None:
    """Byte for byte: one key (and one per nested dict), so protobuf's map order cannot differ."""
    expected = pb.PointStruct(payload={key: json_to_value(value)}).SerializeToString()
    assert wire._map(3, {key: value}) == expected


@pytest.mark.parametrize("length", range(115, 130))
def test_grpc_payload_entries_about_128_bytes_long(length: int) -> None:
    """An entry's length takes one byte up to 127, two from 128."""
    payload = {"k": "x" * length, "nested": {"k": ["x" * length]}}
    for key, value in payload.items():
        expected = pb.PointStruct(payload={key: json_to_value(value)}).SerializeToString()
        assert wire._map(3, {key: value}) == expected


def test_grpc_payload_of_many_keys_equals_the_clients_conversion() -> None:
    """Protobuf orders map entries its own way: compared as parsed messages."""
    payload = {f"key {i} ü": value for i, value in enumerate(VALUES)}
    payload["nested"] = {f"k{i}": value for i, value in enumerate(VALUES)}
    point = models.PointStruct.model_construct(id=1, vector=[0.5], payload=payload)
    request = pb.UpsertPoints.FromString(wire.grpc_upsert_request("c", [point], True))
    assert request.points[0] == RestToGrpc.convert_point_struct(point)
    assert len(request.points[0].payload) == len(VALUES) + 1


@pytest.mark.parametrize("value", [2**63, 2**64 - 1, -(2**63) - 1, np.int64(1), np.bool_(True)])
def test_grpc_payload_refuses_what_the_client_refuses(value: Any) -> None:
    """int64 holds no larger int, and numpy scalars other than float64 are no JSON."""
    with pytest.raises(ValueError) as client:
        json_to_value(value)
    with pytest.raises(ValueError) as ours:
        wire._map(3, {"k": value})
    assert str(ours.value) == str(client.value)


def test_grpc_payload_key_that_is_no_string_is_a_type_error_as_in_protobuf() -> None:
    with pytest.raises(TypeError):
        pb.PointStruct(payload={1: json_to_value("a")})
    with pytest.raises(TypeError):
        wire._map(3, {1: "a"})  # type: ignore[dict-item]


@pytest.mark.parametrize("number", [0, 1, 127, 128, 300, 16383, 16384, 2**21, 2**63, 2**64 - 1])
def test_varints_are_protobufs(number: int) -> None:
    assert b"\x08" + wire._varint(number) == pb.PointId(num=number).SerializeToString()
