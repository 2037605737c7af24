"""Client CPU per point on the server path: qmigrate against a plain qdrant-client script.

Both write the same JSONL file (N × D floats, a small payload) to `bench/sink.py`, a
Qdrant stand-in that only counts points, over REST and over gRPC. Each run is a separate
process, and its CPU time (user + system, from the kernel's accounting of the child) is
what the client spent: the sink's own CPU cannot blur it.

    python bench/server_path.py --points 20000 --dim 768 --runs 3
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

from harness import REPO

sys.path.insert(0, str(REPO / "tests"))
from servers.process import free_port, port_open, wait_until  # noqa: E402

PLAIN = textwrap.dedent(
    """
    # What a user would write: parse each line, build PointStructs, upsert in batches.
    import json, sys
    from qdrant_client import QdrantClient, models
    path, url, grpc_port, prefer_grpc, collection, dim, batch = sys.argv[1:]
    client = QdrantClient(url=url, grpc_port=int(grpc_port), prefer_grpc=prefer_grpc == "1")
    client.create_collection(collection, models.VectorParams(size=int(dim), distance="Cosine"))
    points = []
    with open(path) as handle:
        for line in handle:
            row = json.loads(line)
            points.append(models.PointStruct(id=row.pop("id"), vector=row.pop("v"), payload=row))
            if len(points) == int(batch):
                client.upsert(collection, points, wait=True)
                points = []
    if points:
        client.upsert(collection, points, wait=True)
    """
)


@contextlib.contextmanager
def running_sink() -> Iterator[tuple[int, int]]:
    """`bench/sink.py` in a process of its own: (REST port, gRPC port) until the block ends."""
    rest, grpc_port = free_port(), free_port()
    command = [
        sys.executable,
        str(REPO / "bench" / "sink.py"),
        "--rest-port",
        str(rest),
        "--grpc-port",
        str(grpc_port),
    ]
    sink = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    try:
        wait_until(lambda: port_open(rest) and port_open(grpc_port), 30, "the sink")
        yield rest, grpc_port
    finally:
        sink.terminate()
        sink.wait()


def run_child_usage(command: list[str]) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds, peak RSS in KiB) of one child process, from the kernel."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{command[:4]} failed: {process.stderr.read().decode()[-2000:]}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss


def run_child(command: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the child) of one process."""
    wall, cpu, _ = run_child_usage(command)
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=20_000)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="qmigrate-server-path-"))
    data = root / "rows.jsonl"
    rng = random.Random(0)
    with data.open("w") as handle:
        for i in range(args.points):
            vector = [rng.uniform(-1, 1) for _ in range(args.dim)]
            handle.write(json.dumps({"id": i, "v": vector, "k": i % 7, "t": f"doc {i}"}) + "\n")
    with running_sink() as (rest, grpc_port):
        url = f"http://127.0.0.1:{rest}"
        results: dict[tuple[str, str], list[tuple[float, float]]] = {}
        for run in range(args.runs):
            for transport, flag in (("rest", "0"), ("grpc", "1")):
                name = f"c{run}{transport}"
                plain = [
                    sys.executable,
                    "-c",
                    PLAIN,
                    str(data),
                    url,
                    str(grpc_port),
                    flag,
                    f"plain-{name}",
                    str(args.dim),
                    str(args.batch_size),
                ]
                results.setdefault(("plain", transport), []).append(run_child(plain))
                job = {
                    "version": 1,
                    "name": f"q-{name}",
                    "source": {
                        "type": "file",
                        "path": str(data),
                        "vectors": {"v": {"distance": "cosine"}},
                    },
                    "target": {
                        "url": url,
                        "grpc_port": grpc_port,
                        "prefer_grpc": flag == "1",
                        "collection": f"qmigrate-{name}",
                    },
                    "mapping": {"vectors": {"v": ""}},
                    "batch_size": args.batch_size,
                    "parallelism": 2,
                }
                job_file = root / f"{name}.yaml"
                job_file.write_text(json.dumps(job))
                command = [sys.executable, "-m", "qmigrate", "apply", str(job_file)]
                results.setdefault(("qmigrate", transport), []).append(run_child(command))
    print(f"{args.points:,} x {args.dim}, batch {args.batch_size}, median of {args.runs}:")
    print("| transport | what | wall s | points/s | client CPU µs/point | qmigrate / plain CPU |")
    print("|---|---|---:|---:|---:|---:|")
    for transport in ("rest", "grpc"):
        medians = {
            who: (
                statistics.median(w for w, _ in results[(who, transport)]),
                statistics.median(c for _, c in results[(who, transport)]),
            )
            for who in ("plain", "qmigrate")
        }
        for who, (wall, cpu) in medians.items():
            ratio = cpu / medians["plain"][1]
            print(
                f"| {transport} | {who} | {wall:.2f} | {args.points / wall:,.0f} | "
                f"{cpu / args.points * 1e6:.0f} | {ratio:.2f} |"
            )


if __name__ == "__main__":
    main()
