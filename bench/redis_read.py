"""Redis -> Qdrant: qmigrate against a raw pipelined redis-py read of the same index.

Starts its own valkey-server with the search and JSON modules on a free port, loads
--points HASH documents (a FLOAT32 vector, a TAG, a NUMERIC and a TEXT field) under one
FT index, then measures points per second for:
  raw read        SCAN (COUNT 1000) + one pipelined HGETALL per batch + decoding the
                  vectors, one thread: what a hand-written migration does at best
  source p=N      the qmigrate Redis source alone, its N partitions read on N threads as
                  the engine reads them (no target): what parallelism does for fetching
  qmigrate p=N    `apply` through the engine into a Qdrant target, parallelism N
                  (skipped with --no-apply)
directly and through bench/latency_proxy.py (--latency seconds each way), and prints each
as a median over --runs, with its ratio to the raw read on the same path.

    python bench/redis_read.py --points 100000 --dim 768 --runs 3 --latency 0.002
    python bench/redis_read.py --points 100000 --dim 768 --runs 3 --latency 0.01 --no-apply
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import redis
from harness import median_rate, timed_apply
from latency_proxy import latency_proxy

from qmigrate.source_factory import create_source
from tests.servers.redis import running_redis

BATCH = 256


def load(port: int, points: int, dim: int) -> None:
    client = redis.Redis(port=port, protocol=2)
    client.execute_command(
        "FT.CREATE", "bench", "ON", "HASH", "PREFIX", "1", "doc:", "SCHEMA",
        "embedding", "VECTOR", "FLAT", "6", "TYPE", "FLOAT32", "DIM", dim,
        "DISTANCE_METRIC", "COSINE", "category", "TAG", "year", "NUMERIC", "text", "TEXT",
    )  # fmt: skip
    rng = np.random.default_rng(0)
    for start in range(0, points, 1000):
        pipeline = client.pipeline(transaction=False)
        vectors = rng.uniform(-1, 1, (min(1000, points - start), dim)).astype("<f4")
        for offset, vector in enumerate(vectors):
            i = start + offset
            pipeline.hset(
                f"doc:{i}",
                mapping={
                    "embedding": vector.tobytes(),
                    "category": f"c{i % 10}",
                    "year": 2000 + i % 25,
                    "text": f"document {i}: " + "lorem ipsum " * 6,
                },
            )
        pipeline.execute()
    client.close()


def raw_read(port: int, count: int) -> float:
    """Seconds to SCAN every key and fetch each batch with one pipelined HGETALL round trip."""
    client = redis.Redis(port=port, protocol=2)
    started = time.perf_counter()
    read, cursor = 0, 0
    while True:
        cursor, keys = client.scan(cursor, match="doc:*", count=1000)
        pipeline = client.pipeline(transaction=False)
        for key in keys:
            pipeline.hgetall(key)
        for fields in pipeline.execute():
            np.frombuffer(fields[b"embedding"], dtype="<f4").tolist()
            read += 1
        if cursor == 0:
            break
    elapsed = time.perf_counter() - started
    client.close()
    assert read == count, read
    return elapsed


def source_read(port: int, count: int, parallelism: int) -> float:
    """Seconds for the Redis source to yield every record, its partitions on parallel threads."""
    source = create_source(
        {"type": "redis", "url": f"redis://127.0.0.1:{port}", "index": "bench"}, BATCH
    )
    started = time.perf_counter()
    with ThreadPoolExecutor(parallelism) as pool:
        parts = source.partitions(parallelism)
        read = sum(
            pool.map(lambda p: sum(len(page.records) for page in source.read(p, None)), parts)
        )
    elapsed = time.perf_counter() - started
    source.close()
    assert read == count, read
    return elapsed


def qmigrate_apply(port: int, root: Path, parallelism: int) -> float:
    shutil.rmtree(root / "target", ignore_errors=True)
    (root / "checkpoint.json").unlink(missing_ok=True)
    document = {
        "version": 1,
        "name": "bench",
        "source": {"type": "redis", "url": f"redis://127.0.0.1:{port}", "index": "bench"},
        "target": {"path": ":memory:", "collection": "bench"},
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
    parser.add_argument("--latency", type=float, default=0.002, help="seconds, each way")
    parser.add_argument("--parallelism", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--no-apply", action="store_true", help="only the read rows")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="qmigrate-bench-"))
    try:
        with running_redis(root, password=None) as server:
            print(f"loading redis: {args.points:,} x {args.dim} ...", file=sys.stderr)
            started = time.perf_counter()
            load(server.port, args.points, args.dim)
            print(f"loaded in {time.perf_counter() - started:.0f}s", file=sys.stderr)
            rows = measure(server.port, root, args, "direct")
            with latency_proxy(server.port, args.latency) as port:
                rows += measure(port, root, args, f"+{args.latency * 1000:g} ms each way")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(
        f"\n{args.points:,} documents x {args.dim}, batch {BATCH}, target :memory:, "
        f"median of {args.runs}\n"
    )
    print("| path | what | points/s | this / raw read |")
    print("|---|---|---:|---:|")
    for row in rows:
        print(row)


def measure(port: int, root: Path, args: argparse.Namespace, path: str) -> list[str]:
    rates = {
        "raw pipelined read": median_rate(
            args.points, args.runs, lambda: raw_read(port, args.points)
        )
    }
    for n in args.parallelism:
        rates[f"source p={n}"] = median_rate(
            args.points, args.runs, lambda n=n: source_read(port, args.points, n)
        )
    for n in [] if args.no_apply else args.parallelism:
        rates[f"qmigrate p={n}"] = median_rate(
            args.points, args.runs, lambda n=n: qmigrate_apply(port, root, n)
        )
    raw = rates["raw pipelined read"]
    return [f"| {path} | {name} | {rate:,.0f} | {rate / raw:.2f} |" for name, rate in rates.items()]


if __name__ == "__main__":
    main()
