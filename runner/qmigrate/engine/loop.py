"""The one loop: a partition's pages read, filtered and mapped, written and checkpointed.

Every source shares it. Sources only describe and yield pages; retries, checkpoints,
concurrency and progress live here, once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from qdrant_client import models

from qmigrate.checkpoint import PartitionState
from qmigrate.engine.counts import Counters
from qmigrate.engine.dead_letters import DeadLetters
from qmigrate.engine.prefetch import prefetch
from qmigrate.engine.record_text import describe_record
from qmigrate.engine.saver import CheckpointSaver
from qmigrate.engine.selection import Selection
from qmigrate.engine.wiring import Resolved
from qmigrate.engine.writer import PageWriter, PreparedPage
from qmigrate.errors import QmigrateError
from qmigrate.mapping import InvalidRecord, finite_rows
from qmigrate.progress import Progress
from qmigrate.records import CursorLost, Page, Partition, Record
from qmigrate.retry import Backoff, T, describe, retried


class PageStep(Protocol):
    """What a command other than apply does with a mapped page (`sync`: compare it with the
    target and keep only what changed). Called from the partition's thread."""

    def select(self, page: Page, prepared: PreparedPage) -> PreparedPage:
        """The page as it goes to the writer: its points may be left out (already equal)."""
        ...

    def recorded(self, key: str, pages: list[PreparedPage]) -> None:
        """Pages of partition `key` acknowledged, in read order, just before their
        checkpoint is offered: what the step keeps must cover every saved cursor."""
        ...


class PartitionWorker:
    """Moves one partition at a time; many run at once on the engine's thread pool.

    `step` (None for apply) filters each mapped page before it is written; `checkpoints`
    names the checkpoints the partitions save under (default: the job's name).
    """

    def __init__(
        self,
        resolved: Resolved,
        counters: Counters,
        stop: threading.Event,
        step: PageStep | None = None,
        checkpoints: str | None = None,
    ) -> None:
        self.step = step
        self.checkpoints = checkpoints or resolved.job.name
        self.job = resolved.job
        self.source = resolved.source
        self.target = resolved.target
        self.store = resolved.store
        self.warn = resolved.warn
        self.selection = Selection(resolved)
        self.counters = counters
        self.stop = stop
        self.progress: Progress | None = None
        self.dead_letters = DeadLetters(self.job)

    def run(self, partition: Partition, state: PartitionState) -> None:
        """Read, then map pages while earlier ones are written (`PageWriter`)."""
        while True:
            try:
                # As many offers collapse as requests can be out, so that saving keeps up.
                saver = CheckpointSaver(
                    self._save,
                    self.dead_letters.write,
                    self._advance,
                    self.target.in_flight,
                    self.store.save_interval,
                )
                with saver, self._writer(partition, state, saver) as writer:
                    for page in self._pages(partition, state):
                        prepared = self._prepare(page)
                        if self.step is not None:
                            prepared = self.step.select(page, prepared)
                        writer.put(prepared)
                break
            except CursorLost as exc:  # the writer has written what it held
                self._start_over(partition, state, exc)
        if not self.stop.is_set():
            state.done = True
            self._save(state)

    def _writer(
        self, partition: Partition, state: PartitionState, saver: CheckpointSaver
    ) -> PageWriter:
        def send(points: list[models.PointStruct], wait: bool) -> int:
            return self._retrying(
                lambda: self.target.upsert(points, wait, partition.shard_key, self.stop),
                "writing to the target",
                "the target",
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
        cursor = state.cursor
        with Backoff(doing, "the source", stop=self.stop) as backoff:
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
        self.warn(
            f"job '{self.job.name}': partition {partition.key}: {exc}; "
            "reading it again from its start"
        )
        state.cursor = None
        state.points = state.filtered = state.invalid = state.duplicates = 0
        self._save(state)

    def _prepare(self, page: Page) -> PreparedPage:
        """Filter and map a page; invalid records and duplicate IDs are decided here."""
        points: dict[Any, tuple[Record, models.PointStruct]] = {}
        rejected: list[str] = []
        filtered = duplicates = 0
        finite = finite_rows(page.matrices)
        for i, record in enumerate(page.records):
            try:
                point = self.selection.point(
                    record, [name for name, rows in finite.items() if rows[i]] if finite else ()
                )
            except InvalidRecord as exc:
                rejected.append(self.dead_letters.line(record, str(exc)))
                continue
            if point is None:
                filtered += 1
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
            references_dropped=page.references_dropped,
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
        if self.step is not None:
            self.step.recorded(state.key, pages)
        saver.offer(state, sum(page.read for page in pages), dead_letters)
        for page in pages:
            self.counters.add(
                read=page.read,
                written=len(page.points),
                filtered=page.filtered,
                invalid=len(page.dead_letters),
                duplicates=page.duplicates,
                passed_over=page.passed_over,
                references_dropped=page.references_dropped,
            )

    def _advance(self, read: int) -> None:
        """The bar counts records whose checkpoint is saved."""
        if self.progress is not None:
            self.progress.advance(read)

    def _save(self, state: PartitionState) -> None:
        state.updated_at = time.time()
        self._retrying(
            lambda: self.store.save_partition(self.checkpoints, state),
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

    def _fatal(self, exc: Exception, doing: str) -> Exception:
        if isinstance(exc, QmigrateError):
            return exc
        return QmigrateError(f"job '{self.job.name}': {doing} failed: {describe(exc)}")
