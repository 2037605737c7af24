"""What the executors that run partitions outside this process share (`ray`, `processes`).

A partition elsewhere runs the engine's own code (`engine.resolve`, `PartitionWorker`), so
records go from the source to the target there, never through the driver. Attempts
coordinate only through the checkpoint store: a partition lease (the job lease's claim and
heartbeat, on one partition) keeps two attempts of a partition apart, and every attempt
starts from the cursor the last one saved. The driver reads progress and this run's counts
back from the checkpoints, since an attempt that died took its counters with it.
"""

from __future__ import annotations

import dataclasses
import threading
import time

from qmigrate.checkpoint import CheckpointStore, JobState, PartitionState, Totals, totals
from qmigrate.engine.counts import Counters
from qmigrate.engine.lease import JobLease
from qmigrate.engine.loop import PartitionWorker
from qmigrate.engine.wiring import Resolved, resolve
from qmigrate.progress import Progress
from qmigrate.records import Partition
from qmigrate.redaction import remember_secrets
from qmigrate.retry import retried
from qmigrate.spec import Job

POLL_SECONDS = 1.0  # how often the driver reads the checkpoints for progress


def run_partition(job: Job, partition: Partition, stop: threading.Event | None = None) -> int:
    """One partition, in another process: from the cursor the last attempt saved, under
    the partition's lease. Returns how many transient failures it rode out."""
    remember_secrets(job.document)  # a message raised here is masked already
    resolved = resolve(job)
    resolved.target.rate_share = job.concurrency  # a write rate limit split among processes
    try:
        lease_job = dataclasses.replace(job, name=f"{job.name} partition {partition.key}")
        with JobLease(
            resolved.store, lease_job, True, resolved.warn, command="a partition of apply"
        ):
            # Read after the lease is ours: an attempt that died before us saved up to here.
            saved = load_states(resolved.store, job).get(partition.key)
            state = saved or PartitionState(partition.key)
            if state.done:
                return 0
            counters = Counters()
            PartitionWorker(resolved, counters, stop or threading.Event()).run(partition, state)
            return counters.retries
    finally:
        resolved.close()


def local_mode_refusal(job: Job) -> list[str]:
    """A local-mode target: one process at a time opens its directory."""
    if job.target.path is None:
        return []
    return [
        f"target.path (Qdrant local mode) cannot be used with executor {job.executor.type}: "
        "one process at a time opens a local-mode directory; migrate into a Qdrant server "
        "(target.url), or use executor local"
    ]


def portable(job: Job) -> Job:
    """The job as another process sees it: local paths made absolute (its working
    directory may not be the driver's)."""
    return dataclasses.replace(
        job,
        source={**job.source, **job.source_paths},
        dead_letter_path=job.dead_letter_path.absolute(),
    )


def pending(state: JobState, partition_states: dict[str, PartitionState]) -> list[Partition]:
    return [
        p for p in state.partitions if not partition_states.get(p.key, PartitionState(p.key)).done
    ]


def load_states(store: CheckpointStore, job: Job) -> dict[str, PartitionState]:
    return retried(
        lambda: store.load_partitions(job.name), f"job '{job.name}': reading checkpoints"
    )


class CheckpointProgress:
    """The driver's progress bar, advanced by what the checkpoints say was read."""

    def __init__(self, resolved: Resolved, before: Totals, progress: Progress) -> None:
        self.resolved = resolved
        self.progress = progress
        self.seen = before.read
        self.polled = time.monotonic()

    def poll(self) -> None:
        if time.monotonic() - self.polled >= POLL_SECONDS:
            self.final()

    def final(self) -> Totals:
        now = totals(load_states(self.resolved.store, self.resolved.job).values())
        self.progress.advance(now.read - self.seen)
        self.seen, self.polled = now.read, time.monotonic()
        return now
