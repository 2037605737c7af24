"""Pinecone -> Qdrant on a Ray cluster: 1, 2 and 4 tasks at once against a latency-bound source.

Starts a local Ray cluster (tests/servers/ray_cluster.py: a head and one more worker node,
2 logical CPUs each), the Pinecone HTTP fake in a child process with --latency seconds on
every request, and the benchmark sink (bench/sink.py, a Qdrant REST endpoint that keeps
only IDs) as the target every task writes to. Then it runs `apply` through the engine with
`executor: {type: ray, tasks: N}` for N in 1, 2, 4, and the local thread executor at
parallelism 1 and 4 for comparison, all with the same --partitions, and prints wall time
(connecting, task start-up and the count check included) as medians over --runs.

Everything runs in a network namespace that holds only `lo` (tests/servers/netns.py; needs
root): outside it, Ray would give its nodes the machine's non-loopback address.

    .venv/bin/python bench/ray_scaleout.py --points 20000 --dim 64 --latency 0.02 --runs 3
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import tempfile
from pathlib import Path
from typing import Any

from harness import REPO, print_runs_table, timed_apply
from pinecone_parallelism import BATCH, serve

from tests.servers.netns import LoopbackNamespace, loopback_namespace
from tests.servers.process import free_port, port_open, server_process
from tests.servers.ray_cluster import running_ray

TASKS = (1, 2, 4)


def document(name: str, url: str, api_key: str, target: str, partitions: int) -> dict[str, Any]:
    return {
        "version": 1,
        "name": name,
        "source": {
            "type": "pinecone",
            "api_key": api_key,
            "controller_host": url,
            "index": "bench",
        },
        "target": {"url": target, "collection": name},
        "batch_size": BATCH,
        "partitions": partitions,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, default=20000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--latency", type=float, default=0.02, help="seconds added per request")
    parser.add_argument("--partitions", type=int, default=16)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with loopback_namespace() as namespace:
        # Before any thread or child starts: the fake, the sink, Ray and this driver all
        # run in the namespace.
        namespace.enter()
        run(args, namespace)


def run(args: argparse.Namespace, namespace: LoopbackNamespace) -> None:
    parent, child = multiprocessing.Pipe()
    fake = multiprocessing.Process(
        target=serve, args=(args.points, args.dim, "uuid", args.latency, child), daemon=True
    )
    fake.start()
    url, api_key = parent.recv()
    times: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="qmigrate-bench-") as root:
        port = free_port()
        sink = [sys.executable, str(REPO / "bench" / "sink.py"), "--rest-port", str(port)]
        with (
            server_process(
                [*sink, "--grpc-port", str(free_port())],
                ready=lambda: port_open(port),
                log=Path(root) / "sink.log",
            ),
            running_ray(namespace) as cluster,
        ):
            target = f"http://127.0.0.1:{port}"
            # Warm-up: Ray starts worker processes (and they import qmigrate) on first use.
            warm = document("warm-up", url, api_key, target, args.partitions)
            timed_apply({**warm, "executor": ray(cluster.address, max(TASKS))}, Path(root))
            for run in range(args.runs):
                for tasks in TASKS:
                    name = f"ray-{tasks}-{run}"
                    job = document(name, url, api_key, target, args.partitions)
                    job["executor"] = ray(cluster.address, tasks)
                    times.setdefault(f"ray, tasks {tasks}", []).append(timed_apply(job, Path(root)))
                for parallelism in (1, max(TASKS)):
                    name = f"local-{parallelism}-{run}"
                    job = document(name, url, api_key, target, args.partitions)
                    job["parallelism"] = parallelism
                    times.setdefault(f"local, parallelism {parallelism}", []).append(
                        timed_apply(job, Path(root))
                    )
    parent.send("stop")
    requests = parent.recv()
    fake.join(10)

    print(
        f"\n{args.points:,} records x {args.dim}, UUID IDs, {args.latency * 1000:.0f} ms per "
        f"request, batch {BATCH}, {args.partitions} partitions, target the sink over REST, "
        f"median of {args.runs} ({requests:,} requests served)\n"
    )
    print_runs_table("executor", times, args.points, base="ray, tasks 1")


def ray(address: str, tasks: int) -> dict[str, Any]:
    return {"type": "ray", "address": address, "tasks": tasks, "num_cpus_per_task": 1}


if __name__ == "__main__":
    main()
