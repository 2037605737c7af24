"""The run of one job: refusals, job lease, collection set-up, start state, bulk load, the
executor, and the count check at the end."""

from __future__ import annotations

import time
from typing import Any

from qmigrate.checkpoint import JobState, PartitionState
from qmigrate.engine.counts import CountCheckFailed, Counters, Summary, count_check
from qmigrate.engine.executors import executor
from qmigrate.engine.lease import JobLease
from qmigrate.engine.preflight import _same_collection, refusals
from qmigrate.engine.steps import DROP_AND_RECREATE, Steps, steps
from qmigrate.engine.wiring import Resolved, before_data_moves
from qmigrate.errors import QmigrateError
from qmigrate.retry import describe, retried
from qmigrate.target import DEFAULT_HNSW_M


def start_state(
    resolved: Resolved, todo: Steps, created: bool
) -> tuple[JobState, dict[str, PartitionState]]:
    """Resume what the checkpoints hold, or start over (`todo.starts_over`: the restart
    policy, or no checkpoints) and save a new job state.

    Conflicts were refused before any write (`refusals`).
    """
    job, store, state = resolved.job, resolved.store, resolved.state
    if not todo.starts_over:
        assert state is not None
        return state, resolved.partition_states
    hnsw_m_before = None
    created_before = False
    if state is not None:
        if job.restart == "restart":
            # An interrupted bulk load left m=0 behind: remember the value from before it.
            hnsw_m_before = state.hnsw_m_before
            created_before = state.created_collection and _same_collection(state, resolved)
        retried(lambda: store.delete(job.name), f"job '{job.name}': deleting old checkpoints")
    if job.on_invalid == "dead_letter":
        job.dead_letter_path.unlink(missing_ok=True)  # a fresh run writes its own
    with before_data_moves(resolved.source):
        partitions = resolved.source.partitions(job.partition_count)
    state = JobState(
        fingerprint=job.fingerprint(),
        partitions=partitions,
        target_count_before=retried(resolved.target.count, f"job '{job.name}': counting"),
        hnsw_m_before=hnsw_m_before,
        fingerprint_parts=job.fingerprint_parts(),
        source_identity=resolved.source_identity,
        target=resolved.target.identity,
        created_collection=created or created_before,
    )
    retried(lambda: store.save_job(job.name, state), f"job '{job.name}': saving the job state")
    return state, {}


def apply(resolved: Resolved, progress_stream: Any = None, wait: bool = False) -> Summary:
    """Run one job to the end, or raise with its checkpoints intact.

    The run holds the job's lease throughout, so two applies of one job never interleave;
    `wait` waits for a lease held by another run instead of refusing.
    """
    reasons = refusals(resolved)
    if reasons:
        raise QmigrateError("; ".join(reasons))
    executor(resolved.job).prepare(resolved.job)  # an unreachable cluster is refused here too
    # Nothing was written up to here: every refusal comes before the first write.
    with JobLease(resolved.store, resolved.job, wait, resolved.warn):
        _reload_checkpoints(resolved)  # what a run that held the lease before us saved
        reasons = refusals(resolved)
        if reasons:
            raise QmigrateError("; ".join(reasons))
        return _apply(resolved, progress_stream)


def _reload_checkpoints(resolved: Resolved) -> None:
    store, name = resolved.store, resolved.job.name
    resolved.state = store.load_job(name)
    resolved.partition_states = store.load_partitions(name) if resolved.state else {}


