"""Both checkpoint stores keep the same state the same way."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from qmigrate.checkpoint import (
    STATE_VERSION,
    CheckpointStore,
    FileStore,
    JobState,
    PartitionState,
    TargetStore,
)
from qmigrate.errors import QmigrateError
from qmigrate.qdrant_connection import connect
from qmigrate.records import Partition


@pytest.fixture(params=["target", "file"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CheckpointStore]:
    if request.param == "file":
        yield FileStore(tmp_path / "nested" / "checkpoints.json")
        return
    connection = connect(
        path=str(tmp_path / "qdrant"),
        url=None,
        api_key=None,
        prefer_grpc=False,
        timeout=5,
        role="target",
    )
    yield TargetStore(connection)
    connection.close()


def test_round_trip_and_isolation_between_jobs(store: CheckpointStore) -> None:
    assert store.load_job("a") is None
    assert store.load_partitions("a") == {}
    parts = [
        Partition("p0", {"start": None, "end": 10}),
        Partition("p1", {"start": 10, "end": None}),
    ]
    store.save_job("a", JobState("f1", parts, target_count_before=5, hnsw_m_before=16))
    store.save_job("b", JobState("f2", parts[:1], target_count_before=0))
    store.save_partition("a", PartitionState("p0", cursor={"x": [1, "two"]}, points=7))
    store.save_partition("a", PartitionState("p0", cursor=9, points=9, filtered=1, done=True))
    store.save_partition("b", PartitionState("p0", cursor="uuid", points=1))

    job = store.load_job("a")
    assert job is not None
    assert (job.fingerprint, job.partitions, job.hnsw_m_before) == ("f1", parts, 16)
    states = store.load_partitions("a")
    assert list(states) == ["p0"]
    assert (states["p0"].cursor, states["p0"].points, states["p0"].done) == (9, 9, True)

    store.delete("a")
    assert store.load_job("a") is None
    assert store.load_partitions("a") == {}
    assert store.load_partitions("b")["p0"].cursor == "uuid"


def test_file_store_never_leaves_a_half_written_file(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    store = FileStore(path)
    store.save_job("a", JobState("f", [Partition("p", {})], 0))
    for i in range(20):
        store.save_partition("a", PartitionState("p", cursor=i, points=i))
    # No temporary file is left behind; c.json.lock serialises writers across processes.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.json", "c.json.lock"]
    assert store.load_partitions("a")["p"].points == 19


def test_leases_round_trip_in_both_stores(tmp_path: Path) -> None:
    from qdrant_client import QdrantClient

    from qmigrate.checkpoint import Lease, TargetStore
    from qmigrate.qdrant_connection import QdrantConnection

    connection = QdrantConnection(QdrantClient(":memory:"), where=":memory:", local=True)
    for store in (FileStore(tmp_path / "c.json"), TargetStore(connection)):
        assert store.load_lease("a") is None
        store.save_lease("a", Lease("host pid 1", 123.5))
        assert store.load_lease("a") == Lease("host pid 1", 123.5)
        assert store.load_lease("b") is None, "leases are per job"
        store.save_lease("a", None)
        assert store.load_lease("a") is None


def test_a_version_1_job_state_is_upgraded_in_one_place() -> None:
    """A state saved before states had a version (and before fingerprint parts, source
    identity and target were recorded) loads as the current shape, those marked unknown."""
    saved = {
        "fingerprint": "f",
        "partitions": [{"key": "p", "spec": {}}],
        "target_count_before": 3,
        "hnsw_m_before": None,
    }
    state = JobState.from_json(saved)
    assert state.version == STATE_VERSION == 2
    assert (state.fingerprint_parts, state.source_identity, state.target) == (None, None, None)
    assert state.duplicates is None and state.created_collection is False
    assert JobState.from_json(state.to_json()) == state


def test_a_job_state_of_a_newer_qmigrate_is_refused() -> None:
    saved = {**JobState("f", [], 0).to_json(), "version": STATE_VERSION + 1}
    with pytest.raises(QmigrateError, match="written by a newer qmigrate"):
        JobState.from_json(saved)
