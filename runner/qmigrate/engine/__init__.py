"""The engine: a job resolved against its live systems, checked, and run partition by partition.

`wiring` joins a job to its source, target and checkpoint store; `preflight` lists what
stops a run before it writes; `run` carries a run out on an executor (`executors/`), whose
workers run `loop.PartitionWorker`: read ahead (`prefetch`), filter and map, write
(`writer`), checkpoint (`saver`). `counts` holds a run's counters, summary and count check.
"""

from qmigrate.engine.counts import CountCheckFailed, Summary
from qmigrate.engine.preflight import refusals
from qmigrate.engine.run import apply
from qmigrate.engine.wiring import (
    Resolved,
    before_data_moves,
    checkpoint_store,
    resolve,
    target_and_store,
)

__all__ = [
    "CountCheckFailed",
    "Resolved",
    "Summary",
    "apply",
    "before_data_moves",
    "checkpoint_store",
    "refusals",
    "resolve",
    "target_and_store",
]
