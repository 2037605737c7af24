"""Encode rate of the write path, in MB/s of vector data, against `numpy.tobytes` of the
same vectors: qmigrate's mapping and wire encoders beside qdrant-client's own path.

    python bench/encode_rate.py --points 10000 --dim 768 --runs 5

One process, no network: each step turns the same points into request bytes, and the
median of the runs is reported. A benchmark, not a test.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from qdrant_client import grpc as pb
from qdrant_client import models
from qdrant_client.conversions.conversion import RestToGrpc

from qmigrate import wire
from qmigrate.mapping import Mapper
from qmigrate.records import Record, VectorField
from qmigrate.spec import MappingSpec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--batch", type=int, default=256)
    args = parser.parse_args()

    rng = np.random.default_rng(7)
    vectors = rng.standard_normal((args.points, args.dim), dtype=np.float32)
    payloads = [
        {"title": f"doc {i}", "year": 2000 + i % 25, "tags": ["a", "b"]} for i in range(args.points)
    ]
    mapper = Mapper(MappingSpec(), {"": VectorField("", "dense", args.dim, "Cosine")})
    from_arrays = [Record(i, {"": vectors[i]}, payloads[i]) for i in range(args.points)]
    from_lists = [Record(i, {"": vectors[i].tolist()}, payloads[i]) for i in range(args.points)]
    mapped = [mapper.to_point(r) for r in from_arrays]
    rows = [(i, vectors[i].tolist(), payloads[i]) for i in range(args.points)]
    batches = [slice(i, i + args.batch) for i in range(0, args.points, args.batch)]

    def client_points(b: slice) -> list[models.PointStruct]:  # as a plain script builds them
        return [models.PointStruct(id=i, vector=v, payload=p) for i, v, p in rows[b]]

    def client_grpc() -> None:  # what qdrant-client does for upsert(prefer_grpc=True)
        for b in batches:
            points = [RestToGrpc.convert_point_struct(p) for p in client_points(b)]
            pb.UpsertPoints(collection_name="c", wait=True, points=points).SerializeToString()

    def client_rest() -> None:  # over REST: the pydantic models dumped to JSON
        for b in batches:
            models.PointsList(points=client_points(b)).model_dump_json(exclude_none=True)

    steps: dict[str, Callable[[], Any]] = {
        "numpy.tobytes (the floor)": lambda: [vectors[b].tobytes() for b in batches],
        "qmigrate map, arrays from the source": lambda: [mapper.to_point(r) for r in from_arrays],
        "qmigrate map, lists from the source": lambda: [mapper.to_point(r) for r in from_lists],
        "qmigrate gRPC encode": lambda: [
            wire.grpc_upsert_request("c", mapped[b], True) for b in batches
        ],
        "qmigrate REST encode": lambda: [wire.rest_upsert_body(mapped[b]) for b in batches],
        "qdrant-client gRPC (models, convert, serialise)": client_grpc,
        "qdrant-client REST (models, JSON)": client_rest,
    }
    megabytes = vectors.nbytes / 1e6
    print(
        f"{args.points:,} points x {args.dim} float32 ({megabytes:.0f} MB), median of {args.runs}"
    )
    print("| step | MB/s | µs/point | vs numpy.tobytes |\n|---|---:|---:|---:|")
    floor = None
    for name, step in steps.items():
        seconds = statistics.median(_timed(step) for _ in range(args.runs))
        floor = floor or seconds
        print(
            f"| {name} | {megabytes / seconds:,.0f} | {seconds / args.points * 1e6:.2f} "
            f"| {seconds / floor:,.0f}x |"
        )


def _timed(step: Callable[[], Any]) -> float:
    start = time.perf_counter()
    step()
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
