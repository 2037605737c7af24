"""A source server that goes away mid-run and comes back: the job either rides it out with
retries or stops with one clear line and its checkpoints intact; either way the next
apply finishes exactly. Each server is stopped by PID and restarted on the same port and
data: Chroma, Redis (valkey-server, whose data comes back from an RDB file), milvus-lite
and the real Milvus 2.3 server."""

from __future__ import annotations

import contextlib
import random
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from qmigrate.errors import QmigrateError
from tests.conftest import open_source, run_job
from tests.servers.chroma import running_chroma
from tests.servers.milvus import MilvusServer, running_milvus_lite
from tests.servers.qdrant_rest import Faults, Store
from tests.servers.redis import running_redis

RECORDS = 3000


@pytest.fixture(autouse=True)
def short_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Retries wait a quarter of their longest jitter (0.1 s, 0.2 s, 0.4 s, ... up to 7.5 s)."""
    monkeypatch.setattr("qmigrate.retry.random.uniform", lambda low, high: high / 4)


def job_document(source: dict[str, Any], url: str, batch_size: int = 20) -> dict[str, Any]:
    return {
        "version": 1,
        "name": "source-down",
        "source": source,
        "target": {"url": url, "collection": "copy"},
        "batch_size": batch_size,
        "parallelism": 2,
    }


class Background:
    """`apply` in a thread of this process: its Summary, or the QmigrateError it stopped with."""

    def __init__(self, job: dict[str, Any], directory: Path) -> None:
        self.job = job
        self.directory = directory
        self.outcome: dict[str, Any] = {}
        self.thread = threading.Thread(target=self._apply)
        self.thread.start()

    def _apply(self) -> None:
        try:
            self.outcome["summary"] = run_job(self.job, self.directory)
        except QmigrateError as exc:
            self.outcome["error"] = exc

    def wait_for(self, store: Store, points: int) -> None:
        deadline = time.monotonic() + 120
        while not (store.exists("copy") and store.count("copy") >= points):
            assert time.monotonic() < deadline and self.thread.is_alive(), self.outcome
            time.sleep(0.01)

    def finish(self, store: Store, records: int, must_ride_out: bool = False) -> Any:
        """The job's end once the server is back; then the target holds exactly `records`."""
        self.thread.join(timeout=180)
        assert not self.thread.is_alive(), "the job hangs"
        if "error" in self.outcome:  # stopped with one line; the next apply finishes exactly
            message = self.outcome["error"].message
            assert not must_ride_out, message
            assert "\n" not in message and "source" in message, message
            print(f"\nstopped in one line: {message}")
            summary = run_job(self.job, self.directory)
        else:  # rode it out with retries
            summary = self.outcome["summary"]
            assert summary.retries >= 1
            print(f"\nrode it out with {summary.retries} retries")
        assert summary.count_check == "ok"
        assert store.count("copy") == records
        return summary


def stopped_mid_run(store: Store, records: int) -> None:
    """Called once the server is stopped: the job had not written everything."""
    assert store.count("copy") < records, "stopped mid-run"
    time.sleep(1)


def test_chroma_stopped_and_restarted_mid_run(
    tmp_path: Path, stand_in: tuple[str, Store, Faults]
) -> None:
    pytest.importorskip("chromadb")
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
        source = {"type": "chroma", "url": server.url, "collection": "restarts", "timeout": 2}
        job = Background(job_document(source, url), tmp_path)
        job.wait_for(store, 300)
    stopped_mid_run(store, RECORDS)
    with running_chroma(tmp_path / "chroma", port=port):
        job.finish(store, RECORDS)


# Redis pages hold what a SCAN of at least 1,000 keys returned: enough keys for many pages.
REDIS_RECORDS = 10_000


def test_redis_stopped_and_restarted_mid_run(
    tmp_path: Path, stand_in: tuple[str, Store, Faults], capsys: pytest.CaptureFixture[str]
) -> None:
    """valkey-server runs with `--save ""`: the test SAVEs the loaded data to dump.rdb in the
    server's directory, which the restarted server loads. Its SCAN cursors are another
    process's: the partitions caught mid-scan are read again from their start."""
    np = pytest.importorskip("numpy")
    pytest.importorskip("redis")
    url, store, _ = stand_in
    rng = random.Random(10)
    (tmp_path / "redis").mkdir()
    with running_redis(tmp_path / "redis") as server:
        port = server.port
        client = server.client()
        client.execute_command(
            "FT.CREATE", "restarts", "ON", "HASH", "PREFIX", "1", "r:", "SCHEMA",
            "v", "VECTOR", "FLAT", "6", "TYPE", "FLOAT32", "DIM", "8", "DISTANCE_METRIC", "L2",
            "n", "NUMERIC",
        )  # fmt: skip
        pipeline = client.pipeline(transaction=False)
        for i in range(REDIS_RECORDS):
            vector = np.array([rng.uniform(-1, 1) for _ in range(8)], dtype="<f4")
            pipeline.hset(f"r:{i}", mapping={"v": vector.tobytes(), "n": i})
        pipeline.execute()
        client.save()
        source = {"type": "redis", "url": server.url, "index": "restarts", "timeout": 2}
        # One upsert at a time: with more, the pages queued and in flight (Redis pages are
        # SCAN replies of ~1,000 keys) held all 10,000 records before the server stopped.
        document = job_document(source, url, batch_size=100)
        document["target"]["in_flight"] = 1
        job = Background(document, tmp_path)
        job.wait_for(store, 1000)
    stopped_mid_run(store, REDIS_RECORDS)
    with running_redis(tmp_path / "redis", port=port) as server:
        assert server.client().dbsize() == REDIS_RECORDS, "the restarted server has its data"
        job.finish(store, REDIS_RECORDS)
    assert "reading it again from its start" in capsys.readouterr().err


