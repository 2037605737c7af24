"""Shared fixtures: running the CLI, writing job files, and generating data."""

from __future__ import annotations

import json
import os
import random
import re
import select
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from qdrant_client import QdrantClient, models

from qmigrate.records import Partition, Record
from qmigrate.source_factory import create_source
from qmigrate.sources.base import Source

REPO = Path(__file__).resolve().parents[1]


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


def run_cli(
    *args: str,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 300,
    under: list[str] | None = None,
) -> CliResult:
    """Run `qmigrate` as a user would: a separate process, its exit code and both streams.
    `under` is a command prefix it runs under (`ip netns exec NAME`)."""
    completed = subprocess.run(
        [*(under or []), sys.executable, "-m", "qmigrate", *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return CliResult(completed.returncode, completed.stdout, completed.stderr)


@pytest.fixture(autouse=True)
def fresh_secrets() -> Iterator[None]:
    """Secrets a test's jobs registered (in this process) do not mask the next test's output."""
    yield
    from qmigrate.redaction import forget_secrets

    forget_secrets()


@pytest.fixture
def cli(tmp_path: Path) -> Callable[..., CliResult]:
    """`cli("apply", "job.yaml")`, run inside the test's temporary directory."""

    def call(*args: str, env: dict[str, str] | None = None) -> CliResult:
        return run_cli(*args, cwd=tmp_path, env=env)

    return call


@pytest.fixture
def write_job(tmp_path: Path) -> Callable[..., Path]:
    """Write a job (a dict, or YAML text) to a file in the test's directory."""

    def write(job: dict[str, Any] | str, name: str = "job.yaml") -> Path:
        path = tmp_path / name
        path.write_text(job if isinstance(job, str) else yaml.safe_dump(job, sort_keys=False))
        return path

    return write


def open_source(source_type: str, config: dict[str, Any], batch_size: int) -> Source:
    """A source as the engine builds it: through the registry, with the schema's defaults."""
    return create_source({"type": source_type, **config}, batch_size)


def read_partition(source: Source, partition: Partition, cursor: Any = None) -> list[Record]:
    return [r for page in source.read(partition, cursor) for r in page.records]


def read_everything(source: Source, n: int) -> list[Record]:
    return [r for p in source.partitions(n) for r in read_partition(source, p)]


def random_vector(rng: random.Random, size: int) -> list[float]:
    return [rng.uniform(-1, 1) for _ in range(size)]


def point_ids(count: int, seed: int = 0) -> list[int | str]:
    """A mix of integer and UUID IDs, as real collections have."""
    rng = random.Random(seed)
    return [i * 3 + 1 if i % 2 else str(uuid.UUID(int=rng.getrandbits(128))) for i in range(count)]


def sample_payload(i: int) -> dict[str, Any]:
    """Every JSON payload type Qdrant stores."""
    return {
        "i": i,
        "category": ["shoes", "hats", "bags"][i % 3],
        "price": round(i * 1.25, 2),
        "in_stock": i % 2 == 0,
        "tags": ["a", "b"] if i % 4 else [],
        "nested": {"level": {"value": i % 7}},
        "missing": None,
        "geo": {"lon": 13.4, "lat": 52.5},
    }


def make_qdrant_collection(
    path: Path,
    name: str = "docs",
    count: int = 300,
    size: int = 8,
    named: bool = True,
    seed: int = 0,
) -> list[models.PointStruct]:
    """A local-mode collection with dense (named or unnamed), sparse and multi vectors."""
    rng = random.Random(seed)
    client = QdrantClient(path=str(path))
    try:
        if named:
            client.create_collection(
                name,
                vectors_config={
                    "dense": models.VectorParams(size=size, distance=models.Distance.COSINE),
                    "colbert": models.VectorParams(
                        size=4,
                        distance=models.Distance.DOT,
                        multivector_config=models.MultiVectorConfig(
                            comparator=models.MultiVectorComparator.MAX_SIM
                        ),
                    ),
                },
                sparse_vectors_config={"text": models.SparseVectorParams()},
            )
        else:
            client.create_collection(
                name, vectors_config=models.VectorParams(size=size, distance=models.Distance.EUCLID)
            )
        points = []
        for i, point_id in enumerate(point_ids(count, seed)):
            if named:
                vector: Any = {
                    "dense": random_vector(rng, size),
                    "colbert": [random_vector(rng, 4) for _ in range(1 + i % 3)],
                    "text": models.SparseVector(
                        indices=sorted(rng.sample(range(1000), 3)),
                        values=[rng.random() for _ in range(3)],
                    ),
                }
            else:
                vector = random_vector(rng, size)
            points.append(models.PointStruct(id=point_id, vector=vector, payload=sample_payload(i)))
        client.upsert(name, points)
        return points
    finally:
        client.close()


def read_collection(path: Path, name: str) -> dict[Any, models.Record]:
    """Every point of a local-mode collection, by ID."""
    client = QdrantClient(path=str(path))
    try:
        return scroll_all(client, name)
    finally:
        client.close()


def scroll_all(client: QdrantClient, name: str) -> dict[Any, models.Record]:
    """Every point of a collection, by ID, with payloads and vectors."""
    out: dict[Any, models.Record] = {}
    offset = None
    while True:
        points, offset = client.scroll(
            name, limit=1000, offset=offset, with_payload=True, with_vectors=True
        )
        out.update({p.id: p for p in points})
        if offset is None:
            return out


def checkpoint_points(checkpoint_file: Path) -> int:
    """Points a file checkpoint store says are written, over all jobs and partitions."""
    try:
        data = json.loads(checkpoint_file.read_text())
    except (OSError, ValueError):
        return 0
    return sum(
        state["points"] for job in data["jobs"].values() for state in job["partitions"].values()
    )


def apply_and_kill_when(
    job: Path, reached: Callable[[], bool], timeout: float = 120, stderr: int = subprocess.DEVNULL
) -> bool:
    """Start a real `qmigrate apply`, SIGKILL it as soon as `reached()` says it got far enough.

    Returns True if the process was killed, False if it finished (or `timeout` passed) first.
    Waiting for progress, not for a fixed time, lands the kill mid-run on a loaded machine.
    """
    process = subprocess.Popen(
        [sys.executable, "-m", "qmigrate", "apply", str(job)],
        cwd=job.parent,
        stdout=subprocess.DEVNULL,
        stderr=stderr,
    )
    deadline = time.monotonic() + timeout
    try:
        while process.poll() is None and time.monotonic() < deadline:
            if reached():
                os.kill(process.pid, signal.SIGKILL)
                process.wait()
                return True
            time.sleep(0.005)
        return False
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def apply_and_kill(
    job: Path, checkpoint_file: Path, after_points: int, timeout: float = 120
) -> bool:
    """`apply_and_kill_when` its file checkpoints pass `after_points`. The job must use
    `checkpoint: {store: file, path: ...}` pointing at `checkpoint_file`."""
    return apply_and_kill_when(
        job, lambda: checkpoint_points(checkpoint_file) >= after_points, timeout
    )


def kill_mid_apply(job: Path, checkpoint_file: Path, after_points: int, count: int) -> int:
    """`apply_and_kill` of a job moving `count` points: the kill must land mid-run, after
    `after_points` are checkpointed. Returns the points checkpointed then."""
    assert apply_and_kill(job, checkpoint_file, after_points), "apply finished before the kill"
    checkpointed = checkpoint_points(checkpoint_file)
    assert after_points <= checkpointed < count
    return checkpointed


def apply_resumed(job: Path, count: int, env: dict[str, str] | None = None) -> dict[str, Any]:
    """`apply` again after a kill: it exits 0, reads fewer than `count` records (it resumed
    rather than starting over) and its count check finds `count` points. Its summary."""
    result = run_cli("apply", "--output", "json", str(job), cwd=job.parent, env=env)
    assert result.code == 0, result.stderr
    summary: dict[str, Any] = result.json()["jobs"][0]
    assert summary["read"] < count, "the second run resumed instead of starting over"
    assert (summary["total_points"], summary["count_check"]) == (count, "ok")
    return summary


def apply_and_kill_at_progress(job: Path, after_points: int, timeout: float = 120) -> bool:
    """`apply_and_kill_when` the progress bar shows `after_points` done (checkpointed), for
    stores no other process can read while apply runs (local mode locks its directory).

    apply's stderr is a pseudo-terminal, so it draws its bar every 0.2 s."""
    controller, terminal = os.openpty()
    drawn = ""

    def reached() -> bool:
        nonlocal drawn
        while select.select([controller], [], [], 0)[0]:  # read all, or apply blocks on it
            try:
                drawn = (drawn + os.read(controller, 65536).decode(errors="replace"))[-1000:]
            except OSError:  # apply has exited
                return False
        counts = re.findall(r"\] ([\d,]+)/", drawn)
        return bool(counts) and int(counts[-1].replace(",", "")) >= after_points

    try:
        return apply_and_kill_when(job, reached, timeout, stderr=terminal)
    finally:
        os.close(terminal)
        os.close(controller)


def run_job(document: dict[str, Any], directory: Path, name: str = "job.yaml") -> Any:
    """Load and apply a job in this process (faster than the CLI); returns the Summary."""
    from qmigrate import engine, spec

    path = directory / name
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    resolved = engine.resolve(spec.load(path, {}))
    try:
        return engine.apply(resolved)
    finally:
        resolved.close()


def assert_same_points(expected: dict[Any, Any], actual: dict[Any, Any]) -> None:
    """Same IDs, vectors and payloads, point by point."""
    assert sorted(map(str, actual)) == sorted(map(str, expected))
    for point_id, point in expected.items():
        assert as_stored(actual[point_id].vector) == as_stored(point.vector), point_id
        assert actual[point_id].payload == point.payload, point_id


def as_stored(vector: Any) -> Any:
    """A vector as Qdrant keeps it: float32 values, sparse ones too (local mode would keep
    float64 values as it is given them; qmigrate sends float32, and gRPC carries float32, as
    every server stores)."""
    if isinstance(vector, dict):
        return {name: as_stored(value) for name, value in vector.items()}
    if isinstance(vector, models.SparseVector):
        values = np.asarray(vector.values, dtype=np.float32).tolist()
        return models.SparseVector(indices=vector.indices, values=values)
    return np.asarray(vector, dtype=np.float32).tolist()


# Server fixtures live in tests/servers/, one module per system, imported here so every
# test can ask for them by name.
from tests.servers.chroma import chroma_server  # noqa: E402,F401
from tests.servers.elasticsearch import elasticsearch_server  # noqa: E402,F401
from tests.servers.ferretdb import ferretdb_server  # noqa: E402,F401
from tests.servers.milvus import milvus_lite_server, milvus_server  # noqa: E402,F401
from tests.servers.netns import loopback_netns  # noqa: E402,F401
from tests.servers.opensearch import opensearch_server  # noqa: E402,F401
from tests.servers.pinecone_fake import pinecone_fake  # noqa: E402,F401
from tests.servers.postgres import pg16_server, pg18_server  # noqa: E402,F401
from tests.servers.ray_cluster import ray_cluster  # noqa: E402,F401
from tests.servers.redis import redis_server  # noqa: E402,F401
from tests.servers.weaviate import weaviate_server  # noqa: E402,F401
