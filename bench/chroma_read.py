"""Chroma -> Qdrant: qmigrate against the raw chromadb client reading the same collection.

Starts its own `chroma run` server on a free port, loads --points records (vector,
metadata, document) into it, then measures points per second for:
  raw read        page through the collection with `get(offset, limit)`, vectors, metadata
                  and documents, one thread: what any migration script must do
  raw read x2     the same with the collection split in two halves read concurrently
  qmigrate p=1    `apply` through the engine into a Qdrant target, parallelism 1
  qmigrate p=2    the same with parallelism 2
and prints each as a median over --runs, with its ratio to the raw read.

    python bench/chroma_read.py --points 100000 --dim 768 --runs 3 --target memory
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import chromadb
from chromadb.config import Settings
from harness import median_rate, timed_apply

from tests.servers.chroma import running_chroma

BATCH = 256


def load(url: str, points: int, dim: int) -> None:
    rng = random.Random(0)
    client = chromadb.HttpClient(host=url, settings=Settings(anonymized_telemetry=False))
    collection = client.create_collection("bench", embedding_function=None)
    for start in range(0, points, 1000):
        numbers = range(start, min(points, start + 1000))
        collection.add(
            ids=[f"doc-{i}" for i in numbers],
            embeddings=[[rng.uniform(-1, 1) for _ in range(dim)] for _ in numbers],
            metadatas=[
                {"category": f"c{i % 10}", "year": 2000 + i % 25, "score": rng.random()}
                for i in numbers
            ],
            documents=[f"document {i}: " + "lorem ipsum " * 6 for i in numbers],
        )


def raw_read(url: str, count: int, threads: int) -> float:
    """Seconds to read every record with `threads` readers over disjoint offset ranges."""
    client = chromadb.HttpClient(host=url, settings=Settings(anonymized_telemetry=False))
    collection = client.get_collection("bench")
    include: Any = ["embeddings", "metadatas", "documents"]
    read = [0] * threads

    def reader(index: int) -> None:
        offset, end = count * index // threads, count * (index + 1) // threads
        while offset < end:
            page = collection.get(offset=offset, limit=min(BATCH, end - offset), include=include)
            page["embeddings"].tolist()  # what any consumer of the vectors pays too
            offset += len(page["ids"])
            read[index] += len(page["ids"])

    started = time.perf_counter()
    workers = [threading.Thread(target=reader, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - started
    client.close()
    assert sum(read) == count, read
    return elapsed


def qmigrate_apply(url: str, target: str, root: Path, parallelism: int) -> float:
    document = {
        "version": 1,
        "name": "bench",
        "source": {"type": "chroma", "url": url, "collection": "bench"},
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
    parser.add_argument("--target", choices=["disk", "memory"], default="memory")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="qmigrate-bench-"))
    try:
        with running_chroma(root) as server:
            measure(server.url, root, args)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def measure(url: str, root: Path, args: argparse.Namespace) -> None:
    print(f"loading chroma: {args.points:,} x {args.dim} ...", file=sys.stderr)
    started = time.perf_counter()
    load(url, args.points, args.dim)
    print(f"loaded in {time.perf_counter() - started:.0f}s", file=sys.stderr)

    def apply_once(parallelism: int) -> float:
        shutil.rmtree(root / "target", ignore_errors=True)
        (root / "checkpoint.json").unlink(missing_ok=True)
        target = ":memory:" if args.target == "memory" else str(root / "target")
        return qmigrate_apply(url, target, root, parallelism)

    rates = {
        "raw read": median_rate(args.points, args.runs, lambda: raw_read(url, args.points, 1)),
        "raw read x2": median_rate(args.points, args.runs, lambda: raw_read(url, args.points, 2)),
        "qmigrate p=1": median_rate(args.points, args.runs, lambda: apply_once(1)),
        "qmigrate p=2": median_rate(args.points, args.runs, lambda: apply_once(2)),
    }
    print(
        f"\n{args.points:,} records x {args.dim}, batch {BATCH}, target {args.target}, "
        f"median of {args.runs}\n"
    )
    print("| what | points/s | this / raw read |")
    print("|---|---:|---:|")
    for name, rate in rates.items():
        print(f"| {name} | {rate:,.0f} | {rate / rates['raw read']:.2f} |")


if __name__ == "__main__":
    main()
