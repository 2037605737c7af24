"""Qdrant -> Qdrant (local mode): qmigrate against the raw qdrant-client, in one run.

Measures, on the same data and machine, points per second for:
  raw read        scroll the source with vectors and payload, nothing else
  raw write       upsert the already-read points into a fresh target, nothing else
  raw loop        read a page, write it, repeat: the one sequential loop a simple
                  migration script (or the reference Go tool) runs
  qmigrate        `apply` through the engine (partitions, mapping, checkpoints in the
                  target, as by default, count check)
and prints each as a median over --runs, with qmigrate's ratio to the raw ones.

    python bench/qdrant_to_qdrant.py --points 100000 --dim 768 --runs 1 --target disk
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from harness import median_rate, timed_apply
from qdrant_client import QdrantClient, models

BATCH = 256


def make_source(path: Path, points: int, dim: int) -> None:
    rng = random.Random(0)
    client = QdrantClient(path=str(path))
    client.create_collection(
        "bench", vectors_config=models.VectorParams(size=dim, distance=models.Distance.COSINE)
    )
    for start in range(0, points, 1000):
        batch = [
            models.PointStruct(
                id=i,
                vector=[rng.random() for _ in range(dim)],
                payload={"i": i, "group": f"g{i % 10}", "score": rng.random()},
            )
            for i in range(start, min(points, start + 1000))
        ]
        client.upsert("bench", batch, wait=True)
    client.close()


def open_target(kind: str, root: Path, name: str) -> tuple[QdrantClient, str]:
    location = ":memory:" if kind == "memory" else str(root / name)
    client = QdrantClient(location=location) if kind == "memory" else QdrantClient(path=location)
    return client, location


def create_target(client: QdrantClient, dim: int) -> None:
    client.create_collection(
        "bench", vectors_config=models.VectorParams(size=dim, distance=models.Distance.COSINE)
    )


def raw_read(source: Path) -> tuple[int, float, list[models.Record]]:
    started = time.perf_counter()  # opening counts: local mode loads the collection then
    client = QdrantClient(path=str(source))
    records: list[models.Record] = []
    offset = None
    while True:
        page, offset = client.scroll(
            "bench", limit=BATCH, offset=offset, with_payload=True, with_vectors=True
        )
        records.extend(page)
        if offset is None:
            break
    elapsed = time.perf_counter() - started
    client.close()
    return len(records), elapsed, records


def raw_write(records: list[models.Record], kind: str, root: Path, dim: int) -> float:
    points = [models.PointStruct(id=r.id, vector=r.vector, payload=r.payload) for r in records]
    started = time.perf_counter()
    client, _ = open_target(kind, root, "raw-write")
    create_target(client, dim)
    for start in range(0, len(points), BATCH):
        client.upsert("bench", points[start : start + BATCH], wait=True)
    elapsed = time.perf_counter() - started
    client.close()
    return elapsed


def raw_loop(source: Path, kind: str, root: Path, dim: int) -> float:
    started = time.perf_counter()
    reader = QdrantClient(path=str(source))
    writer, _ = open_target(kind, root, "raw-loop")
    create_target(writer, dim)
    offset = None
    while True:
        page, offset = reader.scroll(
            "bench", limit=BATCH, offset=offset, with_payload=True, with_vectors=True
        )
        writer.upsert(
            "bench",
            [models.PointStruct(id=r.id, vector=r.vector, payload=r.payload) for r in page],
            wait=True,
        )
        if offset is None:
            break
    elapsed = time.perf_counter() - started
    reader.close()
    writer.close()
    return elapsed


def qmigrate_apply(source: Path, kind: str, root: Path, parallelism: int) -> float:
    target = ":memory:" if kind == "memory" else str(root / "qmigrate")
    document = {
        "version": 1,
        "name": "bench",
        "source": {"type": "qdrant", "path": str(source), "collection": "bench"},
        "target": {"path": target, "collection": "bench"},
        "batch_size": BATCH,
        "parallelism": parallelism,
    }
    return timed_apply(document, root)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, default=20000)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--target", choices=["disk", "memory"], default="disk")
    parser.add_argument("--parallelism", type=int, default=2)
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="qmigrate-bench-"))
    try:
        source = root / "source"
        print(f"creating source: {args.points:,} x {args.dim} ...", file=sys.stderr)
        make_source(source, args.points, args.dim)
        count, elapsed, records = raw_read(source)
        read_rates = [count / elapsed]
        read_rates += [count / raw_read(source)[1] for _ in range(args.runs - 1)]
        read = statistics.median(read_rates)

        def fresh(name: str) -> None:
            shutil.rmtree(root / name, ignore_errors=True)

        def write_once() -> float:
            fresh("raw-write")
            return raw_write(records, args.target, root, args.dim)

        def loop_once() -> float:
            fresh("raw-loop")
            return raw_loop(source, args.target, root, args.dim)

        def qmigrate_once() -> float:
            fresh("qmigrate")
            return qmigrate_apply(source, args.target, root, args.parallelism)

        write = median_rate(count, args.runs, write_once)
        loop = median_rate(count, args.runs, loop_once)
        ours = median_rate(count, args.runs, qmigrate_once)
        print(
            f"\n{count:,} points x {args.dim}, target {args.target}, "
            f"median of {args.runs}, parallelism {args.parallelism}\n"
        )
        print("| what | points/s | qmigrate / this |")
        print("|---|---:|---:|")
        for name, rate in (
            ("raw read", read),
            ("raw write", write),
            ("raw loop", loop),
            ("qmigrate apply", ours),
        ):
            print(f"| {name} | {rate:,.0f} | {ours / rate:.2f} |")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
