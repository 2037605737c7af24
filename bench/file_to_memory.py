"""JSONL into an in-memory Qdrant (`:memory:`, local mode): `qmigrate apply` against the plain
script a user would write (read a page of lines, build `PointStruct`s, upsert(wait=True)),
both as whole processes timed by the kernel, alternating, in one run.

    python bench/file_to_memory.py --points 20000 --dim 768 --runs 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys

from harness import REPO, run_child_usage

from bench.sources import FILE, jsonl_data_set


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=20_000)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--batch", type=int, default=256)
    args = parser.parse_args()
    root, conn = jsonl_data_set("file-to-memory", args.points, args.dim)
    document = {
        "version": 1,
        "name": "file-to-memory",
        **FILE.job(conn),
        "target": {"path": ":memory:", "collection": "copy"},
        "batch_size": args.batch,
    }
    job = root / "job.json"
    job.write_text(json.dumps(document))
    script = {
        "source": "file",
        "conn": conn,
        "target": {"location": ":memory:"},
        "collection": "copy",
        "batch": args.batch,
        "dim": args.dim,
    }
    commands = {
        "plain script": [sys.executable, "-m", "bench.steps", "loop", json.dumps(script)],
        "qmigrate apply": [sys.executable, "-m", "qmigrate", "apply", str(job)],
    }
    walls: dict[str, list[float]] = {name: [] for name in commands}
    cpus: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(args.runs):
        for name, command in commands.items():
            usage = run_child_usage(command, cwd=REPO)
            walls[name].append(usage.wall)
            cpus[name].append(usage.cpu)
    print(f"{args.points:,} x {args.dim}-d JSONL -> :memory:, batch {args.batch}")
    print("| process | walls (s) | median wall (s) | median CPU (s) |")
    print("|---|---|---:|---:|")
    for name in commands:
        shown = ", ".join(f"{wall:.2f}" for wall in walls[name])
        print(
            f"| {name} | {shown} | {statistics.median(walls[name]):.2f} "
            f"| {statistics.median(cpus[name]):.2f} |"
        )
    ratio = statistics.median(walls["qmigrate apply"]) / statistics.median(walls["plain script"])
    print(f"qmigrate / plain script, wall: {ratio:.2f}")


if __name__ == "__main__":
    main()
