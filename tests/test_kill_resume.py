"""A real `qmigrate apply` killed with SIGKILL at several points, then applied again, ends
with the target exactly equal to the source: same count, vectors and payloads, no duplicates."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import (
    apply_and_kill,
    assert_same_points,
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
    summary = finish_and_compare(job, source_dir, tmp_path)
    assert summary["written"] < COUNT, "the second run resumed instead of starting over"


@pytest.mark.parametrize("delay", [0.3, 1.2, 2.5])
def test_kill_at_any_moment_with_checkpoints_in_the_target(
    tmp_path: Path, source_dir: Path, delay: float
) -> None:
    """The kill lands wherever it lands (startup, collection creation, mid-batch)."""
    job = write_job(tmp_path, source_dir, {"store": "target"})
    process = subprocess.Popen(
        [sys.executable, "-m", "qmigrate", "apply", str(job)],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(delay)
    if process.poll() is None:
        os.kill(process.pid, signal.SIGKILL)
    process.wait()
    finish_and_compare(job, source_dir, tmp_path)
