"""`python -m bench.sync`: `qmigrate sync` after 1% of the source changed, against a full
re-apply of the same job (`restart: restart`), on a JSONL file and on Redis (issue 24).

For each source: load `--points` records (`bench/sources.py`), apply them into a local-mode
target on disk, change `--changed` of them (the payload `score` of evenly spread records), then time, each a `qmigrate` child process (wall from the kernel's accounting): `sync`
(writes the changed points only) and `apply` with `restart: restart` (writes every point).
The target is local mode: the sink keeps IDs only, so every point would look changed.

    python -m bench.sync --points 100000 --dim 64 --sources file redis
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from bench.harness import run_child_usage
from bench.sources import SOURCES


def change_file(conn: dict[str, Any], every: int) -> int:
    path = Path(conn["path"])
    lines = path.read_bytes().splitlines()
    changed = 0
    for i in range(0, len(lines), every):
        row = json.loads(lines[i])
        row["score"] = -1.0
        lines[i] = json.dumps(row).encode()
        changed += 1
    path.write_bytes(b"\n".join(lines) + b"\n")
    return changed


def change_redis(conn: dict[str, Any], every: int, points: int) -> int:
    import redis

    client = redis.Redis(port=conn["port"], protocol=2)
    pipeline = client.pipeline(transaction=False)
    for i in range(0, points, every):
        pipeline.hset(f"doc:{i}", mapping={"score": -1.0})
    pipeline.execute()
    return len(range(0, points, every))


def run(command: str, job: Path) -> tuple[float, int]:
    usage = run_child_usage(
        [sys.executable, "-m", "qmigrate", command, "--output", "json", str(job)], job.parent
    )
    if usage.failure:
        raise SystemExit(f"{command} failed: {usage.failure}")
    summary = json.loads(usage.out)["jobs"][0]
    return usage.wall, summary["written"]


def measure(name: str, points: int, dim: int, changed_share: float) -> dict[str, Any]:
    source = SOURCES[name]
    root = Path(tempfile.mkdtemp(prefix=f"qmigrate-sync-{name}-"))
    try:
        with source.start(root) as conn:
            source.load(conn, np.random.default_rng(0).uniform(-1, 1, (points, dim)).astype("f4"))
            document = {
                "version": 1,
                "name": f"sync-{name}",
                **source.job(conn),
                "target": {"path": str(root / "target"), "collection": "bench"},
                "batch_size": 1000,
                "parallelism": 2,
                "checkpoint": {"store": "file", "path": str(root / "checkpoints.json")},
            }
            job = root / "job.yaml"
            job.write_text(yaml.safe_dump(document))
            first = run("apply", job)
            every = round(1 / changed_share)
            changed = (
                change_file(conn, every) if name == "file" else change_redis(conn, every, points)
            )
            synced = run("sync", job)
            job.write_text(yaml.safe_dump({**document, "restart": "restart"}))
            reapplied = run("apply", job)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return {
        "source": name,
        "points": points,
        "changed": changed,
        "first_apply": first,
        "sync": synced,
        "reapply": reapplied,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--changed", type=float, default=0.01, help="share of records changed")
    parser.add_argument("--sources", nargs="+", default=["file", "redis"], choices=SOURCES)
    args = parser.parse_args()
    print("| source | points | changed | sync: time, written | re-apply: time, written | ratio |")
    print("|---|---:|---:|---|---|---:|")
    for name in args.sources:
        r = measure(name, args.points, args.dim, args.changed)
        (sync_s, sync_w), (full_s, full_w) = r["sync"], r["reapply"]
        print(
            f"| {name} | {r['points']:,} | {r['changed']:,} | {sync_s:.1f} s, {sync_w:,} | "
            f"{full_s:.1f} s, {full_w:,} | {full_s / sync_s:.1f}x |",
            flush=True,
        )


if __name__ == "__main__":
    main()
