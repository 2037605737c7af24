"""Peak memory of `qmigrate apply` does not grow with the size of the source.

Parquet files of 128-d vectors (100k and 1M rows) move into `bench/sink.py`, the Qdrant
stand-in that keeps only IDs; the peak RSS of each apply process (`ru_maxrss` from the
kernel) is compared. Memory should be bounded by batch size times the pages in flight.

    python bench/memory.py --sizes 100000 1000000 --dim 128

With `--workers N` the job runs on the process executor, and the RSS of the whole process
tree (the apply and its workers) is sampled from /proc every 50 ms: the peak of the sum is
what the machine must hold, which no single process's `ru_maxrss` says.

    python bench/memory.py --sizes 100000 1000000 --dim 128 --workers 1 2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from harness import run_child_usage, running_sink

ROW_GROUP = 10_000


def write_parquet(path: Path, rows: int, dim: int) -> None:
    rng = np.random.default_rng(0)
    with pq.ParquetWriter(
        path, pa.schema([("id", pa.int64()), ("v", pa.list_(pa.float32())), ("k", pa.int64())])
    ) as writer:
        for start in range(0, rows, ROW_GROUP):
            count = min(ROW_GROUP, rows - start)
            vectors = rng.uniform(-1, 1, (count, dim)).astype(np.float32)
            table = pa.table(
                {
                    "id": pa.array(np.arange(start, start + count)),
                    "v": pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), dim).cast(
                        pa.list_(pa.float32())
                    ),
                    "k": pa.array(np.arange(start, start + count) % 7),
                }
            )
            writer.write_table(table)


def tree_rss_kib(root: int) -> int:
    """The summed RSS of `root` and its descendants now, from /proc."""
    parents: dict[int, int] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            status = Path(f"/proc/{entry}/status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        parents[int(entry)] = int(fields["PPid"])
        rss[int(entry)] = int(fields.get("VmRSS", "0 kB").split()[0])
    total = 0
    for pid in rss:
        ancestor = pid
        while ancestor not in (0, 1) and ancestor != root:
            ancestor = parents.get(ancestor, 0)
        total += rss[pid] if ancestor == root else 0
    return total


def run_tree(command: list[str]) -> tuple[float, int]:
    """Wall seconds and the peak summed RSS (KiB) of the command's process tree."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = 0
    while process.poll() is None:
        peak = max(peak, tree_rss_kib(process.pid))
        time.sleep(0.05)
    if process.returncode != 0:
        raise SystemExit(f"apply failed: {process.stderr.read().decode()[-2000:]}")
    return time.perf_counter() - started, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--workers", type=int, nargs="*", default=[], help="process executor")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="qmigrate-memory-"))
    peaks = {}
    with running_sink() as (rest, grpc_port, _):
        for size in args.sizes:
            data = root / f"rows-{size}.parquet"
            write_parquet(data, size, args.dim)
            job = {
                "version": 1,
                "name": f"memory-{size}",
                "source": {
                    "type": "file",
                    "path": str(data),
                    "vectors": {"v": {"distance": "cosine"}},
                },
                "target": {
                    "url": f"http://127.0.0.1:{rest}",
                    "grpc_port": grpc_port,
                    "prefer_grpc": True,
                    "collection": f"memory-{size}",
                },
                "batch_size": 256,
                "parallelism": 2,
            }
            for workers in args.workers:
                document = {
                    **job,
                    "name": f"memory-{size}-w{workers}",
                    "target": {**job["target"], "collection": f"memory-{size}-w{workers}"},
                    "executor": {"type": "processes", "workers": workers},
                    "parallelism": 2 * workers,
                }
                job_file = root / f"{size}-w{workers}.yaml"
                job_file.write_text(json.dumps(document))
                command = [sys.executable, "-m", "qmigrate", "apply", str(job_file)]
                wall, tree = run_tree(command)
                print(
                    f"{size:>10,} rows, {workers} worker(s): {wall:6.1f} s, "
                    f"peak RSS of the process tree {tree / 1024:,.0f} MiB",
                    flush=True,
                )
            job_file = root / f"{size}.yaml"
            job_file.write_text(json.dumps(job))
            usage = run_child_usage([sys.executable, "-m", "qmigrate", "apply", str(job_file)])
            wall, peak = usage.wall, usage.rss_kib
            peaks[size] = peak
            print(
                f"{size:>10,} rows: {wall:6.1f} s, {size / wall:,.0f} points/s, "
                f"peak RSS {peak / 1024:,.0f} MiB",
                flush=True,
            )
    smallest, largest = min(peaks), max(peaks)
    print(f"peak RSS at {largest:,} / at {smallest:,} = {peaks[largest] / peaks[smallest]:.2f}")


if __name__ == "__main__":
    main()
