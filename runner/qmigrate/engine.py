"""The one loop: partitions -> read -> filter -> map -> write -> checkpoint.

Every source shares it. Sources only describe and yield pages; retries, checkpoints,
concurrency and progress live here, once.
"""

from __future__ import annotations

import collections
import contextlib
import os
import queue
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from typing import Any

from qdrant_client import models

from qmigrate import dead_letter, retry
from qmigrate.checkpoint import (
    CheckpointStore,
    FileStore,
    JobState,
    Lease,
    PartitionState,
    TargetStore,
)
from qmigrate.counts import count_check
from qmigrate.errors import QmigrateError
from qmigrate.mapping import ClientFilter, InvalidRecord, Mapper
from qmigrate.progress import Progress
from qmigrate.records import CursorLost, Page, Partition, Record, SourceInfo
from qmigrate.retry import Backoff, T, describe, retried
from qmigrate.sources import create_source
from qmigrate.sources.base import Source
from qmigrate.spec import Job
from qmigrate.target import DEFAULT_HNSW_M, REQUEST_BYTES, Layout, QdrantTarget, target_layout

PREFETCH_PAGES = 2


@dataclass
class Resolved:
    """A job joined to its live systems: everything plan shows and apply acts on."""

    job: Job
    source: Source
    info: SourceInfo
    residual_filter: dict[str, Any] | None
    target: QdrantTarget
    layout: Layout
    collection: models.CollectionInfo | None
    store: CheckpointStore
    state: JobState | None
    partition_states: dict[str, PartitionState]
    source_identity: dict[str, Any]

    def close(self) -> None:
        self.source.close()
        self.target.close()

    @property
    def payload_indexes(self) -> dict[str, str]:
        return {**self.info.payload_indexes, **self.job.target.payload_indexes}

    @property
    def fingerprint_changed(self) -> bool:
        return self.state is not None and self.state.fingerprint != self.job.fingerprint()

    @property
    def finished(self) -> bool:
        return (
            self.state is not None
            and not self.fingerprint_changed
            and all(
                self.partition_states.get(p.key, PartitionState(p.key)).done
                for p in self.state.partitions
            )
        )


def open_store(job: Job, target: QdrantTarget) -> CheckpointStore:
    if job.checkpoint_store == "file":
        return FileStore(job.checkpoint_path)
    return TargetStore(target.connection)


@contextlib.contextmanager
def checkpoint_store(job: Job) -> Iterator[CheckpointStore]:
    """The job's checkpoints alone, without connecting to its source (status, reset)."""
    if job.checkpoint_store == "file":
        yield FileStore(job.checkpoint_path)
        return
    target = QdrantTarget(job.target, read_only=True)
    try:
        yield open_store(job, target)
    finally:
        target.close()


def resolve(job: Job, read_only: bool = False) -> Resolved:
    """Connect to both ends and check they fit; writes nothing.

    `read_only` (plan) also creates nothing: a target directory that does not exist yet
    is described as empty instead of being made.
    """
    retry.give_up_after(job.give_up_after)  # every retry of this job, wherever it is made
    with contextlib.ExitStack() as opened:  # closes what was opened if anything fails
        source = create_source(job.source, job.batch_size, job.give_up_after)
        opened.callback(source.close)
        with before_data_moves(source):
            # push_down first, so describe() can report what the source will be asked for.
            residual = source.push_down(job.filter)
            info = source.describe()
            identity = getattr(source, "resume_identity", dict)()
        target = QdrantTarget(job.target, read_only=read_only)
        opened.callback(target.close)
        layout = target_layout(info, job.mapping, job.target)
        collection = target.existing()
        store = open_store(job, target)
        state = store.load_job(job.name)
        partition_states = store.load_partitions(job.name) if state else {}
        opened.pop_all()  # success: the caller closes them (Resolved.close)
    return Resolved(
        job,
        source,
        info,
        residual,
        target,
        layout,
        collection,
        store,
        state,
        partition_states,
        identity,
    )


