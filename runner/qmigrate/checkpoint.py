"""Where a job remembers how far it got: per partition, a cursor saved only after the target
acknowledged every point before it.

Two stores share one interface: a `_migration_offsets` collection in the target (any machine
can resume any partition) and a local JSON file (for targets we may not write extra
collections to).
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypedDict

from qdrant_client import models

from qmigrate.errors import QmigrateError
from qmigrate.qdrant_connection import QdrantConnection
from qmigrate.records import Partition

OFFSETS_COLLECTION = "_migration_offsets"
_KEY_NAMESPACE = uuid.UUID("0f3d2c1b-8a9e-5b7c-a6d5-4e3f2a1b0c9d")


# The shape of a saved JobState. 1: states saved before the version was (they may lack the
# keys added since: fingerprint_parts, source_identity, target, created_collection,
# duplicates). `upgrade` is the one place that reads an older shape.
STATE_VERSION = 2


class Duplicates(TypedDict):
    """What a shortfall's diagnosis found: records whose ID an earlier record had."""

    count: int
    examples: list[int | str]  # a few of their IDs, for the message


@dataclass
class JobState:
    """Saved before any data moves; its partitions are reused on every resume."""

    fingerprint: str
    partitions: list[Partition]
    target_count_before: int
    hnsw_m_before: int | None = None
    # What a refusal to resume names: per-part hashes of the job (Job.fingerprint_parts),
    # what the source must still be for its cursors to hold (Source.resume_identity), and
    # where the data went. None: not recorded (a version-1 state from before they were).
    fingerprint_parts: dict[str, str] | None = None
    source_identity: dict[str, Any] | None = None
    target: dict[str, str] | None = None
    created_collection: bool = False  # `restart: recreate` drops only a collection it made
    duplicates: Duplicates | None = None  # once a shortfall's diagnosis counted them
    version: int = STATE_VERSION

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["partitions"] = [asdict(p) for p in self.partitions]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> JobState:
        data = upgrade(data)
        data["partitions"] = [Partition(**p) for p in data["partitions"]]
        return cls(**data)


def upgrade(data: dict[str, Any]) -> dict[str, Any]:
    """A saved job state in the current shape; one from a newer qmigrate is refused, since
    what it recorded cannot be read right."""
    data = dict(data)
    version = data.get("version", 1)
    if version > STATE_VERSION:
        raise QmigrateError(
            f"the checkpoints were written by a newer qmigrate (job state version {version}, "
            f"this one reads up to {STATE_VERSION}): upgrade qmigrate, or run `qmigrate reset`"
        )
    if version == 1:
        for key in ("fingerprint_parts", "source_identity", "target", "duplicates"):
            data.setdefault(key, None)  # not recorded yet
        data.setdefault("created_collection", False)
    data["version"] = STATE_VERSION
    return data


@dataclass
class PartitionState:
    key: str
    cursor: Any = None
    points: int = 0  # written to the target, up to the cursor
    filtered: int = 0  # read but left out by the client-side filter
    invalid: int = 0  # read but not mappable (dead-lettered)
    duplicates: int = 0  # read, but an ID repeated later in the same page won (last_wins)
    done: bool = False
    updated_at: float = field(default_factory=time.time)


@dataclass(frozen=True)
class Totals:
    """What a job's partition checkpoints say was moved: summed here, for the count check,
    the progress bar, the Ray driver's counts, plan and status alike."""

    written: int = 0
    filtered: int = 0
    invalid: int = 0
    duplicates: int = 0  # read, but a later record of the same page had the ID

    @property
    def read(self) -> int:
        return self.written + self.filtered + self.invalid + self.duplicates

    def since(self, before: Totals) -> dict[str, int]:
        """The difference, in the run counters' terms."""
        return {
            name: getattr(self, name) - getattr(before, name)
            for name in ("read", "written", "filtered", "invalid", "duplicates")
        }


def totals(states: Iterable[PartitionState]) -> Totals:
    states = list(states)
    return Totals(
        written=sum(s.points for s in states),
        filtered=sum(s.filtered for s in states),
        invalid=sum(s.invalid for s in states),
        duplicates=sum(s.duplicates for s in states),
    )


