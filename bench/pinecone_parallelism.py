"""Pinecone -> Qdrant: what parallel list + fetch streams buy when every request is slow.

Starts the Pinecone HTTP fake (tests/servers/pinecone_fake.py) in a child process, so its
CPU does not compete with qmigrate's threads, with --latency seconds added to every
request. It loads --points records (dense values, metadata, string IDs of one --ids scheme) into
one namespace of a serverless index, then
runs `apply` through the engine into an in-memory Qdrant target with parallelism 1 and
--parallelism, and prints wall time (plan-time probing included) as medians over --runs.

    .venv/bin/python bench/pinecone_parallelism.py --points 5000 --dim 64 --latency 0.02
"""

from __future__ import annotations

import argparse
import multiprocessing
import random
import tempfile
import uuid
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from harness import print_runs_table, timed_apply

from tests.servers.pinecone_fake import PineconeFake

BATCH = 100  # Pinecone lists at most 100 IDs a page


ID_SCHEMES = {
    "uuid": lambda i, rng: str(uuid.UUID(int=rng.getrandbits(128), version=4)),
    "chunk": lambda i, rng: f"doc-{i // 8}#chunk-{i % 8}",
    "number": lambda i, rng: str(i + 1),
}


def records(points: int, dim: int, ids: str) -> list[dict[str, Any]]:
    rng = random.Random(0)
    out = []
    for i in range(points):
        out.append(
            {
                "id": ID_SCHEMES[ids](i, rng),
                "values": [rng.uniform(-1, 1) for _ in range(dim)],
                "metadata": {"category": f"c{i % 10}", "year": 2000 + i % 25},
            }
        )
    return out


def serve(points: int, dim: int, ids: str, latency: float, pipe: Connection) -> None:
    """The child process: the fake, loaded, until the parent says stop."""
    fake = PineconeFake()
    index = fake.create_index("bench", dimension=dim, metric="cosine")
    index.upsert(records(points, dim, ids))
    fake.latency = latency
    pipe.send((fake.url, fake.api_key))
    pipe.recv()
    pipe.send(sum(fake.requests.values()))
    fake.close()


def apply_once(url: str, api_key: str, root: Path, parallelism: int) -> float:
    document = {
        "version": 1,
        "name": f"bench-p{parallelism}",
        "source": {
            "type": "pinecone",
            "api_key": api_key,
            "controller_host": url,
            "index": "bench",
        },
        "target": {"path": ":memory:", "collection": "bench"},
        "batch_size": BATCH,
        "parallelism": parallelism,
    }
    return timed_apply(document, root)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, default=5000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--latency", type=float, default=0.02, help="seconds added per request")
    parser.add_argument(
        "--ids",
        choices=sorted(ID_SCHEMES),
        default="uuid",
        help="uuid: random UUIDv4 (what LangChain writes); chunk: doc-N#chunk-M; number: 1, 2, ...",
    )
    parser.add_argument("--parallelism", type=int, default=8)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    parent, child = multiprocessing.Pipe()
    server = multiprocessing.Process(
        target=serve, args=(args.points, args.dim, args.ids, args.latency, child), daemon=True
    )
    server.start()
    url, api_key = parent.recv()
    times: dict[int, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="qmigrate-bench-") as root:
        for parallelism in (1, args.parallelism):
            times[parallelism] = [
                apply_once(url, api_key, Path(root), parallelism) for _ in range(args.runs)
            ]
    parent.send("stop")
    requests = parent.recv()
    server.join(10)

    print(
        f"\n{args.points:,} records x {args.dim}, {args.ids} IDs in one namespace, "
        f"{args.latency * 1000:.0f} ms "
        f"per request, batch {BATCH}, target :memory:, median of {args.runs} "
        f"({requests:,} requests served)\n"
    )
    print_runs_table("parallelism", times, args.points, base=1)


if __name__ == "__main__":
    main()
