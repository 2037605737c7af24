"""What every benchmark shares: timing a job through the engine, and medians of rates."""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the servers and fakes the benchmarks start live with the tests

from qmigrate import engine, spec  # noqa: E402


def timed_apply(document: dict[str, Any], root: Path) -> float:
    """Seconds for one `apply` of `document`, connecting and the count check included."""
    job_file = root / f"{document['name']}.yaml"
    job_file.write_text(json.dumps(document))
    started = time.perf_counter()
    resolved = engine.resolve(spec.load(job_file, {}))
    try:
        with open("/dev/null", "w") as quiet:
            summary = engine.apply(resolved, progress_stream=quiet)
    finally:
        resolved.close()
    elapsed = time.perf_counter() - started
    assert summary.count_check == "ok", summary.count_check
    return elapsed


def median_rate(points: int, runs: int, measure: Callable[[], float]) -> float:
    """Median points/s over `runs` calls of `measure` (which returns seconds)."""
    return statistics.median(points / measure() for _ in range(runs))
