"""Reading a Qdrant server: qmigrate's Qdrant source over gRPC (dense vectors read from the
protobuf messages as float32 arrays) and over REST, against qdrant-client's own scroll loop
over each, as client CPU per point, in one run.

The server is the test stand-in (`python -m tests.servers.qdrant_grpc`: local-mode data
behind both protocols) in a process of its own, and `qmigrate apply` writes to the sink
(`bench/sink.py`), so the rows differ only in how the source is read.

    python bench/qdrant_server_read.py --points 20000 --dim 768 --runs 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
from harness import REPO, run_child_usage, running_server, running_sink

from bench.sources import COLLECTION, QDRANT

# qdrant-client's scroll loop, all a plain script can do: records with vectors and payload.
SCROLL = """
import sys
from qdrant_client import QdrantClient
url, grpc_port, grpc_flag, collection = sys.argv[1:]
client = QdrantClient(url=url, grpc_port=int(grpc_port), prefer_grpc=grpc_flag == "1", timeout=120)
offset, read = None, 0
while True:
    records, offset = client.scroll(
        collection, limit=256, offset=offset, with_payload=True, with_vectors=True
    )
    read += len(records)
    if offset is None:
        break
print(read)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=20_000)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="qmigrate-qdrant-read-"))
    data = root / "qdrant-source"
    vectors = np.random.default_rng(0).uniform(-1, 1, (args.points, args.dim))
    QDRANT.load({"path": str(data)}, vectors.astype(np.float32))
    cpus: dict[str, list[float]] = {}
    walls: dict[str, list[float]] = {}
    stand_in = [sys.executable, "-m", "tests.servers.qdrant_grpc", "--path", str(data)]
    with (
        running_server(stand_in, "the stand-in", 60) as (rest, grpc_port, _),
        running_sink() as (sink_rest, sink_grpc, _),
    ):
        url = f"http://127.0.0.1:{rest}"
        commands = {}
        for transport, grpc_flag in (("gRPC", True), ("REST", False)):
            scroll = [sys.executable, "-c", SCROLL, url, str(grpc_port), str(int(grpc_flag))]
            commands[f"qdrant-client scroll, {transport}"] = [*scroll, COLLECTION]
            job = {
                "version": 1,
                "name": f"read-{transport}",
                "source": {
                    "type": "qdrant",
                    "url": url,
                    "grpc_port": grpc_port,
                    "prefer_grpc": grpc_flag,
                    "collection": COLLECTION,
                },
                "target": {
                    "url": f"http://127.0.0.1:{sink_rest}",
                    "grpc_port": sink_grpc,
                    "collection": f"copy-{transport}",
                },
                "restart": "restart",
            }
            job_file = root / f"{transport}.json"
            job_file.write_text(json.dumps(job))
            apply = [sys.executable, "-m", "qmigrate", "apply", str(job_file), "--output", "json"]
            commands[f"qmigrate apply, source over {transport}"] = apply
        for _ in range(args.runs):
            for name, command in commands.items():
                usage = run_child_usage(command, cwd=REPO)
                cpus.setdefault(name, []).append(usage.cpu)
                walls.setdefault(name, []).append(usage.wall)
    print(f"{args.points:,} x {args.dim}-d points with payload, from the stand-in server")
    print("| process | median CPU (s) | CPU µs/point | median wall (s) |")
    print("|---|---:|---:|---:|")
    for name in commands:
        cpu = statistics.median(cpus[name])
        print(
            f"| {name} | {cpu:.2f} | {cpu / args.points * 1e6:.0f} "
            f"| {statistics.median(walls[name]):.2f} |"
        )


if __name__ == "__main__":
    main()
