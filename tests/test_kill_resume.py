"""A real `qmigrate apply` killed with SIGKILL at several points, then applied again, ends
with the target exactly equal to the source: same count, vectors and payloads, no duplicates."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from qdrant_client import QdrantClient, models

from qmigrate.checkpoint import TargetStore
from qmigrate.qdrant_connection import QdrantConnection
from tests.conftest import (
    apply_and_kill,
    apply_and_kill_at_progress,
    assert_same_points,
    checkpoint_points,
    make_qdrant_collection,
    read_collection,
    run_cli,
)

COUNT = 3000


@pytest.fixture(scope="module")
def source_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("kill") / "source"
    make_qdrant_collection(path, count=COUNT, size=32)
    return path


def write_job(tmp_path: Path, source: Path, store: dict[str, Any]) -> Path:
    job = {
        "version": 1,
        "name": "killed",
        "source": {"type": "qdrant", "path": str(source), "collection": "docs"},
        "target": {"path": str(tmp_path / "target"), "collection": "copy"},
        "batch_size": 50,
        "parallelism": 2,
        "checkpoint": store,
    }
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(job))
    return path


def finish_and_compare(job: Path, source: Path, tmp_path: Path) -> dict[str, Any]:
    result = run_cli("apply", "--output", "json", str(job), cwd=tmp_path)
    assert result.code == 0, result.stderr
    summary = result.json()["jobs"][0]
    assert summary["count_check"] == "ok"
    assert summary["target_count"] == COUNT
    assert_same_points(
        read_collection(source, "docs"), read_collection(tmp_path / "target", "copy")
    )
    return summary


@pytest.mark.parametrize("after_points", [1, COUNT // 3, COUNT * 9 // 10])
def test_kill_at_a_checkpoint_then_resume(
    tmp_path: Path, source_dir: Path, after_points: int
) -> None:
    checkpoints = tmp_path / "checkpoints.json"
    job = write_job(tmp_path, source_dir, {"store": "file", "path": str(checkpoints)})
    assert apply_and_kill(job, checkpoints, after_points), "apply finished before the kill"
    checkpointed = checkpoint_points(checkpoints)
    assert after_points <= checkpointed < COUNT, "killed mid-run"
    summary = finish_and_compare(job, source_dir, tmp_path)
    assert summary["written"] == COUNT - checkpointed, "resumed exactly from the checkpoints"


def checkpoint_in_the_target(target: Path) -> int:
    """Points written by the `_migration_offsets` checkpoints of a local-mode target that no
    process holds, read as apply reads them."""
    connection = QdrantConnection(QdrantClient(path=str(target)), where=str(target), local=True)
    try:
        states = TargetStore(connection).load_partitions("killed").values()
    finally:
        connection.close()
    return sum(s.points for s in states)


# The last leaves a third of the run: several redraws of the bar, at ~1,000 points/s here.
@pytest.mark.parametrize("after_points", [COUNT // 10, COUNT // 2, COUNT * 2 // 3])
def test_kill_mid_run_with_checkpoints_in_the_target(
    tmp_path: Path, source_dir: Path, after_points: int
) -> None:
    """The kill comes once the progress bar shows `after_points`, up to 0.2 s after that
    checkpoint: wherever the run then is, between or within pages."""
    job = write_job(tmp_path, source_dir, {"store": "target"})
    target = tmp_path / "target"
    assert apply_and_kill_at_progress(job, after_points), "apply finished before the kill"
    checkpointed = checkpoint_in_the_target(target)
    assert after_points <= checkpointed, "the bar counts checkpointed points"
    written = read_collection(target, "copy")
    assert checkpointed <= len(written) < COUNT, "killed mid-run; no checkpoint before its data"
    summary = finish_and_compare(job, source_dir, tmp_path)
    assert summary["written"] == COUNT - checkpointed, "resumed exactly from the checkpoints"


def test_a_source_edited_between_a_kill_and_a_resume_is_named_as_changed(
    tmp_path: Path, source_dir: Path
) -> None:
    """Two records added to the already-read start of the source while the job was down:
    the resume reads on from its cursors, so the count check says the source changed, and
    restart: restart writes everything again."""
    source = tmp_path / "source"
    shutil.copytree(source_dir, source)
    checkpoints = tmp_path / "checkpoints.json"
    job = write_job(tmp_path, source, {"store": "file", "path": str(checkpoints)})
    assert apply_and_kill(job, checkpoints, COUNT // 2), "apply finished before the kill"
    client = QdrantClient(path=str(source))
    try:  # IDs 0 and 3 are new (the integer IDs are 4, 10, 16, ...), and read first
        added = [
            models.PointStruct(id=i, vector=point.vector, payload={"added": True})
            for i, point in zip(
                (0, 3), client.retrieve("docs", [4, 10], with_vectors=True), strict=True
            )
        ]
        client.upsert("docs", added)
    finally:
        client.close()
    resumed = run_cli("apply", str(job), cwd=tmp_path)
    assert resumed.code == 1, resumed.stdout + resumed.stderr
    assert "the source changed during the job" in resumed.stderr, resumed.stderr
    assert f"holds {COUNT + 2:,} records now, the job read {COUNT:,}" in resumed.stderr
    assert "restart: restart" in resumed.stderr
    document = yaml.safe_load(job.read_text())
    job.write_text(yaml.safe_dump({**document, "restart": "restart"}))
    result = run_cli("apply", "--output", "json", str(job), cwd=tmp_path)
    assert result.code == 0, result.stderr
    summary = result.json()["jobs"][0]
    assert (summary["count_check"], summary["written"]) == ("ok", COUNT + 2), summary
    assert_same_points(
        read_collection(source, "docs"), read_collection(tmp_path / "target", "copy")
    )
