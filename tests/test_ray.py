"""The Ray executor on a real local Ray cluster (a head and one more worker node), writing
to the stand-in Qdrant REST endpoint in a process of its own: one server, many writers.

Sources are the real Chroma server and the Pinecone fake with 20 ms of latency per request.
A worker process is killed mid-job (Ray retries its task, which resumes from the cursor),
the driver is killed mid-job (a re-apply finishes it), and without Ray the job is one line.

The cluster, its drivers and every server the tasks reach run in a network namespace that
holds only `lo` (tests/servers/netns.py): outside it, Ray would give its nodes the machine's
non-loopback address. What this process does there (loading a source, reading the target)
runs on the namespace's thread.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from qdrant_client import QdrantClient

from tests.conftest import REPO, CliResult, as_stored, run_cli, scroll_all
from tests.servers.chroma import ChromaServer, running_chroma
from tests.servers.netns import LoopbackNamespace
from tests.servers.pinecone_fake import PineconeFake
from tests.servers.process import free_port, port_open, server_process
from tests.servers.qdrant_rest import running
from tests.servers.ray_cluster import RayCluster
from tests.sources.test_pinecone import expected_points, vectors

pytest.importorskip("ray")

LATENCY = 0.02


@dataclass(frozen=True)
class RestTarget:
    """The stand-in Qdrant REST endpoint inside the namespace, read from there."""

    url: str
    namespace: LoopbackNamespace

    def points(self, collection: str) -> dict[Any, Any]:
        return self.namespace.call(self._points, collection)

    def offsets(self, kind: str) -> list[dict[str, Any]]:
        """The checkpoint store's points of one kind (partition, lease), as the engine saved
        them."""
        return self.namespace.call(self._offsets, kind)

    def _points(self, collection: str) -> dict[Any, Any]:
        client = QdrantClient(url=self.url, timeout=30)
        try:
            return scroll_all(client, collection)
        finally:
            client.close()

    def _offsets(self, kind: str) -> list[dict[str, Any]]:
        client = QdrantClient(url=self.url, timeout=30)
        try:
            if not client.collection_exists("_migration_offsets"):
                return []
            points, _ = client.scroll("_migration_offsets", limit=1000, with_payload=True)
            return [
                {"job": p.payload["job"], **json.loads(p.payload["state"])}
                for p in points
                if p.payload["kind"] == kind
            ]
        finally:
            client.close()


@pytest.fixture
def rest_target(ray_cluster: RayCluster, tmp_path: Path) -> Iterator[RestTarget]:
    """The stand-in REST endpoint (local mode on disk behind it) as a process of its own, in
    the cluster's namespace."""
    namespace = ray_cluster.namespace
    port = free_port()
    env = {"PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-m", "tests.servers.qdrant_rest", "--port", str(port)]
    with server_process(
        namespace.command([*command, "--path", str(tmp_path / "qdrant")]),
        ready=lambda: namespace.call(port_open, port),
        log=tmp_path / "qdrant-rest.log",
        env=env,
    ):
        yield RestTarget(f"http://127.0.0.1:{port}", namespace)


@pytest.fixture
def pinecone_fake(ray_cluster: RayCluster) -> Iterator[PineconeFake]:
    """The fake with its control plane listening in the namespace (its indexes too: see
    `pinecone_data`)."""
    fake = ray_cluster.namespace.call(PineconeFake)
    try:
        yield fake
    finally:
        fake.close()


@pytest.fixture(scope="module")
def chroma_server(
    loopback_netns: LoopbackNamespace, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ChromaServer]:
    pytest.importorskip("chromadb")
    directory = tmp_path_factory.mktemp("chroma-netns")
    with running_chroma(directory, namespace=loopback_netns) as server:
        yield server


def pinecone_job(fake: PineconeFake, url: str, **extra: Any) -> dict[str, Any]:
    return {
        "version": 1,
        "name": "pc",
        "source": {
            "type": "pinecone",
            "api_key": fake.api_key,
            "controller_host": fake.url,
            "index": "docs",
        },
        "target": {"url": url, "collection": "docs"},
        "mapping": {"vectors": {"values": ""}},
        "batch_size": 50,
        "executor": {"type": "ray", "tasks": 3, "num_cpus_per_task": 1},
        **extra,
    }


def pinecone_data(
    fake: PineconeFake, count: int, namespace: LoopbackNamespace
) -> dict[Any, dict[str, Any]]:
    index = namespace.call(fake.create_index, "docs", dimension=4, metric="euclidean")
    index.upsert(vectors(count, dimension=4, sparse=False, seed=3))
    fake.latency = LATENCY
    return {
        key: {**point, "vector": point["vector"][""]}
        for key, point in expected_points(index, scoped=False, dense="").items()
    }


