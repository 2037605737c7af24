"""Two runs of one job never interleave: a lease in the checkpoint store decides, and a
lease left by a killed run expires. Different jobs keep their own checkpoints."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import run_cli
from tests.servers.qdrant_rest import Faults, Store

ROWS = 3000


def job_file(tmp_path: Path, url: str, name: str = "shared", first: int = 0, **extra: Any) -> Path:
    data = tmp_path / f"{name}.jsonl"
    rows = [{"id": i, "v": [float(i), 1.0], "n": i} for i in range(first, first + ROWS)]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    job = {
        "version": 1,
        "name": name,
        "source": {"type": "file", "path": str(data), "vectors": {"v": {"distance": "dot"}}},
        "target": {"url": url, "collection": "copy"},
        "mapping": {"vectors": {"v": ""}},
        "batch_size": 10,
        **extra,
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(job))
    return path


def start(job: Path, *options: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "qmigrate", "apply", str(job), "--output", "json", *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_points(store: Store, at_least: int, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if store.exists("copy") and store.count("copy") >= at_least:
            return
        assert process.poll() is None, process.communicate()
        time.sleep(0.02)
    raise AssertionError("the first run never got going")


def test_a_second_run_of_a_job_is_refused_while_the_first_holds_it(
    tmp_path: Path, stand_in: tuple[str, Store, Faults]
) -> None:
    url, store, faults = stand_in
    faults.path, faults.latency = "/collections/copy/points", 0.1  # a run of 10 s or more
    job = job_file(tmp_path, url, target={"url": url, "collection": "copy", "in_flight": 1})
    first = start(job)
    wait_for_points(store, 100, first)
    second = run_cli("apply", str(job))
    assert second.code == 1
    assert "job 'shared' is in use by apply on" in second.stderr and "--wait" in second.stderr
    assert first.poll() is None, "the refusal came while the first run was still going"
    out, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    assert json.loads(out)["jobs"][0]["count_check"] == "ok"
    assert store.count("copy") == ROWS


def test_a_lease_left_by_a_killed_run_here_is_taken_over_at_once(
    tmp_path: Path, stand_in: tuple[str, Store, Faults]
) -> None:
    url, store, _ = stand_in
    job = job_file(tmp_path, url)
    first = start(job)
    wait_for_points(store, 100, first)
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    assert store.count("copy") < ROWS, "killed mid-run"
    again = run_cli("apply", str(job), "--output", "json")
    assert again.code == 0, again.stderr
    assert again.json()["jobs"][0]["count_check"] == "ok"
    assert store.count("copy") == ROWS


def test_a_lease_from_another_machine_expires_and_wait_takes_over(
    tmp_path: Path, stand_in: tuple[str, Store, Faults]
) -> None:
    from qdrant_client import QdrantClient

    from qmigrate.checkpoint import Lease, TargetStore
    from qmigrate.qdrant_connection import QdrantConnection

    url, store, _ = stand_in
    job = job_file(tmp_path, url)
    other = QdrantConnection(QdrantClient(url=url), where=url, local=False)
    holder = "ci-runner-7 pid 4121"
    # A run on another machine, killed: its lease holds until it expires (long enough here
    # for a slow machine to start the refused run well before that).
    TargetStore(other).save_lease("shared", Lease(holder, time.time() + 600, "ci-runner-7", 4121))
    refused = run_cli("apply", str(job))
    assert refused.code == 1 and "is in use by ci-runner-7 pid 4121" in refused.stderr
    TargetStore(other).save_lease("shared", Lease(holder, time.time() + 3, "ci-runner-7", 4121))
    started = time.monotonic()
    waited = run_cli("apply", str(job), "--wait", "--output", "json")
    assert waited.code == 0, waited.stderr
    assert 1 <= time.monotonic() - started < 30, "it waited for the expiry, and no longer"
    assert waited.json()["jobs"][0]["count_check"] == "ok"
    assert store.count("copy") == ROWS


def test_two_jobs_into_one_collection_keep_their_own_checkpoints(
    tmp_path: Path, stand_in: tuple[str, Store, Faults]
) -> None:
    url, store, _ = stand_in
    tenant_a = job_file(tmp_path, url, "tenant-a")
    tenant_b = job_file(tmp_path, url, "tenant-b", first=ROWS)
    for job in (tenant_a, tenant_b):
        assert run_cli("apply", str(job)).code == 0
    for job in (tenant_a, tenant_b):
        status = run_cli("status", str(job), "--output", "json").json()["jobs"][0]
        assert (status["status"], status["points"]) == ("done", ROWS)
        again = run_cli("apply", str(job), "--output", "json")
        assert again.json()["jobs"][0]["status"] == "already done"
    assert store.count("copy") == 2 * ROWS


def test_a_refusal_names_the_command_that_holds_the_job(tmp_path: Path) -> None:
    """A sync holding the job: an apply is told it met a sync, and how to wait for it."""
    import pytest

    from qmigrate import spec
    from qmigrate.checkpoint import FileStore
    from qmigrate.engine.lease import JobLease
    from qmigrate.errors import QmigrateError

    path = job_file(tmp_path, "http://127.0.0.1:9")
    job = spec.load(path, {})
    store = FileStore(tmp_path / "checkpoints.json")
    with (
        JobLease(store, job, False, print, command="sync"),
        pytest.raises(QmigrateError) as refused,
    ):
        JobLease(store, job, False, print).__enter__()
    assert f"job 'shared' is in use by sync on {os.uname().nodename} pid {os.getpid()}" in str(
        refused.value
    )
    assert "wait for it with `apply --wait`" in str(refused.value)
