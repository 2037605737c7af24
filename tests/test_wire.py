"""The wire encoders send what qdrant-client itself would send, for every kind of vector."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from qdrant_client import models
from qdrant_client.conversions.conversion import RestToGrpc

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


@pytest.mark.parametrize("index", range(len(IDS)))
def test_grpc_points_equal_the_clients_conversion(index: int) -> None:
    point = points()[index]
    assert wire.grpc_points([point])[0] == RestToGrpc.convert_point_struct(point)


def test_rest_body_equals_the_clients_json() -> None:
    batch = points()
    body = orjson.loads(wire.rest_upsert_body(batch))
    expected = json.loads(models.PointsList(points=batch).model_dump_json(exclude_none=True))
    assert body == expected


def test_numpy_vectors_go_out_as_numbers() -> None:
    import numpy as np

    point = models.PointStruct.model_construct(
        id=1, vector=np.asarray([0.5, 1.5], dtype=np.float32), payload={}
    )
    assert orjson.loads(wire.rest_upsert_body([point]))["points"][0]["vector"] == [0.5, 1.5]