def assert_exact(target: RestTarget, expected: dict[Any, dict[str, Any]]) -> None:
    points = target.points("docs")
    assert sorted(map(str, points)) == sorted(map(str, expected))
    for key, want in expected.items():
        assert points[key].payload == want["payload"], key
        assert as_stored(points[key].vector) == as_stored(want["vector"]), key


def apply(path: Path, cluster: RayCluster, *extra: str) -> CliResult:
    """The driver, inside the cluster's namespace."""
    return run_cli(
        *("apply", str(path), "--ray-address", cluster.address, *extra),
        env=cluster.env,
        timeout=240,
        under=cluster.namespace.command([]),
    )


def start_apply(path: Path, cluster: RayCluster) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "qmigrate", "apply", str(path)]
    return subprocess.Popen(
        cluster.namespace.command([*command, "--ray-address", cluster.address]),
        cwd=path.parent,
        env=cluster.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def wait_for(
    condition: Any, timeout: float, what: str, driver: subprocess.Popen[Any] | None = None
) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if driver is not None and driver.poll() is not None:
            raise AssertionError(f"the driver exited ({driver.returncode}) before {what}")
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def summary_of(result: CliResult) -> dict[str, Any]:
    assert result.code == 0, result.stderr
    return result.json()["jobs"][0]


# --- loopback only -------------------------------------------------------------------

NODES = """
import json, sys, ray
ray.init(address=sys.argv[1], logging_level="ERROR")
print(json.dumps([{"address": n["NodeManagerAddress"], "alive": n["Alive"]} for n in ray.nodes()]))
"""


def test_the_cluster_and_its_driver_stay_on_loopback(ray_cluster: RayCluster) -> None:
    """Every node of the cluster, as a driver inside the namespace sees it, is on 127.0.0.1,
    and the namespace has no interface but `lo`."""
    namespace = ray_cluster.namespace
    assert ray_cluster.address.startswith("127.0.0.1:"), ray_cluster.address
    listed = subprocess.run(
        namespace.command([sys.executable, "-c", NODES, ray_cluster.address]),
        env=ray_cluster.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert listed.returncode == 0, listed.stderr
    nodes = json.loads(listed.stdout.strip().splitlines()[-1])
    assert [n["address"] for n in nodes if n["alive"]] == ["127.0.0.1", "127.0.0.1"], nodes
    links = subprocess.run(namespace.command(["ip", "-o", "link"]), capture_output=True, text=True)
    assert [line.split(": ")[1] for line in links.stdout.splitlines()] == ["lo"], links.stdout


# --- real jobs ------------------------------------------------------------------------


def test_a_pinecone_job_runs_as_ray_tasks_and_matches_the_source(
    ray_cluster: RayCluster, pinecone_fake: PineconeFake, rest_target: RestTarget, tmp_path: Path
) -> None:
    expected = pinecone_data(pinecone_fake, 600, ray_cluster.namespace)
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(pinecone_job(pinecone_fake, rest_target.url, partitions=6)))

    result = apply(path, ray_cluster, "--output", "json")
    summary = summary_of(result)
    assert summary["count_check"] == "ok", summary
    assert summary["partitions"] >= 6
    assert summary["written"] == summary["read"] == summary["total_points"] == 600
    assert_exact(rest_target, expected)
    done = rest_target.offsets("partition")
    assert len(done) == summary["partitions"] and all(p["done"] for p in done)
    assert rest_target.offsets("lease") == [], "every task let go of its partition lease"

    again = summary_of(apply(path, ray_cluster, "--output", "json"))
    assert again["status"] == "already done" and again["read"] == 0


def test_a_chroma_job_runs_as_ray_tasks_and_matches_the_source(
    ray_cluster: RayCluster, chroma_server: ChromaServer, rest_target: RestTarget, tmp_path: Path
) -> None:
    def load() -> dict[str, Any]:
        collection = chroma_server.client().create_collection("ray-docs", embedding_function=None)
        rng = random.Random(5)
        ids = [f"doc-{i}" for i in range(500)]
        collection.add(
            ids=ids,
            embeddings=[[rng.uniform(-1, 1) for _ in range(4)] for _ in ids],
            metadatas=[{"n": i, "kind": ["a", "b"][i % 2]} for i in range(500)],
        )
        return collection.get(include=["embeddings", "metadatas"])

    stored = ray_cluster.namespace.call(load)
    job = {
        "version": 1,
        "name": "chroma-ray",
        "source": {"type": "chroma", "url": chroma_server.url, "collection": "ray-docs"},
        "target": {"url": rest_target.url, "collection": "docs"},
        "batch_size": 40,
        "partitions": 5,
        "executor": {"type": "ray", "tasks": 2},
    }
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(job))

    summary = summary_of(apply(path, ray_cluster, "--output", "json"))
    assert summary["count_check"] == "ok" and summary["partitions"] == 5
    assert summary["written"] == 500
    points = {p.payload["original_id"]: p for p in rest_target.points("docs").values()}
    assert sorted(points) == sorted(stored["ids"])
    for record_id, vector, metadata in zip(
        stored["ids"], stored["embeddings"], stored["metadatas"], strict=True
    ):
        point = points[record_id]
        assert point.payload == {**metadata, "original_id": record_id}
        assert point.vector == pytest.approx(list(map(float, vector)), abs=1e-6)