@contextlib.contextmanager
def before_data_moves(source: Source) -> Iterator[None]:
    """Connecting to, describing or splitting a source fails in one line that names it, for
    every source: `source <label>: <cause>`. A QmigrateError passes as it is."""
    try:
        yield
    except QmigrateError:
        raise
    except Exception as exc:
        raise QmigrateError(f"source {source.label}: {source.explain(exc)}") from None


def refusals(resolved: Resolved) -> list[str]:
    """Every reason `apply` would stop before writing anything; `plan` reports the same."""
    from qmigrate import executor_ray  # imports Ray only when a job asks for it

    job, state = resolved.job, resolved.state
    reasons = executor_ray.refusals(job)
    if job.on_invalid == "dead_letter" and (refused := dead_letter.refusal(job.dead_letter_path)):
        reasons.append(refused)
    if job.restart == "recreate":
        if not _may_recreate(resolved):
            reasons.append(
                f"restart: recreate drops only a collection this job created, and "
                f"'{job.target.collection}' existed before it (or its checkpoints are gone): "
                "delete the collection yourself, or use restart: restart"
            )
    else:
        reasons += _target_problems(resolved)
    if state is not None and job.restart in ("resume", "fail"):
        conflicts = _resume_conflicts(resolved)
        reasons += conflicts
        if job.restart == "fail" and not conflicts and not resolved.finished:
            reasons.append(
                f"job '{job.name}' has an unfinished run and restart is fail: "
                "resume it with restart: resume, or run `qmigrate reset`"
            )
    return reasons


def _may_recreate(resolved: Resolved) -> bool:
    state = resolved.state
    if state is None:
        return resolved.collection is None
    return state.created_collection and _same_collection(state, resolved)


def _same_collection(state: JobState, resolved: Resolved) -> bool:
    return state.target is None or state.target["collection"] == resolved.job.target.collection


def _target_problems(resolved: Resolved) -> list[str]:
    job = resolved.job
    if resolved.collection is None:
        if job.target.on_missing == "fail":
            return [
                f"target collection '{job.target.collection}' does not exist "
                "(target.on_missing is fail)"
            ]
        return []
    problems = resolved.target.mismatches(resolved.collection, resolved.layout)
    if problems:
        return [
            f"target collection '{job.target.collection}' is incompatible: " + "; ".join(problems)
        ]
    return []


def _resume_conflicts(resolved: Resolved) -> list[str]:
    """Why the saved checkpoints do not describe this job's data any more."""
    job, state = resolved.job, resolved.state
    assert state is not None
    conflicts = []
    if resolved.fingerprint_changed:
        conflicts.append(
            f"job '{job.name}' changed since its checkpoints were written "
            f"({_what_changed(state, job)}): resuming could mix two different migrations. "
            "Set restart: restart, or run `qmigrate reset`"
        )
    for what, how in _identity_changes(state.source_identity, resolved.source_identity):
        conflicts.append(
            f"source {what} changed since the checkpoints were written ({how}): "
            "use restart: restart"
        )
    here = resolved.target.identity
    if job.checkpoint_store == "file" and state.target is not None and state.target != here:
        conflicts.append(
            f"checkpoint file {job.checkpoint_path} holds job '{job.name}' for collection "
            f"'{state.target['collection']}' at {state.target['location']}, not "
            f"'{here['collection']}' at {here['location']}: give checkpoint.path another "
            "file, or set restart: restart"
        )
    return conflicts


def _what_changed(state: JobState, job: Job) -> str:
    if state.fingerprint_parts is None:  # checkpoints from before parts were recorded
        return f"fingerprint {state.fingerprint} -> {job.fingerprint()}"
    now = job.fingerprint_parts()
    saved = state.fingerprint_parts
    changed = sorted(k for k in saved.keys() | now.keys() if saved.get(k) != now.get(k))
    return "changed: " + ", ".join(changed)


