"""The process executor: partitions in worker processes of this machine, writing to the
stand-in Qdrant REST endpoint (in this process, backed by local mode in memory) from a
real JSONL source. Every run is a real `qmigrate apply` process; its workers are spawned
interpreters, found and killed here through /proc."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import make_qdrant_collection, run_cli
from tests.servers.qdrant_rest import Faults, Store, running

ROWS = 3000
PARTITIONS = 4


@pytest.fixture()
def stand_in() -> Iterator[tuple[str, Store, Faults]]:
    with running() as server:
        yield server


def rows_job(directory: Path, url: str, **extra: Any) -> Path:
    rows = [{"id": i, "v": [float(i), 1.0, -1.0], "n": i, "tag": f"t{i % 7}"} for i in range(ROWS)]
    (directory / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    job = {
        "version": 1,
        "name": "spread",
        "source": {"type": "file", "path": "rows.jsonl", "vectors": {"v": {"distance": "dot"}}},
        "target": {"url": url, "collection": "copy"},
        "mapping": {"vectors": {"v": ""}},
        "batch_size": 25,
        "partitions": PARTITIONS,
        "executor": {"type": "processes", "workers": 2},
        **extra,
    }
    path = directory / "job.yaml"
    path.write_text(yaml.safe_dump(job))
    return path


def scroll(store: Store, collection: str) -> list[Any]:
    points, _ = store.call("scroll", collection, limit=100_000, with_vectors=True)
    return points


def assert_exact(store: Store) -> None:
    points = {p.id: p for p in scroll(store, "copy")}
    assert sorted(points) == list(range(ROWS))
    for i, point in points.items():
        assert point.vector == [float(i), 1.0, -1.0]
        assert point.payload == {"n": i, "tag": f"t{i % 7}"}


def workers_of(pid: int) -> list[int]:
    """The spawned worker processes of an apply (its children that run a partition)."""
    found = []
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        command = Path(f"/proc/{child}/cmdline").read_bytes()
        if b"multiprocessing" in command and b"resource_tracker" not in command:
            found.append(int(child))
    return found


def start_apply(directory: Path, *options: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "qmigrate", "apply", "job.yaml", *options],
        cwd=directory,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # a group of its own, as a terminal's foreground job
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def wait_for(condition: Any, process: subprocess.Popen[str], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.01)


def test_partitions_run_in_worker_processes_and_land_exactly(
    tmp_path: Path, stand_in: tuple[str, Store, Faults]
) -> None:
    url, store, _ = stand_in
    rows_job(tmp_path, url)
    result = run_cli("apply", "job.yaml", "--output", "json", cwd=tmp_path)
    assert result.code == 0, result.stderr
    summary = result.json()["jobs"][0]
    assert summary["count_check"] == "ok"
    assert (summary["read"], summary["written"], summary["partitions"]) == (ROWS, ROWS, PARTITIONS)
    assert_exact(store)


def test_a_worker_killed_mid_job_is_started_again_and_resumes(
    tmp_path: Path, stand_in: tuple[str, Store, Faults]
) -> None:
    url, store, faults = stand_in
    faults.latency = 0.01  # slow enough that a worker is caught mid-partition
    rows_job(tmp_path, url)
    process = start_apply(tmp_path, "--output", "json")
    wait_for(lambda: store.exists("copy") and store.count("copy") >= 300, process)
    victims = workers_of(process.pid)
    assert victims, "the workers are running"
    os.kill(victims[0], signal.SIGKILL)
    stdout, stderr = process.communicate(timeout=180)
    assert process.returncode == 0, stderr
    assert json.loads(stdout)["jobs"][0]["count_check"] == "ok"
    assert_exact(store)


def test_ctrl_c_stops_every_worker_and_keeps_their_checkpoints(
    tmp_path: Path, stand_in: tuple[str, Store, Faults]
) -> None:
    url, store, faults = stand_in
    faults.latency = 0.05
    rows_job(tmp_path, url, partitions=2)  # both running when stopped: none left unstarted
    process = start_apply(tmp_path)
    wait_for(lambda: store.exists("copy") and store.count("copy") >= 300, process)
    workers = workers_of(process.pid)
    os.killpg(process.pid, signal.SIGINT)  # what a terminal's Ctrl-C sends
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr, stderr
    assert stderr.strip().splitlines()[-1] == (
        "qmigrate: interrupted; progress up to the last checkpoint is kept"
    )
    assert not any(Path(f"/proc/{pid}").exists() for pid in workers), "workers are gone"
    assert store.count("copy") < ROWS, "stopped mid-run"
    saved = [
        json.loads(p.payload["state"])
        for p in scroll(store, "_migration_offsets")
        if p.payload["kind"] == "partition"
    ]
    assert sum(s["points"] for s in saved) > 0, "the workers saved their checkpoints"
    faults.latency = 0.0
    again = run_cli("apply", "job.yaml", "--output", "json", cwd=tmp_path)
    assert again.code == 0, again.stderr
    assert again.json()["jobs"][0]["count_check"] == "ok"
    assert_exact(store)


@pytest.mark.parametrize(
    ("change", "refusal"),
    [
        (
            {"target": {"path": "qdrant_data", "collection": "copy"}},
            "target.path (Qdrant local mode) cannot be used with executor processes",
        ),
        (
            {
                "source": {"type": "qdrant", "path": "source_data", "collection": "docs"},
                "mapping": {},
            },
            "this qdrant source is an embedded database that one process at a time opens",
        ),
    ],
)
def test_what_one_process_must_own_is_refused_before_anything_is_written(
    tmp_path: Path, stand_in: tuple[str, Store, Faults], change: dict[str, Any], refusal: str
) -> None:
    url, store, _ = stand_in
    job = yaml.safe_load(rows_job(tmp_path, url).read_text())
    make_qdrant_collection(tmp_path / "source_data", count=10)
    (tmp_path / "job.yaml").write_text(yaml.safe_dump({**job, **change}))
    result = run_cli("plan", "job.yaml", cwd=tmp_path)
    assert result.code == 1
    assert refusal in result.stderr
    assert not store.exists("copy")
    assert not (tmp_path / "qdrant_data").exists()


def test_workers_need_the_process_executor(tmp_path: Path) -> None:
    rows_job(tmp_path, "http://127.0.0.1:1", executor={"type": "local"})
    result = run_cli("apply", "job.yaml", "--workers", "2", cwd=tmp_path)
    assert result.code == 2
    assert "--workers needs --executor processes" in result.stderr
