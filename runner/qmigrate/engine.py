"""The one loop: partitions -> read -> filter -> map -> write -> checkpoint.

Every source shares it. Sources only describe and yield pages; retries, checkpoints,
concurrency and progress live here, once.
"""

from __future__ import annotations

import contextlib
import json
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any

from qdrant_client import models

from qmigrate.checkpoint import CheckpointStore, FileStore, JobState, PartitionState, TargetStore
from qmigrate.errors import QmigrateError
from qmigrate.mapping import ClientFilter, InvalidRecord, Mapper
from qmigrate.progress import Progress
from qmigrate.records import Page, Partition, Record, SourceInfo
from qmigrate.retry import Backoff, describe, is_transient
from qmigrate.sources import create_source
from qmigrate.sources.base import Source
from qmigrate.spec import Job
from qmigrate.target import DEFAULT_HNSW_M, Layout, QdrantTarget, target_layout

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
    target = QdrantTarget(job.target)
    try:
        yield open_store(job, target)
    finally:
        target.close()


def resolve(job: Job) -> Resolved:
    """Connect to both ends and check they fit; writes nothing."""
    if job.filter is not None:
        try:
            ClientFilter(job.filter)  # the whole filter, whatever part a source takes
        except ValueError as exc:
            raise QmigrateError(f"filter: not a valid Qdrant filter: {exc}") from None
    with contextlib.ExitStack() as opened:  # closes what was opened if anything fails
        source = create_source(job.source, job.batch_size)
        opened.callback(source.close)
        # push_down first, so describe() can report what the source will be asked for.
        residual = source.push_down(job.filter)
        info = source.describe()
        target = QdrantTarget(job.target)
        opened.callback(target.close)
        layout = target_layout(info, job.mapping, job.target)
        collection = target.existing()
        store = open_store(job, target)
        state = store.load_job(job.name)
        partition_states = store.load_partitions(job.name) if state else {}
        opened.pop_all()  # success: the caller closes them (Resolved.close)
    return Resolved(
        job, source, info, residual, target, layout, collection, store, state, partition_states
    )


def check_target(resolved: Resolved) -> None:
    """Refuse, before any write, a target that cannot take the data."""
    job = resolved.job
    if resolved.collection is None:
        if job.target.on_missing == "fail":
            raise QmigrateError(
                f"target collection '{job.target.collection}' does not exist "
                "(target.on_missing is fail)"
            )
        return
    problems = resolved.target.mismatches(resolved.collection, resolved.layout)
    if problems:
        raise QmigrateError(
            f"target collection '{job.target.collection}' is incompatible: " + "; ".join(problems)
        )


# --- apply ------------------------------------------------------------------------------


@dataclass
class Counters:
    read: int = 0
    written: int = 0
    filtered: int = 0
    invalid: int = 0
    retries: int = 0
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
    retries: int
    elapsed: float
    partitions: int
    total_points: int
    target_count: int
    count_check: str
    dead_letter: str | None = None

    @property
    def rate(self) -> float:
        return self.written / self.elapsed if self.elapsed > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["rate"] = round(self.rate, 1)
        data["elapsed"] = round(self.elapsed, 3)
        return data


def start_state(resolved: Resolved) -> tuple[JobState, dict[str, PartitionState]]:
    """Apply the restart policy to what the checkpoints hold; save a new job state if needed."""
    job, store, state = resolved.job, resolved.store, resolved.state
    hnsw_m_before = None
    if state is not None and (job.restart == "restart" or resolved.fingerprint_changed):
        if job.restart != "restart":
            raise QmigrateError(
                f"job '{job.name}' changed since its checkpoints were written "
                f"(fingerprint {state.fingerprint} -> {job.fingerprint()}): resuming could mix "
                "two different migrations. Set restart: restart, or run `qmigrate reset`."
            )
        # An interrupted bulk load left m=0 behind: remember the value from before it.
        hnsw_m_before = state.hnsw_m_before
        store.delete(job.name)
        state = None
    if state is not None:
        if job.restart == "fail" and not resolved.finished:
            raise QmigrateError(
                f"job '{job.name}' has an unfinished run and restart is fail: "
                "resume it with restart: resume, or run `qmigrate reset`"
            )
        return state, resolved.partition_states
    if job.on_invalid == "dead_letter":
        job.dead_letter_path.unlink(missing_ok=True)  # a fresh run writes its own
    state = JobState(
        fingerprint=job.fingerprint(),
        partitions=resolved.source.partitions(job.parallelism),
        target_count_before=resolved.target.count(),
        hnsw_m_before=hnsw_m_before,
    )
    store.save_job(job.name, state)
    return state, {}