def _identity_changes(saved: dict[str, Any] | None, now: dict[str, Any]) -> list[tuple[str, str]]:
    if saved is None:
        return []
    changes = []
    for what in sorted(saved.keys() | now.keys()):
        before, after = saved.get(what), now.get(what)
        if before == after:
            continue
        if before is None:
            changes.append((what, "it is new"))
        elif after is None:
            changes.append((what, "it is gone"))
        else:
            fields = [
                k for k in sorted(before.keys() | after.keys()) if before.get(k) != after.get(k)
            ]
            changes.append((what, "/".join(fields)))
    return changes


# --- apply ------------------------------------------------------------------------------


@dataclass
class Counters:
    read: int = 0
    written: int = 0
    filtered: int = 0
    invalid: int = 0
    duplicates: int = 0
    retries: int = 0
    passed_over: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **amounts: int) -> None:
        with self.lock:
            for name, amount in amounts.items():
                setattr(self, name, getattr(self, name) + amount)


@dataclass
class Summary:
    job: str
    status: str  # done | already done
    read: int
    written: int
    filtered: int
    invalid: int
    duplicates: int  # records whose ID another record of the job also had
    retries: int
    elapsed: float
    partitions: int
    total_points: int
    target_count: int
    count_check: str
    passed_over: int = 0  # entries the source came across but does not hold (Page.passed_over)
    dead_letter: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.written / self.elapsed if self.elapsed > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["rate"] = round(self.rate, 1)
        data["elapsed"] = round(self.elapsed, 3)
        return data


def start_state(resolved: Resolved, created: bool) -> tuple[JobState, dict[str, PartitionState]]:
    """Apply the restart policy to what the checkpoints hold; save a new job state if needed.

    Conflicts were refused before any write (`refusals`): what remains is resuming, or
    starting over.
    """
    job, store, state = resolved.job, resolved.store, resolved.state
    if state is not None and job.restart in ("resume", "fail"):
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
    if resolved.job.executor.type == "ray":
        from qmigrate import executor_ray

        executor_ray.connect(resolved.job)  # an unreachable cluster is refused here too
    # Nothing was written up to here: every refusal comes before the first write.
    with JobLease(resolved.store, resolved.job, wait):
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
    if resolved.finished and job.restart in ("resume", "fail"):
        _give_indexing_back(resolved, resolved.state)  # a run killed before it could
        _settle(resolved)  # and before its barrier
        return _summary(
            resolved, resolved.state, resolved.partition_states, Counters(), started, "already done"
        )
    # Set-up and bookkeeping calls ride out transient failures, like the writes do.
    job_label = f"job '{job.name}'"
    if job.restart == "recreate" and resolved.collection is not None:
        retried(target.drop, f"{job_label}: dropping the collection")
        resolved.collection = None
    created = resolved.collection is None
    if created:
        resolved.collection = target.create(resolved.layout, resolved.info)
        created = resolved.collection is None  # else another run made it first
    indexes = target.missing_payload_indexes(resolved.payload_indexes, resolved.collection)
    retried(
        lambda: target.create_payload_indexes(indexes), f"{job_label}: creating payload indexes"
    )
    state, partition_states = start_state(resolved, created)
    if job.target.bulk_load:
        if state.hnsw_m_before is None:
            state.hnsw_m_before = _indexing_m(resolved)
            retried(lambda: resolved.store.save_job(job.name, state), f"{job_label}: saving")
        retried(lambda: target.set_hnsw_m(0), f"{job_label}: switching HNSW indexing off")
    counters = Counters()
    try:
        run = _run_partitions
        if job.executor.type == "ray":
            from qmigrate.executor_ray import run_partitions as run
        run(resolved, state, partition_states, counters, progress_stream)
    except BaseException:
        _give_indexing_back(resolved, state, quiet=True)
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


