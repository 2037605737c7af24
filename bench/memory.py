"""Peak memory of `qmigrate apply` does not grow with the size of the source.

Parquet files of 128-d vectors (100k and 1M rows) move into `bench/sink.py`, the Qdrant
stand-in that keeps only IDs; the peak RSS of each apply process (`ru_maxrss` from the
kernel) is compared. Memory should be bounded by batch size times the pages in flight.

    python bench/memory.py --sizes 100000 1000000 --dim 128
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--dim", type=int, default=128)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="qmigrate-memory-"))
    peaks = {}
    with running_sink() as (rest, grpc_port):
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
