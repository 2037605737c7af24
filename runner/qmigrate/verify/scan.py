"""The one pass over the source verify makes, and the count check built from it."""

from __future__ import annotations

import random
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from qdrant_client import models

from qmigrate.engine import Resolved, before_data_moves
from qmigrate.engine.counts import count_check
from qmigrate.engine.selection import Selection
from qmigrate.extra_points import ExtraPoints
from qmigrate.mapping import InvalidRecord
from qmigrate.progress import Progress
from qmigrate.records import Record
from qmigrate.verify.compare import Comparer
from qmigrate.verify.report import Check, Settings


class Scan:
    """Reads every partition once: counts what the job selects, keeps a reservoir sample
    (or, for `sample: all`, compares each page as it comes) and query vectors."""

    def __init__(self, resolved: Resolved, settings: Settings, extras: ExtraPoints) -> None:
        self.resolved = resolved
        self.settings = settings
        self.extras = extras  # struck off as the source maps to them
        self.selection = Selection(resolved)
        self.comparer = Comparer(resolved)
        self.lock = threading.Lock()
        self.random = random.Random()
        self.selected = 0  # records the job's filter selects now, mappable ones
        self.sample: list[tuple[Record, models.PointStruct]] = []
        self.queries: list[Record] = []

    def run(self, progress_stream: Any) -> None:
        resolved = self.resolved
        state = resolved.state
        if state is not None:
            partitions = state.partitions
        else:
            with before_data_moves(resolved.source):
                partitions = resolved.source.partitions(resolved.job.partition_count)
        total = resolved.info.count if resolved.residual_filter == resolved.job.filter else None
        with (
            Progress(f"verify {resolved.job.name}", total, stream=progress_stream) as progress,
            ThreadPoolExecutor(max(1, resolved.job.parallelism)) as pool,
        ):
            for _ in pool.map(lambda p: self._read(p, progress), partitions):
                pass
        if self.settings.sample is not None:
            self.comparer.compare(self.sample)

    def _read(self, partition: Any, progress: Progress) -> None:
        for page in self.resolved.source.read(partition, None):
            pairs = []
            for record in page.records:
                try:
                    point = self.selection.point(record)
                except InvalidRecord:
                    continue  # apply set it aside (dead letter) or stopped on it
                if point is not None:
                    pairs.append((record, point))
            with self.lock:
                for pair in pairs:
                    self.selected += 1
                    self._keep(self.queries, pair[0], self.settings.queries)
                    if self.settings.sample is not None:
                        self._keep(self.sample, pair, self.settings.sample)
            self.extras.strike(point.id for _, point in pairs)
            if self.settings.sample is None:
                self.comparer.compare(pairs)
            progress.advance(len(page.records))

    def _keep(self, reservoir: list[Any], item: Any, size: int) -> None:
        """Reservoir sampling: after n items, each is kept with probability size/n."""
        if len(reservoir) < size:
            reservoir.append(item)
            return
        slot = self.random.randrange(self.selected)
        if slot < size:
            reservoir[slot] = item

    def sample_check(self) -> Check:
        comparer = self.comparer
        compared, failed = comparer.compared, comparer.failed
        what = "every record" if self.settings.sample is None else f"a sample of {compared:,}"
        figure = f"{compared - failed:,} of {compared:,} points equal ({what})"
        return Check(
            "sample",
            "fail" if failed else "pass",
            figure,
            comparer.differences,
            {"compared": compared, "different": failed},
        )


def counts_check(resolved: Resolved, scan: Scan) -> Check:
    """The count check of apply, plus what the source's filter selects now."""
    state = resolved.state
    target_count = resolved.target.count()
    problems: list[str] = []
    figures: dict[str, Any] = {"source_selected": scan.selected, "target": target_count}
    expected = scan.selected
    if state is not None:
        counts = count_check(resolved, state, resolved.partition_states, save=False)
        problems += counts.problems
        expected -= counts.duplicates
        figures.update(written=counts.total_points, duplicates=counts.duplicates)
        exact = state.target_count_before == 0
    else:
        exact = True
    if exact and target_count != expected:
        problems.append(
            f"the source holds {expected:,} distinct records the job selects, the target "
            f"{target_count:,} points"
        )
    extra = scan.extras.problem()
    if exact and extra:  # else the collection held other points before the job
        problems.append(extra)
    figures.update(extra=len(scan.extras.unmatched), extra_checked=scan.extras.checked)
    figure = (
        f"source {scan.selected:,} records selected by the job; target {target_count:,} points; "
        + scan.extras.figure()
    )
    return Check("counts", "fail" if problems else "pass", figure, problems, figures)