class JobLease:
    """A claim on a job in its checkpoint store, renewed while the run lives.

    Stores offer no compare-and-swap, so a claim is written, then read back after a short
    pause: of two runs that claimed at once, the one whose write landed last holds it, and
    the other sees that and steps back. A claim of a process of this machine that is gone is
    taken over at once; one from elsewhere expires after `lease_seconds`.
    """

    SETTLE = 0.3  # seconds between writing a claim and reading it back

    def __init__(self, store: CheckpointStore, job: Job, wait: bool) -> None:
        self.store = store
        self.job = job
        self.wait = wait
        self.holder = f"{socket.gethostname()} pid {os.getpid()} ({uuid.uuid4().hex[:8]})"
        self.stop = threading.Event()
        self.heartbeat = threading.Thread(target=self._renew, name="lease", daemon=True)

    def __enter__(self) -> JobLease:
        while True:
            current = self._load()
            if current is None or current.stale() or current.holder == self.holder:
                self._claim()
                time.sleep(self.SETTLE)
                current = self._load()
                if current is not None and current.holder == self.holder:
                    break
            if not self.wait:
                until = time.strftime("%H:%M:%S", time.localtime(current.expires))
                raise QmigrateError(
                    f"job '{self.job.name}' is being applied by {current.holder} (its lease "
                    f"runs until {until} and is renewed while it lives): wait for it with "
                    "`apply --wait`; a run that was killed lets go when its lease expires"
                )
            time.sleep(1)
        self.heartbeat.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        if self.heartbeat.is_alive():
            self.heartbeat.join()
        # One try, no retries: a store that stopped answering has already held the run up
        # for retry.give_up_after, and an unreleased lease only expires.
        with contextlib.suppress(Exception):
            current = self.store.load_lease(self.job.name)
            if current is not None and current.holder == self.holder:
                self.store.save_lease(self.job.name, None)

    def _load(self) -> Lease | None:
        return retried(lambda: self.store.load_lease(self.job.name), "reading the job's lease")

    def _claim(self) -> None:
        lease = Lease(
            self.holder, time.time() + self.job.lease_seconds, socket.gethostname(), os.getpid()
        )
        retried(lambda: self.store.save_lease(self.job.name, lease), "claiming the job's lease")

    def _renew(self) -> None:
        while not self.stop.wait(self.job.lease_seconds / 3):
            try:
                current = self._load()
                if current is not None and current.holder != self.holder:
                    print(
                        f"qmigrate: warning: job '{self.job.name}': the lease expired and "
                        f"{current.holder} took it over; this run no longer renews it",
                        file=sys.stderr,
                    )
                    return
                self._claim()
            except QmigrateError as exc:
                print(f"qmigrate: warning: {exc}", file=sys.stderr)


def _indexing_m(resolved: Resolved) -> int:
    """The HNSW m a bulk load must give back; m=0 now means an earlier load never did."""
    m = resolved.target.hnsw_m()
    if m == 0:
        m = resolved.info.collection_settings.get("hnsw_config", {}).get("m") or DEFAULT_HNSW_M
    return m


def _give_indexing_back(resolved: Resolved, state: JobState | None, quiet: bool = False) -> None:
    """Restore the m a bulk load switched off, whenever it is still off: after the load, after
    a failure, and on the next run after a kill (even with bulk_load since turned off)."""
    if state is None or not state.hnsw_m_before:
        return
    try:
        if resolved.target.hnsw_m() == 0:
            resolved.target.set_hnsw_m(state.hnsw_m_before)
    except Exception as exc:
        if not quiet:
            raise QmigrateError(
                f"job '{resolved.job.name}': restoring HNSW indexing (m={state.hnsw_m_before}) "
                f"failed: {describe(exc)}; the next apply tries again"
            ) from None
        print(
            f"qmigrate: warning: could not restore HNSW indexing (m={state.hnsw_m_before}): "
            f"{describe(exc)}; the next apply tries again",
            file=sys.stderr,
        )


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


class CountCheckFailed(QmigrateError):
    """The data moved but the counts disagree; carries the summary for the report."""

    def __init__(self, summary: Summary) -> None:
        super().__init__(f"job '{summary.job}': count check failed: {summary.count_check}")
        self.summary = summary


