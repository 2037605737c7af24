"""Points straight onto the wire, for a Qdrant server: protobuf messages for gRPC and
orjson bytes for REST, built from the mapped points without a pydantic model or a
REST-to-gRPC conversion in between. On the server path that per-point work, not the
server, is what limits a migration.
"""

from __future__ import annotations

import uuid
from typing import Any

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


def grpc_points(points: list[models.PointStruct]) -> list[pb.PointStruct]:
    return [
        pb.PointStruct(
            id=_grpc_id(p.id),
            vectors=_grpc_vectors(p.vector),
            payload={k: json_to_value(v) for k, v in (p.payload or {}).items()},
        )
        for p in points
    ]


def _grpc_id(point_id: int | str) -> pb.PointId:
    return pb.PointId(num=point_id) if isinstance(point_id, int) else pb.PointId(uuid=point_id)


def _grpc_vectors(vector: Any) -> pb.Vectors:
    if isinstance(vector, dict):
        named = {name: _grpc_vector(value) for name, value in vector.items()}
        return pb.Vectors(vectors=pb.NamedVectors(vectors=named))
    return pb.Vectors(vector=_grpc_vector(vector))


def _grpc_vector(value: Any) -> pb.Vector:
    if isinstance(value, models.SparseVector):
        return pb.Vector(sparse=pb.SparseVector(indices=value.indices, values=value.values))
    if len(value) and not isinstance(value[0], (int, float)):  # a list of vectors
        return pb.Vector(
            multi_dense=pb.MultiDenseVector(vectors=[pb.DenseVector(data=v) for v in value])
        )
    return pb.Vector(dense=pb.DenseVector(data=value))
