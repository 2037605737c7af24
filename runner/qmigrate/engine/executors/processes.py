"""The process executor: a job's partitions in worker processes of this machine.

Threads share one interpreter and so about one core; a worker process has its own. Each
worker runs what a Ray task runs (`elsewhere.run_partition`): the engine's own code, under
a partition lease, from the cursor the last attempt saved, so workers coordinate only
through the checkpoint store. The parent keeps at most `executor.workers` running, reads
progress and this run's counts back from the checkpoints, and starts a worker that died (a
SIGKILL, the OOM killer) again. Workers ignore SIGINT: on Ctrl-C, SIGTERM or a failure the parent says stop down each worker's stop pipe, and
every worker stops after its page with its checkpoint saved; a parent that died closes the
pipes, which stops them too.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.connection
import signal
import sys
import threading
from dataclasses import dataclass
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
from qmigrate.redaction import RedactingStream
from qmigrate.retry import describe
from qmigrate.sources import source_type
from qmigrate.spec import Job

RESTARTS = 3  # times a partition's worker is started again after it died
STOP_SECONDS = 60.0  # how long a stopping worker may take to save its checkpoint


def refusals(job: Job) -> list[str]:
    """Why a job cannot run in worker processes, found before anything is written."""
    reasons = local_mode_refusal(job)
    source = job.source
    if source_type(source["type"]).owned_by_one_process(source):
        reasons.append(
            f"this {source['type']} source is an embedded database that one process at a "
            "time opens, so worker processes cannot share it: use executor local"
        )
    return reasons


def prepare(job: Job) -> None:
    """Nothing to join: the workers start with the partitions."""


@dataclass
class _Worker:
    partition: Partition
    process: Any  # multiprocessing's SpawnProcess
    results: multiprocessing.connection.Connection
    stop: multiprocessing.connection.Connection
    starts: int


def run_partitions(
    resolved: Resolved,
    state: JobState,
    partition_states: dict[str, PartitionState],
    counters: Counters,
    progress_stream: Any,
) -> None:
    """At most `job.concurrency` workers at once, one partition each."""
    job = resolved.job
    shipped = portable(job)
    waiting = [(p, 1) for p in pending(state, partition_states)]
    # spawn: a fresh interpreter, not a fork of one holding threads, locks and gRPC channels
    context = multiprocessing.get_context("spawn")
    before = totals(partition_states.values())
    total = resolved.info.count if resolved.residual_filter == job.filter else None
    running: list[_Worker] = []
    with Progress(job.name, total, before.read, stream=progress_stream) as progress:
        read_back = CheckpointProgress(resolved, before, progress)
        try:
            while waiting or running:
                while waiting and len(running) < job.concurrency:
                    partition, starts = waiting.pop(0)
                    running.append(_start(context, shipped, partition, starts))
                ended = multiprocessing.connection.wait(
                    [w.process.sentinel for w in running], timeout=POLL_SECONDS
                )
                for worker in [w for w in running if w.process.sentinel in ended]:
                    running.remove(worker)
                    again = _outcome(worker, job, counters)
                    if again:
                        waiting.insert(0, (worker.partition, worker.starts + 1))
                read_back.poll()
        finally:
            _stop(running)  # the first failure, Ctrl-C or SIGTERM stops every partition
        after = read_back.final()
    counters.add(**after.since(before))


def _start(context: Any, job: Job, partition: Partition, starts: int) -> _Worker:
    receiving, sending = context.Pipe(duplex=False)
    stop_receiving, stop_sending = context.Pipe(duplex=False)
    process = context.Process(
        target=_work,
        args=(job, partition, sending, stop_receiving),
        name=f"qmigrate {job.name} partition {partition.key}",
    )
    # A terminal's Ctrl-C reaches the whole process group: the worker inherits SIGINT
    # ignored (an exec keeps that), so it stops only when told, never halfway through an
    # import. Blocked meanwhile, a Ctrl-C for this process waits until its handler is back.
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    handler = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        process.start()
    finally:
        signal.signal(signal.SIGINT, handler)
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
    sending.close()  # the worker holds its ends: a dead worker leaves the pipe at EOF
    stop_receiving.close()
    return _Worker(partition, process, receiving, stop_sending, starts)


def _outcome(worker: _Worker, job: Job, counters: Counters) -> bool:
    """Count a finished worker's retries, or raise its failure; True: start it again."""
    worker.process.join()
    try:
        result = worker.results.recv()
    except EOFError:
        result = None
    worker.results.close()
    worker.stop.close()
    if result is None:  # died without a word: killed
        if worker.starts > RESTARTS:
            raise QmigrateError(
                f"job '{job.name}': partition {worker.partition.key}: its worker process died "
                f"{worker.starts} times (exit {worker.process.exitcode}); the next apply "
                "resumes it from its checkpoint"
            )
        return True
    kind, value, exit_code = result
    if kind == "error":
        raise QmigrateError(value, exit_code)
    counters.add(retries=value)
    return False


def _stop(running: list[_Worker]) -> None:
    """Tell the workers still running to stop after their page, and wait while they save
    their checkpoints; one that hangs is killed."""
    for worker in running:
        with contextlib.suppress(OSError):  # a worker that died has closed its end
            worker.stop.send(None)
    for worker in running:
        worker.process.join(STOP_SECONDS)
        if worker.process.is_alive():
            worker.process.kill()
            worker.process.join()
        worker.results.close()
        worker.stop.close()


def _work(
    job: Job,
    partition: Partition,
    results: multiprocessing.connection.Connection,
    stopping: multiprocessing.connection.Connection,
) -> None:
    """A worker process: one partition, its result sent back as (kind, value, exit code)."""
    sys.stdout, sys.stderr = RedactingStream(sys.stdout), RedactingStream(sys.stderr)
    stop = threading.Event()  # the engine's stop: set by a word (or EOF) on `stopping`
    threading.Thread(target=_stop_when_told, args=(stopping, stop), daemon=True).start()
    try:
        results.send(("done", run_partition(job, partition, stop), 0))
    except QmigrateError as exc:
        results.send(("error", exc.message, exc.exit_code))
    except Exception as exc:
        message = f"job '{job.name}': partition {partition.key} failed: {describe(exc)}"
        results.send(("error", message, 1))
    finally:
        results.close()


def _stop_when_told(stopping: multiprocessing.connection.Connection, stop: threading.Event) -> None:
    with contextlib.suppress(EOFError, OSError):
        stopping.recv()
    stop.set()
