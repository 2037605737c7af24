"""One sync pass: make the target equal the source, writing only what changed.

A pass runs, under the job's lease (so a cutover refuses while it runs), one or two phases
of the ordinary partition loop (`engine.loop.PartitionWorker`, on the local executor) with
sync's step (`step.CompareStep`), then the deletes (`deletes`):

- full comparison (no `sync.changed_field`, or fewer than two finished passes): every
  record within the filter is read, compared and, when new or changed, written; its ID
  goes to the pass's ID files;
- changed_field: a "changes" phase reads only records at or above the watermark (its range
  pushed down where the source can) and compares and writes them; an "ids" phase reads
  every record within the filter, noting IDs only.

Each phase checkpoints its partitions under a name of its own ("<job> sync changes",
"<job> sync"), so a killed pass resumes where it stopped; the pass's marker (a partition
state "\\0pass" under "<job> sync") ties them to the ID files on this machine, and a pass
that cannot be resumed exactly (files gone, job or source changed) starts over. A finished
pass saves the watermark and clears its checkpoints and files.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile
import time
import uuid
from functools import partial
from pathlib import Path
from typing import Any

from qmigrate.checkpoint import CheckpointStore, JobState, Lease, PartitionState
from qmigrate.engine import Resolved, before_data_moves
from qmigrate.engine.counts import Counters
from qmigrate.engine.executors import local
from qmigrate.engine.lease import JobLease
from qmigrate.errors import QmigrateError
from qmigrate.retry import retried
from qmigrate.source_factory import create_source
from qmigrate.spec import Job
from qmigrate.sync import deletes, history, watermark
from qmigrate.sync.history import PASS_KEY, WATERMARK_KEY, checkpoint_names, watermark_name
from qmigrate.sync.id_set import IdSpill
from qmigrate.sync.step import CompareStep, Tally


@dataclasses.dataclass
class SyncSummary:
    job: str
    status: str  # done | dry run
    mode: str  # full | changed_field
    read: int
    written: int
    new: int
    changed: int
    deleted: int
    unchanged: int
    elapsed: float
    written_examples: list[Any]
    deleted_examples: list[Any]
    invalid: int = 0
    ids_read: int = 0  # changed_field: records read for the ID comparison
    watermark_from: Any = None
    watermark: Any = None
    deletes_skipped: str | None = None  # why nothing was deleted
    resumed: bool = False
    notes: list[str] = dataclasses.field(default_factory=list)

    @property
    def ok(self) -> bool:
        """The target equals the source within the job's scope at the end of the pass (a
        dry run: already, with nothing to write or delete)."""
        if self.deletes_skipped is not None:
            return False
        return self.status == "done" or (self.written == 0 and self.deleted == 0)

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["elapsed"] = round(self.elapsed, 3)
        data["ok"] = self.ok
        return data


def spill_directory(job: Job) -> Path:
    """The pass's ID files: beside the job's checkpoint file (by default .qmigrate/)."""
    return job.checkpoint_path.with_name(f"{job.name}.sync-ids")


def forget(job: Job, store: CheckpointStore) -> None:
    """`reset`: an interrupted pass, its ID files and the watermark are gone."""
    for name in (*checkpoint_names(job.name), watermark_name(job.name)):
        store.delete(name)
    shutil.rmtree(spill_directory(job), ignore_errors=True)


def sync(
    resolved: Resolved, dry_run: bool = False, wait: bool = False, progress_stream: Any = None
) -> SyncSummary:
    """One pass; with `dry_run`, the same pass writing nothing (checkpoints in memory, ID
    files in a temporary directory, deletes counted only)."""
    job = resolved.job
    if resolved.collection is None:
        raise QmigrateError(
            f"job '{job.name}': target collection '{job.target.collection}' does not exist: "
            "run `qmigrate apply` first"
        )
    problems = resolved.target.mismatches(resolved.collection, resolved.layout)
    if problems:
        raise QmigrateError(
            f"job '{job.name}': target collection '{job.target.collection}' cannot take "
            "this job's points: " + "; ".join(problems)
        )
    if dry_run:
        with tempfile.TemporaryDirectory(prefix="qmigrate-sync-") as directory:
            dry = dataclasses.replace(resolved, store=MemoryStore())
            return _pass(dry, resolved.store, Path(directory), True, progress_stream)
    with JobLease(resolved.store, job, wait, resolved.warn, command="sync"):
        return _pass(resolved, resolved.store, spill_directory(job), False, progress_stream)


def _pass(
    resolved: Resolved,
    watermark_store: CheckpointStore,
    directory: Path,
    dry_run: bool,
    progress_stream: Any,
) -> SyncSummary:
    job, store = resolved.job, resolved.store
    label = f"job '{job.name}'"
    started = time.monotonic()
    field = job.sync_changed_field
    highs = (
        retried(lambda: watermark.load(watermark_store, job.name, field), f"{label}: reading")
        if field
        else []
    )
    ids_name, changes_name = checkpoint_names(job.name)
    spill = IdSpill(directory)
    marker, resumed = _marker(resolved, spill, highs)
    bound = marker["bound"]
    high = watermark.High(directory, field) if field else None
    step_args = (resolved.target, resolved.layout, label)
    compare = CompareStep(*step_args, True, spill, high, dry_run)
    counters, id_counters = Counters(), Counters()
    if bound is None:
        _phase(resolved, ids_name, compare, counters, progress_stream)
    else:
        assert field is not None
        changes = _with_filter(resolved, watermark.with_range(job.filter, field, bound))
        try:
            compare.spill = None
            _phase(changes, changes_name, compare, counters, progress_stream)
        finally:
            changes.source.close()
        ids = CompareStep(*step_args, False, spill, None, dry_run)
        _phase(resolved, ids_name, ids, id_counters, progress_stream)
    if resolved.target.acknowledge_only and not dry_run:
        retried(resolved.target.barrier, f"{label}: waiting for the target to apply the writes")
    where = deletes.scope(job.filter, job.mapping)
    removed = deletes.Deletes()
    if where.why_not is None:
        removed = deletes.find_and_delete(
            resolved.target, where, spill.sorted_keys(), dry_run, label
        )
    new_high = None
    if field is not None and high is not None:
        new_high = watermark.larger(highs[-1] if highs else None, high.largest())
        if not dry_run and marker.get("id") != _saved_pass(watermark_store, job.name):

            def save(field: str = field, new_high: Any = new_high) -> None:
                watermark.save(store, job.name, field, highs, new_high, marker["id"])

            retried(save, f"{label}: saving the watermark")
    summary = _summary(
        job.name,
        compare.tally,
        counters,
        id_counters,
        removed,
        where,
        started,
        dry_run,
        field,
        bound,
        new_high,
        resumed,
    )
    if job.executor.type != "local":
        summary.notes.append(
            f"sync ran its partitions on threads in this process: executor "
            f"{job.executor.type} applies to apply only"
        )
    if not dry_run:
        last = {k: getattr(summary, k) for k in ("mode", "written", "deleted", "unchanged")}
        retried(partial(history.record, store, job.name, last), f"{label}: saving the pass")
        for name in (ids_name, changes_name):
            retried(partial(store.delete, name), f"{label}: clearing the pass")
        spill.clear()
    return summary


def _saved_pass(store: CheckpointStore, job: str) -> Any:
    saved = store.load_partitions(watermark_name(job)).get(WATERMARK_KEY)
    return (
        saved.cursor.get("pass") if saved is not None and isinstance(saved.cursor, dict) else None
    )


def _marker(resolved: Resolved, spill: IdSpill, highs: list[Any]) -> tuple[dict[str, Any], bool]:
    """The pass to resume, or a new one (its checkpoints and ID files cleared)."""
    job, store = resolved.job, resolved.store
    ids_name, changes_name = checkpoint_names(job.name)
    saved = store.load_partitions(ids_name).get(PASS_KEY)
    identity = {
        "fingerprint": job.fingerprint(),
        "source": json.loads(json.dumps(resolved.source_identity, default=str)),
        "field": job.sync_changed_field,
    }
    marker_file = spill.directory / "pass.json"
    try:
        on_disk = json.loads(marker_file.read_text())
    except (OSError, ValueError):
        on_disk = None
    cursor = saved.cursor if saved is not None else None
    if (
        isinstance(cursor, dict)
        and on_disk == cursor.get("id")
        and all(cursor.get(k) == v for k, v in identity.items())
    ):
        return cursor, True
    for name in (ids_name, changes_name):
        store.delete(name)
    spill.clear()
    bound = watermark.lower_bound(highs) if job.sync_changed_field else None
    marker = {**identity, "id": uuid.uuid4().hex, "bound": bound}
    marker_file.write_text(json.dumps(marker["id"]))
    store.save_partition(ids_name, PartitionState(PASS_KEY, cursor=marker))
    return marker, False


def _phase(
    resolved: Resolved, name: str, step: CompareStep, counters: Counters, progress_stream: Any
) -> None:
    job, store = resolved.job, resolved.store
    state = store.load_job(name)
    states = store.load_partitions(name) if state is not None else {}
    if state is None:
        with before_data_moves(resolved.source):
            partitions = resolved.source.partitions(job.partition_count)
        state = JobState(
            fingerprint=job.fingerprint(), partitions=partitions, target_count_before=0
        )
        store.save_job(name, state)
    local.run_partitions(resolved, state, states, counters, progress_stream, step, name)


def _with_filter(resolved: Resolved, filter: dict[str, Any]) -> Resolved:
    """The job read through a second source that was given `filter` to push down."""
    job = dataclasses.replace(resolved.job, filter=filter)
    source = create_source(job.source, job.batch_size, job.give_up_after)
    try:
        with before_data_moves(source):
            residual = source.push_down(filter)
            info = source.describe()
    except BaseException:
        source.close()
        raise
    return dataclasses.replace(
        resolved, job=job, source=source, info=info, residual_filter=residual
    )


def _summary(
    job: str,
    tally: Tally,
    counters: Counters,
    id_counters: Counters,
    removed: deletes.Deletes,
    where: deletes.Scope,
    started: float,
    dry_run: bool,
    field: str | None,
    bound: Any,
    new_high: Any,
    resumed: bool,
) -> SyncSummary:
    return SyncSummary(
        job=job,
        status="dry run" if dry_run else "done",
        mode="changed_field" if bound is not None else "full",
        read=counters.read,
        written=tally.written,
        new=tally.new,
        changed=tally.written - tally.new,
        deleted=removed.count,
        unchanged=tally.unchanged,
        elapsed=time.monotonic() - started,
        written_examples=tally.examples,
        deleted_examples=removed.examples,
        invalid=counters.invalid + id_counters.invalid,
        ids_read=id_counters.read,
        watermark_from=bound,
        watermark=new_high,
        deletes_skipped=where.why_not,
        resumed=resumed,
    )


class MemoryStore:
    """Checkpoints of a dry run: kept in memory, gone with it."""

    save_interval = 0.0

    def __init__(self) -> None:
        self.jobs: dict[str, JobState] = {}
        self.partitions: dict[str, dict[str, PartitionState]] = {}

    def load_lease(self, job: str) -> Lease | None:
        return None

    def save_lease(self, job: str, lease: Lease | None) -> None:
        pass

    def load_job(self, job: str) -> JobState | None:
        return self.jobs.get(job)

    def save_job(self, job: str, state: JobState) -> None:
        self.jobs[job] = state

    def load_partitions(self, job: str) -> dict[str, PartitionState]:
        return dict(self.partitions.get(job, {}))

    def save_partition(self, job: str, state: PartitionState) -> None:
        self.partitions.setdefault(job, {})[state.key] = dataclasses.replace(state)

    def delete(self, job: str) -> None:
        self.jobs.pop(job, None)
        self.partitions.pop(job, None)

    def load_cutover(self, job: str) -> dict[str, Any] | None:
        return None

    def save_cutover(self, job: str, record: dict[str, Any] | None) -> None:
        pass