@dataclass
class Lease:
    """A run's claim on a job: who holds it, and until when (epoch seconds) unless renewed."""

    holder: str
    expires: float
    host: str = ""
    pid: int = 0

    def stale(self) -> bool:
        """Expired, or held by a process of this machine that is gone (killed): no need to
        wait out the expiry then."""
        if self.expires < time.time():
            return True
        if self.host != socket.gethostname() or self.pid <= 0:
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False


class CheckpointStore(Protocol):
    # The least seconds between two saves of one partition's state: 0 saves each page's.
    save_interval: float

    def load_lease(self, job: str) -> Lease | None: ...
    def save_lease(self, job: str, lease: Lease | None) -> None: ...
    def load_job(self, job: str) -> JobState | None: ...
    def save_job(self, job: str, state: JobState) -> None: ...
    def load_partitions(self, job: str) -> dict[str, PartitionState]: ...
    def save_partition(self, job: str, state: PartitionState) -> None: ...
    def delete(self, job: str) -> None: ...
    # A cutover's record (`alias.CutoverRecord` as JSON): apart from the checkpoints, and
    # kept by `delete`, so a reset or a restart of the job still knows the way back.
    def load_cutover(self, job: str) -> dict[str, Any] | None: ...
    def save_cutover(self, job: str, record: dict[str, Any] | None) -> None: ...


_KIND_CUTOVER = models.FieldCondition(key="kind", match=models.MatchValue(value="cutover"))


class TargetStore:
    """Checkpoints as points of the `_migration_offsets` collection beside the data."""

    save_interval = 0.0  # one small upsert per save

    def __init__(self, connection: QdrantConnection) -> None:
        self.connection = connection
        self.client = connection.client

    def _exists(self) -> bool:
        with self.connection.lock:
            return self.client.collection_exists(OFFSETS_COLLECTION)

    def _ensure(self) -> None:
        if not self._exists():
            try:
                with self.connection.lock:
                    self.client.create_collection(OFFSETS_COLLECTION, vectors_config={})
            except Exception:
                if not self._exists():  # else another job made it first: as good
                    raise

    @staticmethod
    def _point_id(job: str, key: str) -> str:
        return str(uuid.uuid5(_KEY_NAMESPACE, f"{job}\0{key}"))

    def _get(self, job: str, key: str) -> dict[str, Any] | None:
        if not self._exists():
            return None
        with self.connection.lock:
            found = self.client.retrieve(OFFSETS_COLLECTION, [self._point_id(job, key)])
        return json.loads((found[0].payload or {})["state"]) if found else None

    def _put(self, job: str, key: str, kind: str, state: dict[str, Any]) -> None:
        point = models.PointStruct(
            id=self._point_id(job, key),
            vector={},
            payload={"job": job, "kind": kind, "state": json.dumps(state)},
        )
        with self.connection.lock:
            self.client.upsert(OFFSETS_COLLECTION, [point], wait=True)

    def _job_filter(self, job: str, kind: str | None = None) -> models.Filter:
        must: list[models.Condition] = [
            models.FieldCondition(key="job", match=models.MatchValue(value=job))
        ]
        if kind:
            must.append(models.FieldCondition(key="kind", match=models.MatchValue(value=kind)))
        return models.Filter(must=must)

    def load_cutover(self, job: str) -> dict[str, Any] | None:
        return self._get(job, "\0cutover")

    def save_cutover(self, job: str, record: dict[str, Any] | None) -> None:
        if record is None:
            if self._exists():
                selector = models.PointIdsList(points=[self._point_id(job, "\0cutover")])
                with self.connection.lock:
                    self.client.delete(OFFSETS_COLLECTION, points_selector=selector, wait=True)
            return
        self._ensure()
        self._put(job, "\0cutover", "cutover", record)

    def load_lease(self, job: str) -> Lease | None:
        data = self._get(job, "\0lease")
        return Lease(**data) if data else None

    def save_lease(self, job: str, lease: Lease | None) -> None:
        if lease is None:
            if self._exists():
                with self.connection.lock:
                    self.client.delete(
                        OFFSETS_COLLECTION,
                        points_selector=models.PointIdsList(
                            points=[self._point_id(job, "\0lease")]
                        ),
                        wait=True,
                    )
            return
        self._ensure()
        self._put(job, "\0lease", "lease", asdict(lease))

    def load_job(self, job: str) -> JobState | None:
        data = self._get(job, "\0job")
        return JobState.from_json(data) if data else None

    def save_job(self, job: str, state: JobState) -> None:
        self._ensure()
        self._put(job, "\0job", "job", state.to_json())

    def load_partitions(self, job: str) -> dict[str, PartitionState]:
        if not self._exists():
            return {}
        states: dict[str, PartitionState] = {}
        offset = None
        while True:
            with self.connection.lock:
                points, offset = self.client.scroll(
                    OFFSETS_COLLECTION,
                    scroll_filter=self._job_filter(job, "partition"),
                    limit=1000,
                    offset=offset,
                    with_payload=True,
                )
            for point in points:
                state = PartitionState(**json.loads((point.payload or {})["state"]))
                states[state.key] = state
            if offset is None:
                return states

    def save_partition(self, job: str, state: PartitionState) -> None:
        self._put(job, f"part\0{state.key}", "partition", asdict(state))

    def delete(self, job: str) -> None:
        if self._exists():
            with self.connection.lock:
                self.client.delete(
                    OFFSETS_COLLECTION,
                    points_selector=models.FilterSelector(
                        filter=self._job_filter(job).model_copy(
                            update={"must_not": [_KIND_CUTOVER]}
                        )
                    ),
                    wait=True,
                )


