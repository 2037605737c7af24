"""The local executor: a job's partitions on a thread pool of this process."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any

from qmigrate.checkpoint import JobState, PartitionState, totals
from qmigrate.engine.counts import Counters
from qmigrate.engine.loop import PageStep, PartitionWorker
from qmigrate.engine.wiring import Resolved
from qmigrate.progress import Progress
from qmigrate.spec import Job


def refusals(job: Job) -> list[str]:
    """The thread pool runs whatever the job names."""
    return []


def prepare(job: Job) -> None:
    """Nothing to join."""


def run_partitions(
    resolved: Resolved,
    state: JobState,
    partition_states: dict[str, PartitionState],
    counters: Counters,
    progress_stream: Any,
    step: PageStep | None = None,
    checkpoints: str | None = None,
) -> None:
    """`step` and `checkpoints`: see PartitionWorker (sync runs here, apply too)."""
    job = resolved.job
    states = {p.key: partition_states.get(p.key) or PartitionState(p.key) for p in state.partitions}
    pending = [(p, states[p.key]) for p in state.partitions if not states[p.key].done]
    already = totals(partition_states.values()).read
    total = resolved.info.count if resolved.residual_filter == job.filter else None
    stop = threading.Event()
    worker = PartitionWorker(resolved, counters, stop, step, checkpoints)
    with Progress(job.name, total, already, stream=progress_stream) as progress:
        worker.progress = progress
        with ThreadPoolExecutor(
            max_workers=job.parallelism, thread_name_prefix="partition"
        ) as pool:
            futures = [pool.submit(worker.run, p, s) for p, s in pending]
            try:
                for future in as_completed(futures):
                    future.result()  # the first failure stops the other partitions
            finally:
                stop.set()
