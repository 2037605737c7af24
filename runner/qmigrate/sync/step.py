"""Sync's step in the partition loop (`engine.loop.PageStep`): each mapped page is compared
with the target's points of the same IDs (`verify.compare.differences`: vectors within
their datatype's tolerance, payloads exactly), and only new and changed points go on to the
writer. The page's IDs go to the pass's ID files once acknowledged (`id_set`), and the
largest `changed_field` value read to the watermark (`watermark.High`)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from qdrant_client import models

from qmigrate.engine.writer import PreparedPage
from qmigrate.records import Page
from qmigrate.retry import retried
from qmigrate.sync.id_set import IdSpill
from qmigrate.sync.watermark import High
from qmigrate.target import QdrantTarget
from qmigrate.verify.compare import FETCH_BATCH, differences

EXAMPLES = 5


@dataclass
class SyncPage(PreparedPage):
    """A prepared page with what sync learnt of it."""

    unchanged: list[Any] = field(default_factory=list)  # IDs the target holds equal
    new: int = 0  # of its points, those absent from the target
    high: Any = None  # the largest changed_field value among its records


@dataclass
class Tally:
    """What a pass found, over its partitions (this run's share)."""

    written: int = 0  # new + changed (or, dry, would be)
    new: int = 0
    unchanged: int = 0
    examples: list[Any] = field(default_factory=list)  # a few IDs written
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


class CompareStep:
    """`compare`: drop equal points (False: keep every point, only note IDs: the ID pass of
    changed_field mode). `spill`: where acknowledged IDs go (None: nowhere). `dry_run`:
    what would be written is counted, nothing goes to the writer."""

    def __init__(
        self,
        target: QdrantTarget,
        layout: Any,
        job_label: str,
        compare: bool,
        spill: IdSpill | None,
        high: High | None,
        dry_run: bool,
    ) -> None:
        self.target = target
        self.layout = layout
        self.job_label = job_label
        self.compare = compare
        self.spill = spill
        self.high = high
        self.dry_run = dry_run
        self.tally = Tally()

    def select(self, page: Page, prepared: PreparedPage) -> PreparedPage:
        out = SyncPage(**{k: getattr(prepared, k) for k in prepared.__dataclass_fields__})
        if self.high is not None:
            out.high = self.high.of_records([record.payload for record in page.records])
        if not self.compare:
            out.unchanged, out.points = [point.id for point in prepared.points], []
            return out
        changed: list[models.PointStruct] = []
        for start in range(0, len(prepared.points), FETCH_BATCH):
            batch = prepared.points[start : start + FETCH_BATCH]
            ids = [point.id for point in batch]
            found = retried(
                lambda ids=ids: self.target.retrieve(ids),  # type: ignore[misc]
                f"{self.job_label}: reading the target's points to compare",
            )
            for point in batch:
                held = found.get(point.id)
                if held is None:
                    out.new += 1
                    changed.append(point)
                elif differences(self.layout, point, held):
                    changed.append(point)
                else:
                    out.unchanged.append(point.id)
        with self.tally.lock:
            self.tally.examples += [p.id for p in changed[: EXAMPLES - len(self.tally.examples)]]
        out.points = changed
        if self.dry_run:  # counted here: the writer gets nothing
            self._count(len(changed), out.new, len(out.unchanged))
            out.unchanged += [point.id for point in changed]
            out.points = []
        return out

    def recorded(self, key: str, pages: list[PreparedPage]) -> None:
        sync_pages = [page for page in pages if isinstance(page, SyncPage)]
        if self.spill is not None:
            self.spill.append(
                key,
                [p.id for page in sync_pages for p in page.points]
                + [i for page in sync_pages for i in page.unchanged],
            )
        if self.high is not None:
            for page in sync_pages:
                self.high.note(key, page.high)
        if not self.dry_run:
            self._count(
                sum(len(page.points) for page in sync_pages),
                sum(page.new for page in sync_pages),
                sum(len(page.unchanged) for page in sync_pages) if self.compare else 0,
            )

    def _count(self, written: int, new: int, unchanged: int) -> None:
        with self.tally.lock:
            self.tally.written += written
            self.tally.new += new
            self.tally.unchanged += unchanged