def _run_partitions(
    resolved: Resolved,
    state: JobState,
    partition_states: dict[str, PartitionState],
    counters: Counters,
    progress_stream: Any,
) -> None:
    job = resolved.job
    states = {p.key: partition_states.get(p.key) or PartitionState(p.key) for p in state.partitions}
    pending = [(p, states[p.key]) for p in state.partitions if not states[p.key].done]
    already = sum(s.points + s.filtered + s.invalid for s in partition_states.values())
    total = resolved.info.count if resolved.residual_filter == job.filter else None
    stop = threading.Event()
    worker = PartitionWorker(resolved, counters, stop)
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


class PartitionWorker:
    """Moves one partition at a time; many run at once on the engine's thread pool."""

    def __init__(self, resolved: Resolved, counters: Counters, stop: threading.Event) -> None:
        self.job = resolved.job
        self.source = resolved.source
        self.target = resolved.target
        self.store = resolved.store
        self.mapper = Mapper(self.job.mapping, resolved.layout)
        self.filter = ClientFilter(resolved.residual_filter) if resolved.residual_filter else None
        self.counters = counters
        self.stop = stop
        self.progress: Progress | None = None
        self.dead_letters = dead_letter.DeadLetterFile(self.job.dead_letter_path)

    def run(self, partition: Partition, state: PartitionState) -> None:
        """Read, then map pages while earlier ones are written (`PageWriter`)."""
        while True:
            try:
                # As many offers collapse as requests can be out, so that saving keeps up.
                saver = CheckpointSaver(
                    self._save, self.dead_letters.append, self._advance, self.target.in_flight
                )
                with saver, self._writer(state, saver) as writer:
                    for page in self._pages(partition, state):
                        writer.put(self._prepare(page))
                break
            except CursorLost as exc:  # the writer has written what it held
                self._start_over(partition, state, exc)
        if not self.stop.is_set():
            state.done = True
            self._save(state)

    def _writer(self, state: PartitionState, saver: CheckpointSaver) -> PageWriter:
        def send(points: list[models.PointStruct], wait: bool) -> int:
            return self._retrying(
                lambda: self.target.upsert(points, wait), "writing to the target", "the target"
            )

        return PageWriter(
            send,
            lambda pages: self._record(pages, state, saver),
            in_flight=self.target.in_flight,
            acknowledge_only=self.target.acknowledge_only,
            stop=self.stop,
        )

    def _pages(self, partition: Partition, state: PartitionState) -> Iterator[Page]:
        """The partition's pages from its saved cursor; a transient read failure backs off
        and re-opens the source after the last page handed on. Only reading is retried here."""
        doing = f"job '{self.job.name}': reading from the source {self.source.label}"
        backoff = Backoff(doing, "the source", stop=self.stop)
        cursor = state.cursor
        while True:
            backoff.began()
            pages = prefetch(self.source.read(partition, cursor), self.stop)
            try:
                for page in pages:
                    backoff.succeeded()
                    yield page
                    cursor = page.cursor
                    backoff.began()  # the time the caller held the page is no wait
                return
            except CursorLost:
                raise
            except Exception as exc:
                if not backoff.failed(exc):
                    raise self._fatal(exc, "reading from the source") from exc
                self.counters.add(retries=1)
            finally:
                pages.close()

    def _start_over(self, partition: Partition, state: PartitionState, exc: CursorLost) -> None:
        """Forget a partition's progress: its points are written again, its counts anew."""
        print(
            f"qmigrate: job '{self.job.name}': partition {partition.key}: {exc}; "
            "reading it again from its start",
            file=sys.stderr,
        )
        state.cursor = None
        state.points = state.filtered = state.invalid = state.duplicates = 0
        self._save(state)

    def _prepare(self, page: Page) -> PreparedPage:
        """Filter and map a page; invalid records and duplicate IDs are decided here."""
        points: dict[Any, tuple[Record, models.PointStruct]] = {}
        rejected: list[str] = []
        filtered = duplicates = 0
        for record in page.records:
            if record.skipped or (self.filter is not None and not self.filter.matches(record)):
                filtered += 1
                continue
            try:
                point = self.mapper.to_point(record)
            except InvalidRecord as exc:
                rejected.append(self._rejection(record, str(exc)))
                continue
            earlier = points.pop(point.id, None)  # re-inserted: the last one read wins
            if earlier is not None:
                if self.job.on_duplicate == "fail":
                    raise QmigrateError(
                        f"job '{self.job.name}': {describe_record(earlier[0])} and "
                        f"{describe_record(record)} have one ID (on_duplicate is fail): "
                        "remove one from the source, or set on_duplicate: last_wins"
                    )
                duplicates += 1
            points[point.id] = (record, point)
        return PreparedPage(
            points=[point for _, point in points.values()],
            dead_letters=rejected,
            cursor=page.cursor,
            read=len(page.records),
            filtered=filtered,
            duplicates=duplicates,
            passed_over=page.passed_over,
        )

    def _record(
        self, pages: list[PreparedPage], state: PartitionState, saver: CheckpointSaver
    ) -> None:
        """Count acknowledged pages and save the cursor after the last: pages are recorded in
        order, so a saved cursor always means every point before it was acknowledged."""
        for page in pages:
            state.cursor = page.cursor
            state.points += len(page.points)
            state.filtered += page.filtered
            state.invalid += len(page.dead_letters)
            state.duplicates += page.duplicates
        # Dead letters go out with the checkpoint, so a replayed page does not repeat them.
        dead_letters = [line for page in pages for line in page.dead_letters]
        saver.offer(state, sum(page.read for page in pages), dead_letters)
        for page in pages:
            self.counters.add(
                read=page.read,
                written=len(page.points),
                filtered=page.filtered,
                invalid=len(page.dead_letters),
                duplicates=page.duplicates,
                passed_over=page.passed_over,
            )

    def _advance(self, read: int) -> None:
        """The bar counts records whose checkpoint is saved."""
        if self.progress is not None:
            self.progress.advance(read)

    def _save(self, state: PartitionState) -> None:
        state.updated_at = time.time()
        self._retrying(
            lambda: self.store.save_partition(self.job.name, state),
            "saving the checkpoint",
            "the checkpoint store",
        )

    def _retrying(self, call: Callable[[], T], doing: str, waiting_on: str) -> T:
        return retried(
            call,
            f"job '{self.job.name}': {doing}",
            self.stop,
            on_retry=lambda _exc: self.counters.add(retries=1),
            waiting_on=waiting_on,
        )

    def _rejection(self, record: Record, reason: str) -> str:
        """The dead-letter line for a record, or the error that stops the job."""
        if self.job.on_invalid != "dead_letter":
            raise QmigrateError(
                f"{describe_record(record)} cannot be migrated: {reason} "
                "(set on_invalid.action: dead_letter to set such records aside)"
            )
        return dead_letter.line(record, reason)

    def _fatal(self, exc: Exception, doing: str) -> Exception:
        if isinstance(exc, QmigrateError):
            return exc
        return QmigrateError(f"job '{self.job.name}': {doing} failed: {describe(exc)}")


