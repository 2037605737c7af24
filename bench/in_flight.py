"""Upserts in flight against a server some way off: `target.in_flight` 1, 2, 4, 8 against
the reference tool's loop (read a page, convert, upsert(wait=True)), on one wire.

The sink (`bench/sink.py`, an infinitely fast server) sits behind `bench/latency_proxy.py`,
which adds `--delay` seconds each way to both its ports, like a server in another zone or
region. Each run is a whole process (wall time from the kernel), JSONL of `--dim`-d vectors
with a small payload, parallelism 1.

    python bench/in_flight.py --points 20000 --dim 768 --delay 0.005 --runs 3
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys

from harness import REPO, print_runs_table, run_child_usage, running_sink
from latency_proxy import latency_proxy

from bench.sources import FILE, jsonl_data_set

SETTINGS = (1, 2, 4, 8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=20_000)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--delay", type=float, default=0.005, help="seconds each way")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=256)
    args = parser.parse_args()
    root, conn = jsonl_data_set("in-flight", args.points, args.dim)
    times: dict[str, list[float]] = {}
    with contextlib.ExitStack() as stack:
        rest, grpc_port, _ = stack.enter_context(running_sink())
        far_rest = stack.enter_context(latency_proxy(rest, args.delay))
        far_grpc = stack.enter_context(latency_proxy(grpc_port, args.delay))
        target = {"url": f"http://127.0.0.1:{far_rest}", "grpc_port": far_grpc}
        for run in range(args.runs):  # settings alternate, so drift in the machine is shared
            loop = {
                "source": "file",
                "conn": conn,
                "target": {**target, "prefer_grpc": True},
                "collection": f"loop-{run}",
                "batch": args.batch,
                "dim": args.dim,
            }
            command = [sys.executable, "-m", "bench.steps", "loop", json.dumps(loop)]
            times.setdefault("(d) loop", []).append(run_child_usage(command, cwd=REPO).wall)
            for in_flight in SETTINGS:
                name = f"in-flight-{in_flight}-{run}"
                document = {
                    "version": 1,
                    "name": name,
                    **FILE.job(conn),
                    "target": {**target, "collection": name, "in_flight": in_flight},
                    "batch_size": args.batch,
                }
                job = root / f"{name}.json"
                job.write_text(json.dumps(document))
                usage = run_child_usage([sys.executable, "-m", "qmigrate", "apply", str(job)])
                times.setdefault(f"qmigrate in_flight={in_flight}", []).append(usage.wall)
    print(f"{args.points:,} x {args.dim}-d, {args.delay * 2000:.0f} ms added per round trip")
    print_runs_table("run", times, args.points, "(d) loop")


if __name__ == "__main__":
    main()
