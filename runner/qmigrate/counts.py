"""The count check, shared by `apply` (at its end) and `verify`: does the target hold what
the job's checkpoints say it wrote, and did the job read what the source holds?"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from qmigrate.checkpoint import JobState, PartitionState
from qmigrate.mapping import ClientFilter, InvalidRecord, Mapper
from qmigrate.retry import retried

if TYPE_CHECKING:
    from qmigrate.engine import Resolved

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
    total_points = sum(s.points for s in states)
    page_duplicates = sum(s.duplicates for s in states)
    total_read = total_points + sum(s.filtered + s.invalid + s.duplicates for s in states)
    counts = Counts(
        total_points=total_points,
        total_read=total_read,
        target_count=retried(resolved.target.count, f"job '{job.name}': counting the target"),
        source_count=resolved.info.count,
        duplicates=page_duplicates,
    )
    before = state.target_count_before if state else 0
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
        if not counts.problems and before == 0 and counts.target_count != expected:
            counts.problems.append(
                f"target holds {counts.target_count:,} points, "
                f"the job wrote {expected:,} distinct ones"
            )
    if job.restart in ("restart", "recreate") and before > 0:
        counts.notes.append(RESTART_KEEPS_STALE_POINTS)
    source_count = counts.source_count
    if job.filter is None and source_count is not None and total_read != source_count:
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
    print(
        f"qmigrate: job '{resolved.job.name}': the target holds fewer points than were written; "
        "reading the source again to tell duplicate IDs from lost points",
        file=sys.stderr,
    )
    mapper = Mapper(resolved.job.mapping, resolved.layout)
    residual = ClientFilter(resolved.residual_filter) if resolved.residual_filter else None
    seen: set[Any] = set()
    duplicates: list[Any] = []
    missing: list[Any] = []
    duplicate_count = missing_count = 0
    for partition in state.partitions:
        for page in resolved.source.read(partition, None):
            fresh: dict[Any, Any] = {}
            for record in page.records:
                if residual is not None and not residual.matches(record):
                    continue
                try:
                    point = mapper.to_point(record)
                except InvalidRecord:
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