def describe_record(record: Record) -> str:
    """How a message names a record: its ID, and where it came from when the source says."""
    if record.id is None:
        return f"the record at {record.origin}" if record.origin else "a record without an ID"
    where = f" ({record.origin})" if record.origin else ""
    return f"record {record.id!r}{where}"


@dataclass
class PreparedPage:
    """A page filtered and mapped, waiting to be written."""

    points: list[models.PointStruct]
    dead_letters: list[str]
    cursor: Any
    read: int
    filtered: int
    duplicates: int
    passed_over: int


class CheckpointSaver:
    """Saves a partition's newest state on a thread of its own, so that a checkpoint's round
    trip to the store never holds up the writes. While one save is under way, the states
    offered meanwhile collapse into the newest, up to `most` offers; the next waits for the
    saver to take them, which bounds what a kill leaves unsaved. A state's dead letters are
    written just before it is saved, so a replayed page does not repeat them; `on_saved`
    hears how many records each save covered. A failed save stops the partition: `offer`
    and the end of the block raise it. The end of the block waits for the last save."""

    def __init__(
        self,
        save: Callable[[PartitionState], None],
        dead_letter: Callable[[list[str]], None],
        on_saved: Callable[[int], None],
        most: int,
    ) -> None:
        self.save = save
        self.most = most
        self.offers = 0  # collapsed into `pending`
        self.dead_letter = dead_letter
        self.on_saved = on_saved
        self.pending: PartitionState | None = None
        self.pending_read = 0
        self.pending_dead_letters: list[str] = []
        self.closing = False
        self.error: BaseException | None = None
        self.changed = threading.Condition()
        self.thread = threading.Thread(target=self._run, name="checkpoint", daemon=True)

    def __enter__(self) -> CheckpointSaver:
        self.thread.start()
        return self

    def offer(self, state: PartitionState, read: int, dead_letters: list[str]) -> None:
        with self.changed:
            while self.offers >= self.most and self.error is None:
                self.changed.wait()
            if self.error is not None:
                raise self.error
            self.pending = replace(state)  # a snapshot: the writer goes on changing `state`
            self.pending_read += read
            self.pending_dead_letters += dead_letters
            self.offers += 1
            self.changed.notify_all()

    def __exit__(self, kind: Any, exc: Any, tb: Any) -> None:
        with self.changed:
            self.closing = True
            self.changed.notify_all()
        self.thread.join()
        if self.error is not None and self.error is not exc:
            raise self.error  # the first failure, even when the block ended with another

    def _run(self) -> None:
        while True:
            with self.changed:
                while self.pending is None and not self.closing:
                    self.changed.wait()
                state, self.pending = self.pending, None
                read, self.pending_read = self.pending_read, 0
                dead_letters, self.pending_dead_letters = self.pending_dead_letters, []
                self.offers = 0
                self.changed.notify_all()
            if state is None:
                return
            try:
                self.dead_letter(dead_letters)
                self.save(state)
                self.on_saved(read)
            except BaseException as exc:
                with self.changed:
                    self.error = exc
                    self.changed.notify_all()
                return


