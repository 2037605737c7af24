"""Milvus -> Qdrant: qmigrate against a raw pymilvus read of the same collection.

Starts a `milvus-lite server` or the real Milvus 2.3 standalone server (`--server real`)
on a free port, loads --points records (one 768-d FLOAT_VECTOR with a FLAT COSINE index,
three scalar fields) into it, then measures points per second for:
  raw read        the whole collection through pymilvus's own `query_iterator` (keyset
                  pages on the primary key), vectors and scalars, one thread
  qmigrate p=1    `apply` through the engine into a Qdrant target, parallelism 1
  qmigrate p=2    the same with parallelism 2
and prints each as a median over --runs, with its ratio to the raw read.

    python bench/milvus_read.py --points 100000 --dim 768 --runs 3 --server lite
    python bench/milvus_read.py --points 100000 --dim 768 --runs 3 --server real
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from harness import median_rate, timed_apply
from pymilvus import DataType, MilvusClient

from tests.servers.milvus import MilvusServer, running_milvus, running_milvus_lite

BATCH = 256


def load(server: MilvusServer, points: int, dim: int) -> None:
    rng = np.random.default_rng(0)
    client = server.client()
    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("pk", DataType.INT64, is_primary=True)
    schema.add_field("embedding", DataType.FLOAT_VECTOR, dim=dim)
    schema.add_field("category", DataType.VARCHAR, max_length=16)
    schema.add_field("year", DataType.INT64)
    schema.add_field("score", DataType.DOUBLE)
    index = client.prepare_index_params()
    index.add_index("embedding", index_type="FLAT", metric_type="COSINE")
    client.create_collection("bench", schema=schema, index_params=index)
    for start in range(0, points, 2000):
        numbers = range(start, min(points, start + 2000))
        vectors = rng.uniform(-1, 1, (len(numbers), dim)).astype(np.float32)
        rows = [
            {
                "pk": i,
                "embedding": vector,
                "category": f"c{i % 10}",
                "year": 2000 + i % 25,
                "score": float(i % 97) / 97,
            }
            for i, vector in zip(numbers, vectors, strict=True)
        ]
        client.insert("bench", rows)
    client.flush("bench")
    client.load_collection("bench")
    client.close()


def raw_read(server: MilvusServer, count: int) -> float:
    """Seconds to read every record with pymilvus's query_iterator, vectors as lists."""
    client = server.client()
    started = time.perf_counter()
    iterator = client.query_iterator(
        "bench", batch_size=BATCH, output_fields=["*"], consistency_level="Strong"
    )
    read = 0
    while page := iterator.next():
        for row in page:
            np.asarray(row["embedding"], dtype=np.float32).tolist()
        read += len(page)
    iterator.close()
    elapsed = time.perf_counter() - started
    client.close()
    assert read == count, read
    return elapsed


def qmigrate_apply(server: MilvusServer, target: str, root: Path, parallelism: int) -> float:
    source = {"type": "milvus", "uri": server.uri, "collection": "bench"}
    if server.token:
        source["token"] = server.token
    document = {
        "version": 1,
        "name": "bench",
        "source": source,
        "target": {"path": target, "collection": "bench"},
        "batch_size": BATCH,
        "parallelism": parallelism,
        "checkpoint": {"store": "file", "path": str(root / "checkpoint.json")},
    }
    return timed_apply(document, root)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, default=20000)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--server", choices=["lite", "real"], default="lite")
    parser.add_argument("--target", choices=["disk", "memory"], default="memory")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="qmigrate-bench-"))
    running = running_milvus if args.server == "real" else running_milvus_lite
    try:
        with running(root) as server:
            measure(server, root, args)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def measure(server: MilvusServer, root: Path, args: argparse.Namespace) -> None:
    print(f"loading milvus ({args.server}): {args.points:,} x {args.dim} ...", file=sys.stderr)
    started = time.perf_counter()
    load(server, args.points, args.dim)
    print(f"loaded in {time.perf_counter() - started:.0f}s", file=sys.stderr)

    def apply_once(parallelism: int) -> float:
        shutil.rmtree(root / "target", ignore_errors=True)
        (root / "checkpoint.json").unlink(missing_ok=True)
        target = ":memory:" if args.target == "memory" else str(root / "target")
        return qmigrate_apply(server, target, root, parallelism)

    rates = {
        "raw read": median_rate(args.points, args.runs, lambda: raw_read(server, args.points)),
        "qmigrate p=1": median_rate(args.points, args.runs, lambda: apply_once(1)),
        "qmigrate p=2": median_rate(args.points, args.runs, lambda: apply_once(2)),
    }
    print(
        f"\n{args.points:,} records x {args.dim}, batch {BATCH}, milvus {args.server}, "
        f"target {args.target}, median of {args.runs}\n"
    )
    print("| what | points/s | this / raw read |")
    print("|---|---:|---:|")
    for name, rate in rates.items():
        print(f"| {name} | {rate:,.0f} | {rate / rates['raw read']:.2f} |")


if __name__ == "__main__":
    main()