# --- failures -------------------------------------------------------------------------


def test_a_killed_worker_is_retried_and_resumes_from_its_cursor(
    ray_cluster: RayCluster, pinecone_fake: PineconeFake, rest_target: RestTarget, tmp_path: Path
) -> None:
    expected = pinecone_data(pinecone_fake, 2000, ray_cluster.namespace)
    path = tmp_path / "job.yaml"
    job = pinecone_job(pinecone_fake, rest_target.url, partitions=4, batch_size=25)
    job["executor"]["tasks"] = 2
    path.write_text(yaml.safe_dump(job))
    command = [sys.executable, "-m", "qmigrate", "apply", str(path), "--output", "json"]
    driver = subprocess.Popen(
        ray_cluster.namespace.command([*command, "--ray-address", ray_cluster.address]),
        cwd=tmp_path,
        env=ray_cluster.env,
        stdout=subprocess.PIPE,  # one JSON document at the end: it fits the pipe
        stderr=subprocess.PIPE,
        text=True,
    )
    try:

        def leased_with_progress() -> tuple[dict[str, Any], int] | None:
            points = {p["key"]: p["points"] for p in rest_target.offsets("partition")}
            for lease in rest_target.offsets("lease"):  # the job's, and each partition's
                key = lease["job"].removeprefix("pc partition ")
                if points.get(key, 0) >= 100:
                    return lease, points[key]
            return None

        lease, at_kill = wait_for(
            leased_with_progress, 120, "a task with 100 points written", driver
        )
        key = lease["job"].removeprefix("pc partition ")
        os.kill(lease["pid"], signal.SIGKILL)  # the Ray worker process running that partition
        lowest, retried_by = at_kill, None
        while driver.poll() is None:
            for state in rest_target.offsets("partition"):
                if state["key"] == key:
                    lowest = min(lowest, state["points"])
            for other in rest_target.offsets("lease"):
                if other["job"] == lease["job"] and other["pid"] != lease["pid"]:
                    retried_by = other["pid"]
            time.sleep(0.02)
        stdout, stderr = driver.communicate()
    finally:
        if driver.poll() is None:
            driver.kill()
        driver.wait()
    assert driver.returncode == 0, stderr
    assert retried_by is not None, "Ray ran the partition again in another worker"
    assert lowest >= at_kill, "the retry resumed from the cursor; it did not start over"
    summary = json.loads(stdout)["jobs"][0]
    assert summary["count_check"] == "ok" and summary["target_count"] == 2000
    assert_exact(rest_target, expected)


def test_a_killed_driver_is_finished_by_a_re_apply(
    ray_cluster: RayCluster, pinecone_fake: PineconeFake, rest_target: RestTarget, tmp_path: Path
) -> None:
    expected = pinecone_data(pinecone_fake, 2000, ray_cluster.namespace)
    path = tmp_path / "job.yaml"
    path.write_text(
        yaml.safe_dump(pinecone_job(pinecone_fake, rest_target.url, partitions=4, batch_size=25))
    )
    driver = start_apply(path, ray_cluster)
    try:
        wait_for(
            lambda: sum(p["points"] for p in rest_target.offsets("partition")) >= 400,
            120,
            "400 points written",
            driver,
        )
        driver.send_signal(signal.SIGKILL)
    finally:
        driver.wait()

    summary = summary_of(apply(path, ray_cluster, "--output", "json"))
    assert summary["count_check"] == "ok" and summary["target_count"] == 2000
    assert summary["read"] < 2000, "the re-apply adopted what the killed run finished"
    assert_exact(rest_target, expected)


