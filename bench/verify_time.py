"""How long `verify` takes at its default settings, next to the `apply` it checks.

A JSONL file of N × D float vectors moves into an in-memory Qdrant target, then verify
runs on the same live target (in one process: an in-memory target lives as long as it).
Verify reads the whole source once (counting, sampling), compares the sample with the
target, and checks health; the file source cannot search, so search agreement is skipped.

    python bench/verify_time.py --points 100000 --dim 768 --runs 3
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from pathlib import Path

from harness import REPO  # noqa: F401  (puts the repo on sys.path)

from qmigrate import engine, spec
from qmigrate.verify import Settings, verify


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="qmigrate-verify-bench-"))
    rng = random.Random(0)
    with (root / "rows.jsonl").open("w") as handle:
        for i in range(args.points):
            vector = [round(rng.uniform(-1, 1), 6) for _ in range(args.dim)]
            handle.write(json.dumps({"id": i, "v": vector, "k": i % 7}) + "\n")
    document = {
        "version": 1,
        "name": "verify-bench",
        "source": {
            "type": "file",
            "path": str(root / "rows.jsonl"),
            "vectors": {"v": {"distance": "cosine"}},
        },
        "target": {"path": ":memory:", "collection": "bench"},
        "batch_size": 256,
        "parallelism": 2,
    }
    (root / "job.yaml").write_text(json.dumps(document))
    applies, verifies = [], []
    for _ in range(args.runs):
        resolved = engine.resolve(spec.load(root / "job.yaml", {}))
        try:
            with open("/dev/null", "w") as quiet:
                started = time.perf_counter()
                engine.apply(resolved, progress_stream=quiet)
                applies.append(time.perf_counter() - started)
                started = time.perf_counter()
                report = verify(resolved, Settings.of({}, {}), progress_stream=quiet)
                verifies.append(time.perf_counter() - started)
        finally:
            resolved.close()
        assert report.ok, [c.__dict__ for c in report.checks]
    apply_s, verify_s = statistics.median(applies), statistics.median(verifies)
    print(f"{args.points:,} x {args.dim}, median of {args.runs}:")
    print(f"  apply   {apply_s:6.1f} s  ({args.points / apply_s:,.0f} points/s)")
    print(f"  verify  {verify_s:6.1f} s  ({args.points / verify_s:,.0f} records/s read)")
    print(f"  verify / apply = {verify_s / apply_s:.2f}")


if __name__ == "__main__":
    main()
