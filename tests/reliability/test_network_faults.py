"""Network faults between qmigrate and a source (a real Chroma server behind a TCP proxy):
latency and resets are ridden out exactly; a stalled source, or target, ends the job with
one line within retry.give_up_after, never a hang, and the next apply resumes exactly."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import CliResult, run_job
from tests.servers.qdrant_rest import Faults, Store
from tests.servers.tcp_proxy import TcpProxy, proxy_to

RECORDS = 2000


@pytest.fixture
def chroma_behind_proxy(chroma_server: Any, tmp_path: Path) -> Iterator[tuple[TcpProxy, str]]:
    name = f"net-{tmp_path.name[-24:]}".replace("_", "-")
    collection = chroma_server.client().create_collection(name, embedding_function=None)
    rng = random.Random(5)
    for start in range(0, RECORDS, 500):
        ids = [f"r{i}" for i in range(start, start + 500)]
        collection.add(
            ids=ids,
            embeddings=[[rng.uniform(-1, 1) for _ in range(16)] for _ in ids],
            metadatas=[{"n": i} for i in range(start, start + 500)],
        )
    with proxy_to(chroma_server.port) as proxy:
        yield proxy, name


def job(url: str, proxy: TcpProxy, collection: str, **extra: Any) -> dict[str, Any]:
    source = {
        "type": "chroma",
        "url": f"http://127.0.0.1:{proxy.port}",
        "collection": collection,
        "timeout": 1,
    }
    return {
        "version": 1,
        "name": "network",
        "source": source,
        "target": {"url": url, "collection": "copy"},
        "batch_size": 50,
        "parallelism": 2,
        **extra,
    }


def test_latency_and_resets_are_ridden_out(
    tmp_path: Path, stand_in: tuple[str, Store, Faults], chroma_behind_proxy: Any
) -> None:
    url, store, _ = stand_in
    proxy, collection = chroma_behind_proxy
    proxy.latency = 0.005
    proxy.reset_after_bytes = 150_000  # the reads cross this several times
    summary = run_job(job(url, proxy, collection), tmp_path)
    assert proxy.resets >= 2, "resets happened mid-run"
    assert (summary.count_check, store.count("copy")) == ("ok", RECORDS)
    assert summary.retries >= proxy.resets // 2


GIVE_UP_AFTER = 3  # seconds; the request timeouts become a third of it (60 -> 1)
# Past the bound: the blocked read of the other partition ends within its 1 s timeout, and
# the process stops (interpreter exit, local teardown).
MARGIN = 3


def stalled_run(document: dict[str, Any], tmp_path: Path, stalled: Any, started: Any) -> Any:
    """`qmigrate apply` in a process of its own; `stalled` is set once `started()` says
    data moves. Returns (seconds from the stall to its exit, the run's CliResult)."""
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(document))
    process = subprocess.Popen(
        [sys.executable, "-m", "qmigrate", "apply", "job.yaml"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not started():
        assert time.monotonic() < deadline and process.poll() is None, process.stderr
        time.sleep(0.01)
    stalled.set()
    stalled_at = time.monotonic()
    try:
        stdout, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    elapsed = time.monotonic() - stalled_at
    print(f"stopped {elapsed:.2f}s after the stall:\n{stderr}")
    return elapsed, CliResult(process.returncode, stdout, stderr)


def test_a_stalled_source_stops_the_job_within_its_bound_and_resumes_exactly(
    tmp_path: Path, stand_in: tuple[str, Store, Faults], chroma_behind_proxy: Any
) -> None:
    """The Chroma server behind the proxy stops answering mid-run (the source's timeout is
    its default, 60 s): the job says it waits on the source, stops within retry.give_up_after
    with one line naming the source and the bound, and the next apply moves the rest."""
    url, store, _ = stand_in
    proxy, collection = chroma_behind_proxy
    proxy.latency = 0.01
    document = job(url, proxy, collection, retry={"give_up_after": GIVE_UP_AFTER})
    del document["source"]["timeout"]
    elapsed, result = stalled_run(
        document, tmp_path, proxy.stalled, lambda: store.exists("copy") and store.count("copy")
    )
    assert result.code == 1, result.stderr
    assert elapsed < GIVE_UP_AFTER + MARGIN, f"stopped {elapsed:.1f}s after the stall"
    lines = result.stderr.splitlines()
    assert any("waiting on the source for" in line for line in lines), result.stderr
    (error,) = [line for line in lines if "error" in line]
    assert error == lines[-1], result.stderr
    assert f"reading from the source Chroma at http://127.0.0.1:{proxy.port}" in error
    assert f"retry.give_up_after ({GIVE_UP_AFTER}s)" in error
    proxy.stalled.clear()
    summary = run_job(document, tmp_path)  # and it resumes exactly
    assert (summary.count_check, store.count("copy")) == ("ok", RECORDS)
    assert summary.written < RECORDS, "resumed from the checkpoints"


def test_a_stalled_target_stops_the_job_within_its_bound_and_resumes_exactly(
    tmp_path: Path, stand_in: tuple[str, Store, Faults]
) -> None:
    """The Qdrant stand-in behind the proxy stops answering mid-run; its checkpoints are
    there too. The target's timeout (default 60 s) becomes a third of the bound."""
    url, store, _ = stand_in
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps({"id": i, "v": [i, 1.0]}) + "\n" for i in range(RECORDS)))
    with proxy_to(int(url.rsplit(":", 1)[1])) as proxy:
        proxy.latency = 0.01
        document = {
            "version": 1,
            "name": "stalled-target",
            "source": {"type": "file", "path": str(rows), "vectors": {"v": {"distance": "dot"}}},
            "target": {"url": f"http://127.0.0.1:{proxy.port}", "collection": "copy"},
            "batch_size": 50,
            "retry": {"give_up_after": GIVE_UP_AFTER},
        }
        elapsed, result = stalled_run(  # once some checkpoints are saved
            document,
            tmp_path,
            proxy.stalled,
            lambda: store.exists("copy") and store.count("copy") >= RECORDS // 4,
        )
        assert result.code == 1, result.stderr
        assert elapsed < GIVE_UP_AFTER + MARGIN, f"stopped {elapsed:.1f}s after the stall"
        lines = result.stderr.splitlines()
        assert any(
            "waiting on the target for" in line or "waiting on the checkpoint store for" in line
            for line in lines
        ), result.stderr
        (error,) = [line for line in lines if "error" in line]
        assert error == lines[-1] and f"retry.give_up_after ({GIVE_UP_AFTER}s)" in error, error
        proxy.stalled.clear()
        summary = run_job(document, tmp_path)
    assert (summary.count_check, store.count("copy")) == ("ok", RECORDS)
    assert summary.written < RECORDS, "resumed from the checkpoints"
