"""The counts of a run (`Counters`, `Summary`) and the count check, shared by `apply` (at
its end) and `verify`: does the target hold what the job's checkpoints say it wrote, and
did the job read what the source holds?"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from qmigrate.checkpoint import JobState, PartitionState, totals
from qmigrate.engine.selection import Selection
from qmigrate.errors import QmigrateError
from qmigrate.mapping import InvalidRecord
from qmigrate.retry import retried

if TYPE_CHECKING:
    from qmigrate.engine.wiring import Resolved

RESTART_KEEPS_STALE_POINTS = (
    "restart: restart writes every point again but does not delete points the source no "
    "longer has; restart: recreate drops and rebuilds a collection this job created"
)
EXAMPLES = 5  # record IDs a message names at most


@dataclass
class Counts:
    total_points: int  # points written, over all runs (from the checkpoints)
    total_read: int
    target_count: int
    source_count: int | None
    duplicates: int
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def count_check(
    resolved: Resolved,
    state: JobState | None,
    partition_states: dict[str, PartitionState],
    save: bool = True,
) -> Counts:
    """Compare the checkpoints' totals with the target's and the source's live counts.

    `save` (apply) keeps what a shortfall's diagnosis found in the job state; verify,
    which writes nothing, finds it again next time.
    """
    job = resolved.job
    states = list(partition_states.values())
    moved = totals(states)
    total_points, page_duplicates, total_read = moved.written, moved.duplicates, moved.read
    counts = Counts(
        total_points=total_points,
        total_read=total_read,
        target_count=retried(resolved.target.count, f"job '{job.name}': counting the target"),
        source_count=resolved.info.count,
        duplicates=page_duplicates,
    )
    before = state.target_count_before if state else 0
    # on_existing: keep shares the collection with an application writing to it: points it
    # holds are kept (and count as the job's), and it may add points the job never read.
    keep = job.target.on_existing == "keep"
    if state is not None:
        known = state.duplicates["count"] if state.duplicates else page_duplicates
        # Points this job made: what it upserted, less the IDs a later page repeated.
        expected = total_points + page_duplicates - known
        if counts.target_count < expected:
            counts.problems += _explain_shortfall(resolved, state, save)
            known = state.duplicates["count"] if state.duplicates else known
            expected = total_points + page_duplicates - known
        counts.duplicates = known
        if not counts.problems and known and job.on_duplicate == "fail" and known > page_duplicates:
            counts.problems.append(_duplicates_message(state, resolved.info.duplicate_ids_advice))
        elif known:
            advice = resolved.info.duplicate_ids_advice
            counts.notes.append(
                f"{known:,} records had the ID of another record; the one written last won "
                "(on_duplicate: last_wins)" + (f"; {advice}" if advice else "")
            )
        if not counts.problems and before == 0 and not keep and counts.target_count != expected:
            counts.problems.append(
                f"target holds {counts.target_count:,} points, "
                f"the job wrote {expected:,} distinct ones"
            )
    if job.restart in ("restart", "recreate") and before > 0:
        counts.notes.append(RESTART_KEEPS_STALE_POINTS)
    source_count = counts.source_count
    if job.filter is None and source_count is not None and total_read != source_count:
        if keep:  # the application writes to both ends; `sync` catches up
            counts.notes.append(
                f"the source holds {source_count:,} records now, the job read "
                f"{total_read:,}: it changed while the job ran (on_existing: keep); "
                "`qmigrate sync` writes what changed since"
            )
        else:
            counts.problems.append(source_changed(source_count, total_read))
    return counts


def source_changed(source_count: int, total_read: int) -> str:
    """The records read over all runs do not add up to what the source holds now: records
    were added or deleted while the job ran, or between a stop and its resume. Resuming
    again cannot fix that (it reads on from the saved cursors); writing everything can."""
    return (
        f"the source changed during the job: it holds {source_count:,} records now, the job "
        f"read {total_read:,} over its runs, so the target may lack records added since or "
        "keep records deleted since. Apply with restart: restart to write every record "
        "again (restart: recreate also drops points the source no longer has, for a "
        "collection this job created)"
    )


def _explain_shortfall(resolved: Resolved, state: JobState, save: bool) -> list[str]:
    """The target holds fewer points than the job wrote: read the source once more, and tell
    records that share an ID (duplicates) from points missing in the target (loss).

    Holds every point ID in memory for the length of the check; it runs only when the
    counts disagree.
    """
    resolved.warn(
        f"job '{resolved.job.name}': the target holds fewer points than were written; "
        "reading the source again to tell duplicate IDs from lost points"
    )
    selection = Selection(resolved)
    seen: set[Any] = set()
    duplicates: list[Any] = []
    missing: list[Any] = []
    duplicate_count = missing_count = 0
    for partition in state.partitions:
        for page in resolved.source.read(partition, None):
            fresh: dict[Any, Any] = {}
            for record in page.records:
                try:
                    point = selection.point(record)
                except InvalidRecord:
                    continue
                if point is None:
                    continue
                if point.id in seen or point.id in fresh:
                    duplicate_count += 1
                    if len(duplicates) < EXAMPLES:
                        duplicates.append(record.id)
                else:
                    fresh[point.id] = record.id
            present = resolved.target.existing_ids(list(fresh))
            for point_id, record_id in fresh.items():
                if point_id not in present:
                    missing_count += 1
                    if len(missing) < EXAMPLES:
                        missing.append(record_id)
            seen.update(fresh)
    if missing_count:
        return [
            f"the target lacks {missing_count:,} points of records this job wrote "
            f"(e.g. {_examples(missing)}): they were deleted from the target, or lost. "
            "Apply again with restart: restart to write every record again"
        ]
    examples = [d if isinstance(d, (int, str)) else str(d) for d in duplicates]  # JSON
    state.duplicates = {"count": duplicate_count, "examples": examples}
    if save:
        resolved.store.save_job(resolved.job.name, state)
    return []


def _duplicates_message(state: JobState, advice: str | None) -> str:
    assert state.duplicates is not None
    count, examples = state.duplicates["count"], state.duplicates["examples"]
    return (
        f"the source holds {count:,} records whose ID an earlier record already had "
        f"(e.g. {_examples(examples)}); the target kept one point per ID, the one written last. "
        + (
            f"Fix: {advice}, and apply with restart: restart"
            if advice
            else "Set on_duplicate: last_wins to accept that, or remove the duplicates from "
            "the source and apply with restart: restart"
        )
    )


def _examples(ids: list[Any]) -> str:
    return ", ".join(repr(i) for i in ids)


@dataclass
class Counters:
    read: int = 0
    written: int = 0
    filtered: int = 0
    invalid: int = 0
    duplicates: int = 0
    retries: int = 0
    passed_over: int = 0
    references_dropped: int = 0
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
    references_dropped: int = 0  # links the source held that the job left out
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


class CountCheckFailed(QmigrateError):
    """The data moved but the counts disagree; carries the summary for the report."""

    def __init__(self, summary: Summary) -> None:
        super().__init__(f"job '{summary.job}': count check failed: {summary.count_check}")
        self.summary = summary