def test_a_failing_task_is_one_line_on_the_driver(
    ray_cluster: RayCluster, pinecone_fake: PineconeFake, rest_target: RestTarget, tmp_path: Path
) -> None:
    pinecone_data(pinecone_fake, 200, ray_cluster.namespace)
    bad = {"id": "short-vector", "values": [0.5, 0.25], "metadata": {}}  # 2 of 4 dimensions
    pinecone_fake.indexes["docs"].upsert([bad])
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(pinecone_job(pinecone_fake, rest_target.url, partitions=4)))

    result = apply(path, ray_cluster)
    assert result.code == 1 and "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("qmigrate:")]
    assert len(errors) == 1, result.stderr  # beside it, at most progress lines
    assert "record 'short-vector' cannot be migrated" in errors[0] and "on_invalid" in errors[0]


# --- refusals, each one line before anything is written ------------------------------


def file_job(tmp_path: Path, target: dict[str, Any], **extra: Any) -> Path:
    (tmp_path / "rows.jsonl").write_text(
        "".join(json.dumps({"id": i, "v": [i, 1.0]}) + "\n" for i in range(10))
    )
    job = {
        "version": 1,
        "name": "rows",
        "source": {"type": "file", "path": "rows.jsonl", "vectors": {"v": {"distance": "dot"}}},
        "target": {"collection": "docs", **target},
        "executor": {"type": "ray"},
        **extra,
    }
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(job))
    return path


def one_line(result: CliResult) -> str:
    assert result.code == 1, result
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("qmigrate: error: "), result.stderr
    return lines[0]


BLOCK_RAY = """\
import sys


class NoRay:
    def find_spec(self, name, path=None, target=None):
        if name == "ray" or name.startswith("ray."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, NoRay())
"""


def test_without_ray_a_ray_job_is_the_install_hint(tmp_path: Path) -> None:
    blocker = tmp_path / "no-ray"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(BLOCK_RAY)
    path = file_job(tmp_path, {"path": str(tmp_path / "qdrant")})
    env = {"PYTHONPATH": os.pathsep.join([str(blocker), str(REPO / "runner")])}
    assert run_cli("--version", env=env).code == 0
    blocked = subprocess.run(
        [sys.executable, "-c", "import ray"], env={**os.environ, **env}, capture_output=True
    )
    assert blocked.returncode == 1, "the blocker hides Ray from the subprocess"

    line = one_line(run_cli("apply", str(path), cwd=tmp_path, env=env))
    assert line.endswith(
        "executor ray needs Ray, which is not installed: pip install 'qmigrate[ray]'"
    )
    assert run_cli("apply", str(path), "--executor", "local", cwd=tmp_path, env=env).code == 0


def test_an_unreachable_cluster_is_one_line_and_writes_nothing(tmp_path: Path) -> None:
    with running() as (url, store, _):
        path = file_job(tmp_path, {"url": url})
        address = f"127.0.0.1:{free_port()}"
        started = time.monotonic()
        line = one_line(run_cli("apply", str(path), "--ray-address", address, cwd=tmp_path))
        assert f"cannot reach the Ray cluster at {address}" in line
        assert time.monotonic() - started < 60
        assert not store.exists("docs") and not store.exists("_migration_offsets")


def test_local_mode_targets_and_file_checkpoints_are_refused_before_any_write(
    tmp_path: Path,
) -> None:
    path = file_job(tmp_path, {"path": str(tmp_path / "qdrant")})
    line = one_line(run_cli("apply", str(path), cwd=tmp_path))
    assert "target.path (Qdrant local mode) cannot be used with executor ray" in line
    client = QdrantClient(path=str(tmp_path / "qdrant"))
    assert not client.collection_exists("docs")
    client.close()

    with running() as (url, store, _):
        path = file_job(tmp_path, {"url": url}, checkpoint={"store": "file"})
        line = one_line(run_cli("apply", str(path), cwd=tmp_path))
        assert "checkpoint.store file cannot be used with executor ray" in line
        assert not store.exists("docs")
        plan = run_cli("plan", str(path), cwd=tmp_path)
        assert plan.code == 1 and "checkpoint.store file cannot be used" in plan.stdout


def test_ray_address_needs_the_ray_executor(tmp_path: Path) -> None:
    path = file_job(tmp_path, {"path": str(tmp_path / "qdrant")})
    result = run_cli(
        "apply", str(path), "--executor", "local", "--ray-address", "auto", cwd=tmp_path
    )
    assert result.code == 2
    assert "--ray-address needs --executor ray" in result.stderr
