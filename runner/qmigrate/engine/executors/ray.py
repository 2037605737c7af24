"""The Ray executor: each partition of a job runs as a Ray task on a cluster.

A task is `elsewhere.run_partition`: the engine's own code, under a partition lease, from
the cursor the last attempt saved. Ray retries a task whose process or node died; a
re-applied job (after the driver died) skips finished partitions and re-leases the rest.

Ray is imported only here, and only when a job asks for it (`qmigrate[ray]`).
"""

from __future__ import annotations

import logging
import socket
from typing import Any

from qmigrate.checkpoint import JobState, PartitionState, totals
from qmigrate.engine.counts import Counters
from qmigrate.engine.executors.elsewhere import (
    POLL_SECONDS,
    CheckpointProgress,
    local_mode_refusal,
    pending,
    portable,
    run_partition,
)
from qmigrate.engine.wiring import Resolved
from qmigrate.errors import QmigrateError
from qmigrate.progress import Progress
from qmigrate.records import Partition
from qmigrate.retry import describe
from qmigrate.sources import source_type
from qmigrate.spec import Job

INSTALL_HINT = "pip install 'qmigrate[ray]'"
TASK_RETRIES = 3  # attempts after a task's process or node died (Ray's max_retries)
CONNECT_TIMEOUT = 5.0


def refusals(job: Job) -> list[str]:
    """Why a job cannot run on Ray, found before anything is written (plan shows them too)."""
    try:
        import ray  # noqa: F401
    except ImportError:
        return [f"executor ray needs Ray, which is not installed: {INSTALL_HINT}"]
    reasons = local_mode_refusal(job)
    if job.checkpoint_store == "file":
        reasons.append(
            "checkpoint.store file cannot be used with executor ray: tasks on other machines "
            "coordinate through the checkpoints in the target; use store: target"
        )
    source = job.source
    if source_type(source["type"]).on_this_machine(source):
        reasons.append(
            f"a {source['type']} source in a local file or socket cannot be read by Ray tasks "
            "(other processes and machines cannot share it): read from a server, or use "
            "executor local"
        )
    return reasons


def prepare(job: Job) -> None:
    """Join the job's Ray cluster; an unreachable one is one line, before anything is written."""
    try:
        import ray
    except ImportError:
        raise QmigrateError(
            f"executor ray needs Ray, which is not installed: {INSTALL_HINT}"
        ) from None
    if ray.is_initialized():
        return
    address = job.executor.address
    where = f"the Ray cluster at {address}"
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if address != "auto" and port.isdigit():
        try:  # Ray itself retries an unreachable head for a minute before it gives up
            socket.create_connection((host, int(port)), CONNECT_TIMEOUT).close()
        except OSError as exc:
            raise QmigrateError(
                f"cannot reach {where}: {exc.strerror or exc} (is the cluster running and "
                "executor.address / --ray-address right?)"
            ) from None
    try:
        ray.init(
            address=address,
            logging_level=logging.ERROR,
            log_to_driver=False,  # the driver prints progress and the summary, as a local run
            configure_logging=True,
        )
    except Exception as exc:
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise QmigrateError(f"cannot reach {where}: {first_line}") from None
    _cluster_notices_to_stderr(ray)


def _cluster_notices_to_stderr(ray: Any) -> None:
    """Ray prints the cluster's notices (a worker died...) to the driver's stdout, which
    `--output json` keeps for one JSON document: send them to stderr with the progress."""
    worker = ray._private.worker
    original = getattr(worker, "print_to_stdstream", None)
    if original is None:
        return
    worker.print_to_stdstream = lambda data, **kw: original({**data, "is_err": True}, **kw)


def run_partitions(
    resolved: Resolved,
    state: JobState,
    partition_states: dict[str, PartitionState],
    counters: Counters,
    progress_stream: Any,
) -> None:
    """The Ray counterpart of the engine's thread pool: at most `executor.tasks` partitions
    at once, progress and this run's counts read back from the checkpoints."""
    import ray

    job = resolved.job
    shipped = portable(job)
    waiting = pending(state, partition_states)
    task = ray.remote(run_partition)
    before = totals(partition_states.values())
    total = resolved.info.count if resolved.residual_filter == job.filter else None
    running: dict[Any, Partition] = {}
    with Progress(job.name, total, before.read, stream=progress_stream) as progress:
        read_back = CheckpointProgress(resolved, before, progress)
        try:
            while waiting or running:
                while waiting and len(running) < job.concurrency:
                    partition = waiting.pop(0)
                    options = task.options(
                        name=f"qmigrate {job.name} partition {partition.key}",
                        num_cpus=job.executor.num_cpus_per_task,
                        max_retries=TASK_RETRIES,
                    )
                    running[options.remote(shipped, partition)] = partition
                ready, _ = ray.wait(list(running), num_returns=1, timeout=POLL_SECONDS)
                for ref in ready:
                    counters.add(retries=_outcome(ref, running.pop(ref), job))
                read_back.poll()
        finally:
            for ref in running:  # the first failure (or Ctrl-C) stops the other partitions
                ray.cancel(ref)
        after = read_back.final()
    counters.add(**after.since(before))


def _outcome(ref: Any, partition: Partition, job: Job) -> int:
    """A finished task's retry count, or its failure as one line."""
    import ray

    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as exc:
        cause = exc.cause
        if isinstance(cause, QmigrateError):
            raise cause.with_traceback(None) from None
        raise QmigrateError(
            f"job '{job.name}': partition {partition.key} failed: {describe(cause)}"
        ) from None
    except ray.exceptions.RayError as exc:
        raise QmigrateError(
            f"job '{job.name}': partition {partition.key}: its Ray task was lost "
            f"{TASK_RETRIES + 1} times ({type(exc).__name__}); the next apply resumes it "
            "from its checkpoint"
        ) from None