def apply(resolved: Resolved, progress_stream: Any = None) -> Summary:
    """Run one job to the end, or raise with its checkpoints intact."""
    job, target = resolved.job, resolved.target
    started = time.monotonic()
    check_target(resolved)
    if resolved.finished and job.restart != "restart":
        _give_indexing_back(resolved, resolved.state)  # a run killed before it could
        return _summary(
            resolved, resolved.state, resolved.partition_states, Counters(), started, "already done"
        )
    if resolved.collection is None:
        target.create(resolved.layout, resolved.info)
    indexes = target.missing_payload_indexes(resolved.payload_indexes, resolved.collection)
    target.create_payload_indexes(indexes)
    state, partition_states = start_state(resolved)
    if job.target.bulk_load:
        if state.hnsw_m_before is None:
            state.hnsw_m_before = _indexing_m(resolved)
            resolved.store.save_job(job.name, state)
        target.set_hnsw_m(0)
    counters = Counters()
    try:
        _run_partitions(resolved, state, partition_states, counters, progress_stream)
    except BaseException:
        _give_indexing_back(resolved, state, quiet=True)
        raise
    _give_indexing_back(resolved, state)
    partition_states = resolved.store.load_partitions(job.name)
    return _summary(resolved, state, partition_states, counters, started, "done")


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
    states = list(partition_states.values())
    total_points = sum(s.points for s in states)
    total_read = total_points + sum(s.filtered + s.invalid for s in states)
    target_count = resolved.target.count()
    before = state.target_count_before if state else 0
    problems = []
    if before == 0 and target_count != total_points:
        problems.append(f"target holds {target_count:,} points, the job wrote {total_points:,}")
    elif target_count < total_points:
        problems.append(
            f"target holds {target_count:,} points, fewer than the {total_points:,} written"
        )
    count = resolved.info.count
    if resolved.job.filter is None and count is not None and total_read != count:
        problems.append(f"source holds {count:,} records, the job read {total_read:,}")
    summary = Summary(
        job=resolved.job.name,
        status=status,
        read=counters.read,
        written=counters.written,
        filtered=counters.filtered,
        invalid=counters.invalid,
        retries=counters.retries,
        elapsed=time.monotonic() - started,
        partitions=len(state.partitions) if state else 0,
        total_points=total_points,
        target_count=target_count,
        count_check="ok" if not problems else "; ".join(problems),
        dead_letter=str(resolved.job.dead_letter_path) if counters.invalid else None,
    )
    if problems:
        raise CountCheckFailed(summary)
    return summary


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
        self.dead_letter_lock = threading.Lock()

    def run(self, partition: Partition, state: PartitionState) -> None:
        for page in self._pages(partition, state):
            self._move(page, state)
        if not self.stop.is_set():
            state.done = True
            self._save(state)

    def _pages(self, partition: Partition, state: PartitionState) -> Iterator[Page]:
        """The partition's pages from its saved cursor; a transient read failure backs off
        and re-opens the source at the last saved cursor. Only reading is retried here."""
        backoff = Backoff(stop=self.stop)
        failures = 0
        while True:
            pages = prefetch(self.source.read(partition, state.cursor), self.stop)
            try:
                for page in pages:
                    failures = 0
                    yield page
                return
            except Exception as exc:
                failures += 1
                if not is_transient(exc) or not backoff.wait(failures, exc):
                    raise self._fatal(exc, "reading from the source") from exc
                self.counters.add(retries=1)
            finally:
                pages.close()

    def _move(self, page: Page, state: PartitionState) -> None:
        points = []
        rejected: list[tuple[Record, str]] = []
        filtered = 0
        for record in page.records:
            if record.skipped or (self.filter is not None and not self.filter.matches(record)):
                filtered += 1
                continue
            try:
                points.append(self.mapper.to_point(record))
            except InvalidRecord as exc:
                rejected.append((record, self._rejection(record, str(exc))))
        batch = self.job.batch_size
        for start in range(0, len(points), batch):
            chunk = points[start : start + batch]
            self._retrying(lambda chunk=chunk: self.target.upsert(chunk), "writing to the target")
        # Dead letters go out with the checkpoint, so a replayed page does not repeat them.
        self._dead_letter([line for _, line in rejected])
        state.cursor = page.cursor
        state.points += len(points)
        state.filtered += filtered
        state.invalid += len(rejected)
        self._save(state)
        read = len(page.records)
        self.counters.add(read=read, written=len(points), filtered=filtered, invalid=len(rejected))
        if self.progress is not None:
            self.progress.advance(read)

    def _save(self, state: PartitionState) -> None:
        state.updated_at = time.time()
        self._retrying(
            lambda: self.store.save_partition(self.job.name, state), "saving the checkpoint"
        )

    def _retrying(self, call: Callable[[], Any], doing: str) -> None:
        try:
            Backoff(stop=self.stop).call(call, on_retry=lambda _exc: self.counters.add(retries=1))
        except Exception as exc:
            raise self._fatal(exc, doing) from exc

    def _rejection(self, record: Record, reason: str) -> str:
        """The dead-letter line for a record, or the error that stops the job."""
        if self.job.on_invalid != "dead_letter":
            raise QmigrateError(
                f"record {record.id!r} cannot be migrated: {reason} "
                "(set on_invalid.action: dead_letter to set such records aside)"
            )
        fields = {
            "id": record.id,
            "error": reason,
            "payload": record.payload,
            "vectors": record.vectors,
        }
        return json.dumps(fields, default=_jsonable)

    def _dead_letter(self, lines: list[str]) -> None:
        if not lines:
            return
        path = self.job.dead_letter_path
        with self.dead_letter_lock:
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a") as handle:
                handle.write("".join(line + "\n" for line in lines))

    def _fatal(self, exc: Exception, doing: str) -> Exception:
        if isinstance(exc, QmigrateError):
            return exc
        return QmigrateError(f"job '{self.job.name}': {doing} failed: {describe(exc)}")


def _jsonable(value: Any) -> Any:
    tolist = getattr(value, "tolist", None)
    if tolist is not None:
        return tolist()
    if hasattr(value, "__dict__"):
        return value.__dict__
    return str(value)


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