@dataclass
class Request:
    """One upsert out to the target, and the pages it carries (whole pages, in order)."""

    pages: list[PreparedPage]
    ids: set[Any]
    acknowledged: Future[int]  # the bytes sent


class PageWriter:
    """Writes prepared pages on threads of its own while the next ones are mapped.

    Up to `in_flight` upserts are out at once. Up to `in_flight` pages already queued when a
    request leaves join it, while it stays under about REQUEST_BYTES. Pages are recorded
    (counted, and offered to the checkpoint saver) in order, once they and every page before
    them are acknowledged, so resume stays exact; an ID still in flight makes the next
    request wait for its own, so the last page read still wins.

    A killed run so leaves at most (3 x in_flight + 1) x (in_flight + 1) pages written but
    not saved: the requests out, the one waiting to be offered, and the in_flight offers
    each of the saver's two states (the one being saved, the one pending) may hold, each
    request of at most in_flight + 1 pages.

    With `acknowledge_only` the data goes with wait=false; the job's barrier at its end
    (`QdrantTarget.barrier`) has the server apply it all.
    The first error stops it: `put` and the end of the block raise it. Once `stop` is set,
    `put` takes no more pages.
    """

    def __init__(
        self,
        send: Callable[[list[models.PointStruct], bool], int],
        record: Callable[[list[PreparedPage]], None],
        in_flight: int,
        acknowledge_only: bool,
        stop: threading.Event,
    ) -> None:
        self.send = send
        self.record = record
        self.in_flight = in_flight
        self.acknowledge_only = acknowledge_only
        self.stop = stop
        self.queue: queue.Queue[Any] = queue.Queue(maxsize=in_flight)
        self.closed = False  # `put` gave up on a stop: a later page must not follow the lost one
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="writer", daemon=True)
        self.bytes_per_point = 0.0  # of the last request: 0 until one is answered, and locally
        self.held: Any = None  # a page taken from the queue for the next request

    def __enter__(self) -> PageWriter:
        self.thread.start()
        return self

    def put(self, page: PreparedPage) -> None:
        while not self.closed:
            if self.error is not None:
                raise self.error
            try:
                self.queue.put(page, timeout=0.1)
                return
            except queue.Full:
                self.closed = self.stop.is_set() or not self.thread.is_alive()

    def __exit__(self, kind: Any, exc: Any, tb: Any) -> None:
        while self.thread.is_alive():
            try:
                self.queue.put(_DONE, timeout=0.1)
                break
            except queue.Full:
                continue
        self.thread.join()
        if self.error is not None and self.error is not exc:
            raise self.error  # the first failure, even when the block ended with another

    def _run(self) -> None:
        out: collections.deque[Request] = collections.deque()
        pool = ThreadPoolExecutor(self.in_flight, thread_name_prefix="upsert")
        try:
            while (taken := self._next_pages()) is not None:
                pages, ids = taken
                points = [point for page in pages for point in page.points]
                while out and (
                    len(out) >= self.in_flight or any(not ids.isdisjoint(r.ids) for r in out)
                ):
                    self._finish(out.popleft())
                out.append(Request(pages, ids, self._submit(pool, points)))
                while out and out[0].acknowledged.done():
                    self._finish(out.popleft())
            while out:
                self._finish(out.popleft())
        except BaseException as exc:
            self.error = exc  # what is still out is never recorded: an earlier page failed
        finally:
            # A failed writer does not wait for the other sends' retries; the stop that
            # follows the error ends them.
            pool.shutdown(wait=self.error is None, cancel_futures=True)

    def _next_pages(self) -> tuple[list[PreparedPage], set[Any]] | None:
        """The next page, joined by up to `in_flight` queued behind it while the request stays
        under its budget and their IDs do not repeat; with the request's IDs. None at the
        end, or once `stop` is set."""
        page = self.held if self.held is not None else self.queue.get()
        self.held = None
        if page is _DONE or self.stop.is_set():
            return None
        pages = [page]
        ids = {point.id for point in page.points}
        while (
            len(pages) <= self.in_flight
            and 0 < (len(ids) + 1) * self.bytes_per_point < REQUEST_BYTES
        ):
            try:
                queued = self.queue.get_nowait()
            except queue.Empty:
                break
            queued_ids = set() if queued is _DONE else {point.id for point in queued.points}
            if queued is _DONE or not ids.isdisjoint(queued_ids):
                self.held = queued  # the next request's
                break
            pages.append(queued)
            ids |= queued_ids
        return pages, ids

    def _submit(self, pool: ThreadPoolExecutor, points: list[models.PointStruct]) -> Future[int]:
        if not points:  # only filtered or invalid records: nothing to send
            done: Future[int] = Future()
            done.set_result(0)
            return done
        return pool.submit(self.send, points, not self.acknowledge_only)

    def _finish(self, request: Request) -> None:
        """Wait for a request's acknowledgement, then record its pages."""
        sent = request.acknowledged.result()
        points = sum(len(page.points) for page in request.pages)
        if points:
            self.bytes_per_point = sent / points
        self.record(request.pages)


_DONE = object()


def prefetch(pages: Iterator[Page], stop: threading.Event) -> Iterator[Page]:
    """Read the next pages in a background thread while the current one is written."""
    buffer: queue.Queue[Any] = queue.Queue(maxsize=PREFETCH_PAGES)
    abandoned = threading.Event()

    def put(item: Any) -> bool:
        while not (abandoned.is_set() or stop.is_set()):
            try:
                buffer.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for page in pages:
                if not put(page):
                    return
            put(_DONE)
        except BaseException as exc:
            put(exc)
        finally:
            close: Callable[[], None] | None = getattr(pages, "close", None)
            if close is not None:
                close()

    reader = threading.Thread(target=produce, name="prefetch", daemon=True)
    reader.start()
    try:
        while True:
            try:
                item = buffer.get(timeout=0.1)
            except queue.Empty:
                if stop.is_set():
                    return
                continue
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        abandoned.set()
        reader.join()
