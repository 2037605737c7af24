"""Network faults between qmigrate and a source (a real Chroma server behind a TCP proxy):
latency and resets are ridden out exactly; a stalled source ends the job with an error
within the timeout times the retries, never a hang."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from qmigrate.errors import QmigrateError
from tests.conftest import run_job
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


def test_a_stalled_source_ends_the_job_within_timeout_times_retries(
    tmp_path: Path,
    stand_in: tuple[str, Store, Faults],
    chroma_behind_proxy: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("qmigrate.retry.random.uniform", lambda low, high: 0.0)
    url, store, _ = stand_in
    proxy, collection = chroma_behind_proxy
    proxy.latency = 0.01
    outcome: dict[str, Any] = {}

    def apply() -> None:
        try:
            outcome["summary"] = run_job(job(url, proxy, collection), tmp_path)
        except QmigrateError as exc:
            outcome["error"] = exc

    runner = threading.Thread(target=apply)
    runner.start()
    deadline = time.monotonic() + 60
    while not (store.exists("copy") and store.count("copy") > 0):
        assert time.monotonic() < deadline and runner.is_alive(), outcome
        time.sleep(0.01)
    proxy.stalled.set()
    stalled_at = time.monotonic()
    runner.join(timeout=60)
    assert not runner.is_alive(), "the job hangs on a stalled source"
    assert time.monotonic() - stalled_at < 8 * (1 + 1) + 5, "within timeout x retries"
    assert "reading from the source failed" in outcome["error"].message
    proxy.stalled.clear()
    summary = run_job(job(url, proxy, collection), tmp_path)  # and it resumes exactly
    assert (summary.count_check, store.count("copy")) == ("ok", RECORDS)
