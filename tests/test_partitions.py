"""`partitions: N` splits a job apart from how many partitions move at once, and neither it
nor `executor` changes what a job's checkpoints are: a resume keeps the saved partitions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from qmigrate import spec
from tests.conftest import apply_and_kill, read_collection, run_cli

ROWS = 3000


def write_job(tmp_path: Path, **extra: Any) -> Path:
    rows = tmp_path / "rows.jsonl"
    if not rows.exists():
        rows.write_text(
            "".join(json.dumps({"id": i, "v": [i / ROWS, 1.0], "n": i}) + "\n" for i in range(ROWS))
        )
    job = {
        "version": 1,
        "name": "rows",
        "source": {"type": "file", "path": "rows.jsonl", "vectors": {"v": {"distance": "dot"}}},
        "target": {"path": str(tmp_path / "qdrant"), "collection": "docs"},
        "batch_size": 20,
        "parallelism": 2,
        "checkpoint": {"store": "file", "path": str(tmp_path / "checkpoint.json")},
        **extra,
    }
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(job))
    return path


def test_partitions_and_executor_leave_the_fingerprint_alone(tmp_path: Path) -> None:
    plain = spec.load(write_job(tmp_path), {})
    split = spec.load(write_job(tmp_path, partitions=12, executor={"type": "ray", "tasks": 8}), {})
    assert split.fingerprint() == plain.fingerprint()
    assert (plain.partition_count, split.partition_count) == (2, 12)
    assert (plain.concurrency, split.concurrency) == (2, 8)
    as_ray = spec.load(write_job(tmp_path, executor={"type": "ray"}), {})
    assert as_ray.partition_count == as_ray.concurrency == 2, "tasks default to parallelism"


def test_partitions_sets_how_many_a_new_run_splits_into(tmp_path: Path) -> None:
    plan = run_cli("plan", str(write_job(tmp_path, partitions=7)), "--output", "json", cwd=tmp_path)
    assert plan.code == 0, plan.stderr
    described = plan.json()["jobs"][0]
    assert len(described["partitions"]) == 7 and described["parallelism"] == 2
    default = run_cli("plan", str(write_job(tmp_path)), "--output", "json", cwd=tmp_path).json()[
        "jobs"
    ][0]
    assert len(default["partitions"]) == 2, "without the key, as many as parallelism (as before)"


def test_a_resume_keeps_the_saved_partitions_whatever_partitions_says_now(
    tmp_path: Path,
) -> None:
    path = write_job(tmp_path, partitions=6)
    assert apply_and_kill(path, tmp_path / "checkpoint.json", after_points=600)
    saved = json.loads((tmp_path / "checkpoint.json").read_text())["jobs"]["rows"]["job"]
    assert len(saved["partitions"]) == 6

    path = write_job(tmp_path, partitions=3)
    result = run_cli("apply", str(path), "--output", "json", cwd=tmp_path)
    assert result.code == 0, result.stderr
    summary = result.json()["jobs"][0]
    assert summary["partitions"] == 6 and summary["count_check"] == "ok"
    assert 0 < summary["read"] < ROWS, "it resumed rather than starting over"
    points = read_collection(tmp_path / "qdrant", "docs")
    assert sorted(points) == list(range(ROWS))
    assert all(points[i].payload == {"n": i} for i in range(ROWS))
