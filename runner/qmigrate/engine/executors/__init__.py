"""Executors: where a job's partitions run. One module per executor, named in `EXECUTORS`.

`run` asks the job's executor for its refusals (with the other refusals, before anything is
written), lets it `prepare` (join a cluster) before the job lease, and hands it the pending
partitions; everything before and after (start state, bulk load, count check) is the same
for every executor.
"""

from __future__ import annotations

from typing import Any, Protocol

from qmigrate.checkpoint import JobState, PartitionState
from qmigrate.engine.counts import Counters
from qmigrate.engine.executors import local, processes, ray
from qmigrate.engine.wiring import Resolved
from qmigrate.spec import Job


class Executor(Protocol):
    def refusals(self, job: Job) -> list[str]:
        """Why this executor cannot run the job, found before anything is written."""
        ...

    def prepare(self, job: Job) -> None:
        """Get ready to run (join a cluster); fails in one line, before anything is written."""
        ...

    def run_partitions(
        self,
        resolved: Resolved,
        state: JobState,
        partition_states: dict[str, PartitionState],
        counters: Counters,
        progress_stream: Any,
    ) -> None:
        """Move every partition not done yet, adding this run's counts to `counters`."""
        ...


EXECUTORS: dict[str, Executor] = {"local": local, "processes": processes, "ray": ray}


def executor(job: Job) -> Executor:
    return EXECUTORS[job.executor.type]