def milvus_collection(server: MilvusServer, name: str, count: int) -> None:
    from pymilvus import DataType, MilvusClient

    client = server.client()
    try:
        schema = MilvusClient.create_schema(auto_id=False)
        schema.add_field("pk", DataType.INT64, is_primary=True)
        schema.add_field("v", DataType.FLOAT_VECTOR, dim=8)
        schema.add_field("n", DataType.INT64)
        index = client.prepare_index_params()
        index.add_index("v", index_type="FLAT", metric_type="L2")
        client.create_collection(name, schema=schema, index_params=index)
        rng = random.Random(11)
        rows = [
            {"pk": i, "v": [rng.uniform(-1, 1) for _ in range(8)], "n": i} for i in range(count)
        ]
        for start in range(0, count, 1000):
            client.insert(name, rows[start : start + 1000])
        client.flush(name)
    finally:
        client.close()


def milvus_source(server: MilvusServer, name: str) -> dict[str, Any]:
    source = {"type": "milvus", "uri": server.uri, "collection": name, "timeout": 10}
    return {**source, "token": server.token} if server.token else source


def test_milvus_lite_stopped_and_restarted_mid_read_is_ridden_out(
    tmp_path: Path, stand_in: tuple[str, Store, Faults], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lost connection is retried, and the restarted server's released collection is
    loaded again: the job never stops. The retries wait half their longest jitter (~12 s in
    all): with ~6 s, one run on a heavily loaded machine failed (output lost, likely a
    slow restart of milvus-lite's Python server)."""
    pytest.importorskip("pymilvus")
    monkeypatch.setattr("qmigrate.retry.random.uniform", lambda low, high: high / 2)
    url, store, _ = stand_in
    (tmp_path / "lite").mkdir()
    with running_milvus_lite(tmp_path / "lite") as server:
        port = int(server.uri.rsplit(":", 1)[1])
        milvus_collection(server, "restarts", RECORDS)
        job = Background(job_document(milvus_source(server, "restarts"), url), tmp_path)
        job.wait_for(store, 300)
    stopped_mid_run(store, RECORDS)
    with running_milvus_lite(tmp_path / "lite", port=port):
        job.finish(store, RECORDS, must_ride_out=True)


def test_milvus_source_connects_once_the_server_is_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A first connection that fails (the server is away, or dropped pymilvus's shared
    channel) is tried again on a channel of its own; here the server comes back right after
    the first attempt failed."""
    pytest.importorskip("pymilvus")
    from pymilvus import MilvusClient, MilvusException

    (tmp_path / "lite").mkdir()
    # Stopped right after the data is written: it must close its files.
    with running_milvus_lite(tmp_path / "lite", stop_signal=signal.SIGINT) as server:
        port = int(server.uri.rsplit(":", 1)[1])
        milvus_collection(server, "back", 50)
    attempts: list[bool] = []
    with contextlib.ExitStack() as servers:

        def connect(**options: Any) -> MilvusClient:
            """The real client, and the server started once its first connection failed."""
            attempts.append(options["dedicated"])
            try:
                return MilvusClient(**options)
            except MilvusException:
                if len(attempts) == 1:
                    servers.enter_context(running_milvus_lite(tmp_path / "lite", port=port))
                raise

        monkeypatch.setattr("qmigrate.sources.milvus.MilvusClient", connect)
        # localhost, not 127.0.0.1: no channel that pymilvus shares with the test's client.
        source = open_source(
            "milvus", {"uri": f"http://localhost:{port}", "collection": "back"}, 20
        )
        try:
            assert source.describe().count == 50
        finally:
            source.close()
    assert attempts == [False, True], "the first attempt failed, the second connected"


def test_milvus_server_stopped_and_restarted_mid_run(
    tmp_path: Path, stand_in: tuple[str, Store, Faults], milvus_server: MilvusServer
) -> None:
    """The session's real Milvus 2.3 standalone server (it takes ~8 s to start: reused),
    restarted on the same port and data directory. It takes ~8 s to come back, about what
    the retries here wait: either outcome is fine."""
    pytest.importorskip("pymilvus")
    url, store, _ = stand_in
    assert milvus_server.stopped is not None
    name = "restarts_" + "".join(c if c.isalnum() else "_" for c in tmp_path.name[-20:])
    milvus_collection(milvus_server, name, RECORDS)
    job = Background(job_document(milvus_source(milvus_server, name), url), tmp_path)
    job.wait_for(store, 300)
    with milvus_server.stopped():
        stopped_mid_run(store, RECORDS)
    job.finish(store, RECORDS)
