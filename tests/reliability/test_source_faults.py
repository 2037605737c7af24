"""A source server that goes away mid-run and comes back: the job either rides it out with
retries or stops with one clear line and its checkpoints intact; either way the next
apply finishes exactly."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from qmigrate.errors import QmigrateError
from tests.conftest import run_job
from tests.servers.chroma import running_chroma
from tests.servers.qdrant_rest import Faults, Store

RECORDS = 3000


def test_chroma_stopped_and_restarted_mid_run(
    tmp_path: Path, stand_in: tuple[str, Store, Faults], monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("chromadb")
    monkeypatch.setattr("qmigrate.retry.random.uniform", lambda low, high: high / 4)
    url, store, _ = stand_in
    rng = random.Random(9)
    (tmp_path / "chroma").mkdir()
    with running_chroma(tmp_path / "chroma") as server:
        port = server.port
        collection = server.client().create_collection("restarts", embedding_function=None)
        for start in range(0, RECORDS, 500):
            ids = [f"r{i}" for i in range(start, start + 500)]
            collection.add(
                ids=ids,
                embeddings=[[rng.uniform(-1, 1) for _ in range(8)] for _ in ids],
                metadatas=[{"n": i} for i in range(start, start + 500)],
            )
        job = {
            "version": 1,
            "name": "source-down",
            "source": {"type": "chroma", "url": server.url, "collection": "restarts", "timeout": 2},
            "target": {"url": url, "collection": "copy"},
            "batch_size": 20,
            "parallelism": 2,
        }
        outcome: dict[str, Any] = {}

        def apply() -> None:
            try:
                outcome["summary"] = run_job(job, tmp_path)
            except QmigrateError as exc:
                outcome["error"] = exc

        runner = threading.Thread(target=apply)
        runner.start()
        deadline = time.monotonic() + 60
        while not (store.exists("copy") and store.count("copy") >= 300):
            assert time.monotonic() < deadline and runner.is_alive(), outcome
            time.sleep(0.01)
    # The server is stopped (by PID) here, mid-run; it comes back on the same port and data.
    down = store.count("copy")
    assert down < RECORDS, "stopped mid-run"
    time.sleep(1)
    with running_chroma(tmp_path / "chroma", port=port):
        runner.join(timeout=120)
        assert not runner.is_alive(), "the job hangs"
        if "error" in outcome:  # stopped with one line; the next apply finishes exactly
            assert "\n" not in outcome["error"].message
            assert "source" in outcome["error"].message
            summary = run_job(job, tmp_path)
        else:  # rode it out with retries
            summary = outcome["summary"]
            assert summary.retries >= 1
    assert summary.count_check == "ok"
    assert store.count("copy") == RECORDS
