"""A job joined to its live systems (`Resolved`), and the stores its checkpoints live in."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from qdrant_client import models

from qmigrate import retry
from qmigrate.checkpoint import CheckpointStore, FileStore, JobState, PartitionState, TargetStore
from qmigrate.collection_layout import Layout, target_layout
from qmigrate.errors import QmigrateError, SourceError
from qmigrate.records import IndexSpec, SourceInfo
from qmigrate.source_factory import create_source
from qmigrate.sources.base import Source
from qmigrate.spec import Job
from qmigrate.target import QdrantTarget

# The engine's one channel for what a run should tell but that stops nothing (a lease taken
# over, a partition read again): a line without the "qmigrate: " prefix. The command decides
# where it goes; `on_stderr` is what it chooses now, and the default for callers that do not.
Warn = Callable[[str], None]


def on_stderr(message: str) -> None:
    print(f"qmigrate: {message}", file=sys.stderr)


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
    warn: Warn = on_stderr

    def close(self) -> None:
        self.source.close()
        self.target.close()

    @property
    def payload_indexes(self) -> dict[str, IndexSpec]:
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


@contextlib.contextmanager
def target_and_store(job: Job) -> Iterator[tuple[QdrantTarget, CheckpointStore]]:
    """The job's target and checkpoint store, without its source (cutover, rollback)."""
    target = QdrantTarget(job.target, read_only=True)
    try:
        yield target, open_store(job, target)
    finally:
        target.close()


def resolve(job: Job, read_only: bool = False, warn: Warn = on_stderr) -> Resolved:
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
            identity: dict[str, Any] = getattr(source, "resume_identity", dict)()
        target = QdrantTarget(job.target, read_only=read_only)
        opened.callback(target.close)
        target.shard_keys.follow_source(info.shard_keys, unset=job.target.shard_key is None)
        store = open_store(job, target)
        state = store.load_job(job.name)
        partition_states = store.load_partitions(job.name) if state else {}
        resume_from = getattr(source, "resume_from", None)
        if state is not None and resume_from is not None:
            with before_data_moves(source):  # what the saved partitions read, described
                resume_from(state.partitions)
                info = source.describe()
        layout = target_layout(info, job.mapping, job.target)
        collection = target.existing()
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
        warn,
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
        raise SourceError(source.label, source.explain(exc)) from None