class FileStore:
    """Checkpoints in one JSON file, replaced atomically on every save."""

    # Each save rewrites and fsyncs the whole file under a lock every process shares: a few
    # a second, not one per page. A kill then re-sends at most that long's pages on resume.
    save_interval = 0.25

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock = threading.Lock()

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {"jobs": {}}
        except (OSError, ValueError) as exc:
            raise QmigrateError(f"checkpoint file {self.path} is unreadable: {exc}") from None
        jobs = data.get("jobs") if isinstance(data, dict) else None
        if not isinstance(jobs, dict) or not all(
            isinstance(entry, dict) and isinstance(entry.get("partitions"), dict)
            for entry in jobs.values()
        ):
            raise QmigrateError(f"checkpoint file {self.path} is not a qmigrate checkpoint file")
        return data

    def _write(self, data: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=self.path.parent, prefix=".checkpoint-")
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, self.path)

    def _update(self, job: str, change: Any) -> None:
        """Read, change, write: under a file lock, so two processes never lose an update."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.lock, open(f"{self.path}.lock", "a") as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
            data = self._read()
            entry = data["jobs"].setdefault(job, {"job": None, "partitions": {}})
            change(entry)
            self._write(data)

    def load_lease(self, job: str) -> Lease | None:
        entry = self._read()["jobs"].get(job) or {}
        return Lease(**entry["lease"]) if entry.get("lease") else None

    def save_lease(self, job: str, lease: Lease | None) -> None:
        self._update(job, lambda entry: entry.update(lease=asdict(lease) if lease else None))

    def load_job(self, job: str) -> JobState | None:
        entry = self._read()["jobs"].get(job)
        return JobState.from_json(entry["job"]) if entry and entry["job"] else None

    def save_job(self, job: str, state: JobState) -> None:
        self._update(job, lambda entry: entry.update(job=state.to_json()))

    def load_partitions(self, job: str) -> dict[str, PartitionState]:
        entry = self._read()["jobs"].get(job) or {"partitions": {}}
        return {k: PartitionState(**v) for k, v in entry["partitions"].items()}

    def save_partition(self, job: str, state: PartitionState) -> None:
        self._update(job, lambda entry: entry["partitions"].__setitem__(state.key, asdict(state)))

    def delete(self, job: str) -> None:
        with self.lock:
            data = self._read()
            entry = data["jobs"].pop(job, None)
            if entry is not None:
                if entry.get("cutover"):
                    data["jobs"][job] = {"job": None, "partitions": {}, "cutover": entry["cutover"]}
                self._write(data)

    def load_cutover(self, job: str) -> dict[str, Any] | None:
        entry = self._read()["jobs"].get(job) or {}
        cutover: dict[str, Any] | None = entry.get("cutover")
        return cutover

    def save_cutover(self, job: str, record: dict[str, Any] | None) -> None:
        self._update(job, lambda entry: entry.update(cutover=record))