def _apply(resolved: Resolved, progress_stream: Any) -> Summary:
    job, target = resolved.job, resolved.target
    started = time.monotonic()
    todo = steps(resolved)
    if todo.already_done:
        _give_indexing_back(resolved, resolved.state)  # a run killed before it could
        _settle(resolved)  # and before its barrier
        return _summary(
            resolved, resolved.state, resolved.partition_states, Counters(), started, "already done"
        )
    # Set-up and bookkeeping calls ride out transient failures, like the writes do.
    job_label = f"job '{job.name}'"
    if todo.collection == DROP_AND_RECREATE:
        retried(target.drop, f"{job_label}: dropping the collection")
    created = todo.creates_collection
    if created:
        resolved.collection = target.create(resolved.layout, resolved.info)
        created = resolved.collection is None  # else another run made it first
    retried(
        lambda: target.create_payload_indexes(todo.payload_indexes),
        f"{job_label}: creating payload indexes",
    )
    state, partition_states = start_state(resolved, todo, created)
    if job.target.bulk_load:
        if state.hnsw_m_before is None:
            state.hnsw_m_before = _indexing_m(resolved)
            retried(lambda: resolved.store.save_job(job.name, state), f"{job_label}: saving")
        retried(lambda: target.set_hnsw_m(0), f"{job_label}: switching HNSW indexing off")
    counters = Counters()
    try:
        executor(job).run_partitions(resolved, state, partition_states, counters, progress_stream)
    except BaseException:
        if (failure := _indexing_not_given_back(resolved, state)) is not None:
            resolved.warn(  # the run's own error is the one raised
                f"warning: could not restore HNSW indexing (m={state.hnsw_m_before}): "
                f"{failure}; the next apply tries again"
            )
        raise
    _give_indexing_back(resolved, state)
    _settle(resolved)
    partition_states = retried(
        lambda: resolved.store.load_partitions(job.name), f"{job_label}: reading checkpoints"
    )
    return _summary(resolved, state, partition_states, counters, started, "done")


def _settle(resolved: Resolved) -> None:
    """Where data went with wait=false, wait for the server to apply it before it is counted
    (the count check, `verify`): one barrier per job, after every partition's last write."""
    if resolved.target.acknowledge_only:
        retried(
            resolved.target.barrier,
            f"job '{resolved.job.name}': waiting for the target to apply the writes",
        )


def _indexing_m(resolved: Resolved) -> int:
    """The HNSW m a bulk load must give back; m=0 now means an earlier load never did."""
    m = resolved.target.hnsw_m()
    if m == 0:
        m = resolved.info.collection_settings.get("hnsw_config", {}).get("m") or DEFAULT_HNSW_M
    return m


def _give_indexing_back(resolved: Resolved, state: JobState | None) -> None:
    """Restore the m a bulk load switched off, or raise saying it could not."""
    if (failure := _indexing_not_given_back(resolved, state)) is not None:
        assert state is not None
        raise QmigrateError(
            f"job '{resolved.job.name}': restoring HNSW indexing (m={state.hnsw_m_before}) "
            f"failed: {failure}; the next apply tries again"
        )


def _indexing_not_given_back(resolved: Resolved, state: JobState | None) -> str | None:
    """Restore the m a bulk load switched off, whenever it is still off: after the load, after
    a failure, and on the next run after a kill (even with bulk_load since turned off).
    Returns why that failed, if it did."""
    if state is None or not state.hnsw_m_before:
        return None
    try:
        if resolved.target.hnsw_m() == 0:
            resolved.target.set_hnsw_m(state.hnsw_m_before)
    except Exception as exc:
        return describe(exc)
    return None


def _summary(
    resolved: Resolved,
    state: JobState | None,
    partition_states: dict[str, PartitionState],
    counters: Counters,
    started: float,
    status: str,
) -> Summary:
    job = resolved.job
    counts = count_check(resolved, state, partition_states)
    summary = Summary(
        job=job.name,
        status=status,
        read=counters.read,
        written=counters.written,
        filtered=counters.filtered,
        invalid=counters.invalid,
        duplicates=counts.duplicates,
        retries=counters.retries,
        elapsed=time.monotonic() - started,
        partitions=len(state.partitions) if state else 0,
        total_points=counts.total_points,
        target_count=counts.target_count,
        count_check="ok" if not counts.problems else "; ".join(counts.problems),
        passed_over=counters.passed_over,
        references_dropped=counters.references_dropped,
        dead_letter=str(job.dead_letter_path) if counters.invalid else None,
        notes=counts.notes + _transport_notes(resolved),
    )
    if counts.problems:
        raise CountCheckFailed(summary)
    return summary


def _transport_notes(resolved: Resolved) -> list[str]:
    """A server written to over REST because no gRPC answered: said once, in the summary."""
    connection = resolved.target.connection
    return [f"target written over {connection.transport}"] if connection.no_grpc else []
