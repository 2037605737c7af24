"""The Pinecone source, end to end: the real `pinecone` SDK against the HTTP fake, the CLI,
a local-mode Qdrant target compared point by point.

Most runs call the CLI's `main` in this process (the same code, without 1.5 s of start-up
each); a separate process where it matters: kill -9, tracebacks, the headline job.
"""

from __future__ import annotations

import json
import random
import re
import shutil
import struct
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import yaml
from pinecone import Pinecone
from pinecone._internal import http_client
from qdrant_client import models

from qmigrate import retry
from qmigrate.cli import main
from qmigrate.mapping import point_id
from qmigrate.records import Partition
from qmigrate.sources import kit
from qmigrate.sources.pinecone import METADATA_FILTER
from tests.conftest import (
    REPO,
    CliResult,
    apply_and_kill,
    as_stored,
    open_source,
    read_collection,
)
from tests.servers.pinecone_fake import DEFAULT_NAMESPACE, FakeIndex, PineconeFake
from tests.servers.process import free_port

Cli = Callable[..., CliResult]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Path]:
    """Where targets and checkpoints go: memory-backed where the OS offers it, because on a
    shared disk the local-mode target's fsyncs, not the source, would set the pace."""
    shm = Path("/dev/shm")
    if not shm.is_dir():
        yield tmp_path
        return
    path = Path(tempfile.mkdtemp(dir=shm, prefix="qmigrate-pinecone-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def qm(capsys: pytest.CaptureFixture[str]) -> Cli:
    """`qmigrate ARGS...` run by the CLI's entry point in this process."""

    def call(*args: str) -> CliResult:
        code = main(list(args))
        out, err = capsys.readouterr()
        return CliResult(code, out, err)

    return call


def f32(value: float) -> float:
    """A float that survives float32 storage exactly, as Pinecone and Qdrant keep vectors."""
    return struct.unpack("f", struct.pack("f", value))[0]


def vectors(
    count: int, *, dimension: int | None = 8, sparse: bool = True, seed: int = 0, start: int = 0
) -> list[dict[str, Any]]:
    """Records with the ID shapes Pinecone users have: chunk IDs, UUIDs, numeric strings."""
    rng = random.Random(seed)
    out = []
    for i in range(start, start + count):
        shape = i % 4
        if shape == 0:
            vector_id = str(uuid.UUID(int=rng.getrandbits(128)))
        elif shape == 1:
            vector_id = str(1000 + i)
        else:
            vector_id = f"doc-{i // 4}#chunk-{shape}"
        record: dict[str, Any] = {
            "id": vector_id,
            "metadata": {
                "category": ["shoes", "hats", "bags"][i % 3],
                "price": i * 1.25,
                "in_stock": i % 2 == 0,
                "tags": ["a", "b"][: i % 3],
            },
        }
        if dimension:
            record["values"] = [f32(rng.uniform(-1, 1)) for _ in range(dimension)]
        if sparse:
            indices = sorted(rng.sample(range(10_000), 1 + i % 5))
            record["sparse_values"] = {
                "indices": indices,
                "values": [f32(rng.random()) for _ in indices],
            }
        out.append(record)
    return out


def expected_points(
    index: FakeIndex,
    *,
    scoped: bool,
    namespace_field: str | None = None,
    dense: str = "dense",
    sparse: str = "sparse",
) -> dict[Any, dict[str, Any]]:
    """What the target must hold: Qdrant point ID -> vectors and payload."""
    out: dict[Any, dict[str, Any]] = {}
    for namespace, records in index.namespaces.items():
        for vector_id, record in records.items():
            raw = f"{quote(namespace, safe='')}/{vector_id}" if scoped else vector_id
            qdrant_id, original = point_id(raw)
            payload = dict(record.get("metadata", {}))
            if namespace_field:
                payload[namespace_field] = namespace
            if original is not None:
                payload["original_id"] = original
            point_vectors: dict[str, Any] = {}
            if record["values"]:
                point_vectors[dense] = record["values"]
            if "sparseValues" in record:
                point_vectors[sparse] = models.SparseVector(**record["sparseValues"])
            assert qdrant_id not in out, f"{raw} collides with another point"
            out[qdrant_id] = {"vector": point_vectors, "payload": payload}
    return out


def assert_target_equals(path: Path, collection: str, expected: dict[Any, dict[str, Any]]) -> None:
    points = read_collection(path, collection)
    assert set(points) == set(expected)
    for point_key, want in expected.items():
        point = points[point_key]
        assert point.payload == want["payload"], point_key
        assert as_stored(point.vector) == as_stored(want["vector"]), point_key


def job(fake: PineconeFake, store: Path, source: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "version": 1,
        "name": "pc",
        "source": {
            "type": "pinecone",
            "api_key": fake.api_key,
            "controller_host": fake.url,
            **source,
        },
        "target": {"path": str(store / "qdrant"), "collection": "docs"},
        "batch_size": 100,
        **extra,
    }


def one_line_error(result: CliResult) -> str:
    assert result.code == 1, result
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("qmigrate: error: source Pinecone"), (
        result.stderr
    )
    return lines[0]


# --- end to end -------------------------------------------------------------------------


def test_namespaces_dense_sparse_and_string_ids(
    pinecone_fake: PineconeFake,
    store: Path,
    qm: Cli,
    write_job: Callable[..., Path],
) -> None:
    index = pinecone_fake.create_index("products", dimension=8, metric="dotproduct", sparse=True)
    index.upsert(vectors(200, seed=1))
    index.upsert(vectors(200, seed=2, start=1000), namespace="tenant-a")
    index.upsert(vectors(40, seed=3), namespace="tenant/b")
    # The same IDs in two namespaces, and a pair that only percent-encoding keeps apart.
    index.upsert(vectors(3, seed=4, start=7000), namespace="tenant-a")
    index.upsert(vectors(3, seed=5, start=7000), namespace="tenant/b")
    index.upsert([{**vectors(1, seed=6)[0], "id": "b/x"}], namespace="tenant")
    index.upsert([{**vectors(1, seed=7)[0], "id": "x"}], namespace="tenant/b")
    path = write_job(
        job(
            pinecone_fake,
            store,
            {"index": "products", "namespace_field": "tenant"},
            mapping={"vectors": {"values": "dense", "sparse_values": "sparse"}},
            parallelism=6,
        )
    )

    plan = qm("plan", str(path), "--output", "json")
    assert plan.code == 0, plan.stderr
    described = plan.json()["jobs"][0]
    assert described["source"]["count"] == 448
    assert {v["name"]: v["distance"] for v in described["source"]["vectors"]} == {
        "values": "Dot",
        "sparse_values": None,
    }
    assert "tenant" in described["source"]["payload_fields"]
    streams = [s for p in described["partitions"] for s in p["streams"]]
    assert len(described["partitions"]) >= 6
    assert {s["namespace"] for s in streams} == {
        DEFAULT_NAMESPACE,
        "tenant-a",
        "tenant/b",
        "tenant",
    }
    assert any(s.get("list") for s in streams), "large namespaces are split by ID prefix"

    result = qm("apply", str(path), "--output", "json")
    assert result.code == 0, result.stderr
    summary = result.json()["jobs"][0]
    assert summary["count_check"] == "ok" and summary["written"] == 448
    expected = expected_points(index, scoped=True, namespace_field="tenant")
    assert_target_equals(store / "qdrant", "docs", expected)


def test_resume_after_kill_in_the_middle_of_a_namespace(
    pinecone_fake: PineconeFake,
    store: Path,
    qm: Cli,
    write_job: Callable[..., Path],
) -> None:
    index = pinecone_fake.create_index("docs", dimension=4, metric="euclidean")
    index.upsert(vectors(800, dimension=4, sparse=False), namespace="only")
    pinecone_fake.latency = 0.05
    checkpoint = store / "checkpoint.json"
    path = write_job(
        job(
            pinecone_fake,
            store,
            {"index": "docs", "namespaces": "only"},
            mapping={"vectors": {"values": ""}},
            checkpoint={"store": "file", "path": str(checkpoint)},
            parallelism=2,
        )
    )
    assert apply_and_kill(path, checkpoint, after_points=250), "the job ended before the kill"
    pinecone_fake.latency = 0.0

    result = qm("apply", str(path), "--output", "json")
    assert result.code == 0, result.stderr
    summary = result.json()["jobs"][0]
    assert summary["count_check"] == "ok"
    assert 0 < summary["read"] < 800, "the second run resumed, it did not start over"
    expected = {
        key: {**point, "vector": point["vector"][""]}
        for key, point in expected_points(index, scoped=False, dense="").items()
    }
    assert_target_equals(store / "qdrant", "docs", expected)


def test_a_429_storm_ends_in_success_with_nothing_lost(
    pinecone_fake: PineconeFake,
    store: Path,
    qm: Cli,
    write_job: Callable[..., Path],
) -> None:
    index = pinecone_fake.create_index("docs", dimension=8, metric="dotproduct")
    index.upsert(vectors(200, seed=8))
    index.upsert(vectors(100, seed=9, start=500), namespace="b")
    path = write_job(job(pinecone_fake, store, {"index": "docs"}))
    # The describe-time sample gets through. Then the SDK's own 3 retries run out, once on
    # 503s and twice on 429s (it waits the Retry-After): each time the engine backs off and
    # re-opens the partition from its cursor. One partition, so the count is exact.
    pinecone_fake.fail_next(8, status=429, retry_after=0.05, path="/vectors/fetch", after=1)
    pinecone_fake.fail_next(4, status=503, path="/vectors/list", after=1)
    result = qm("apply", str(path), "--output", "json")
    assert result.code == 0, result.stderr
    summary = result.json()["jobs"][0]
    assert summary["retries"] == 3 and summary["count_check"] == "ok"
    assert pinecone_fake.count("/vectors/fetch") == 1 + 8 + 3  # sample, failures, 3 pages
    expected = expected_points(index, scoped=True, dense="values", sparse="sparse_values")
    assert_target_equals(store / "qdrant", "docs", expected)


def test_a_wrong_key_is_one_clear_line(
    pinecone_fake: PineconeFake,
    store: Path,
    cli: Cli,
    qm: Cli,
    write_job: Callable[..., Path],
) -> None:
    index = pinecone_fake.create_index("docs", dimension=4)
    index.upsert(vectors(10, dimension=4, sparse=False))
    by_name = write_job(job(pinecone_fake, store, {"index": "docs", "api_key": "wrong"}))
    line = one_line_error(cli("apply", str(by_name)))
    assert "API key was rejected" in line and "wrong" not in line
    by_host = write_job(
        job(pinecone_fake, store, {"host": index.host, "api_key": "wrong"}), "host.yaml"
    )
    assert "API key was rejected" in one_line_error(qm("plan", str(by_host)))
    assert not (store / "qdrant").exists()


def test_a_wrong_controller_host_is_one_clear_line(
    pinecone_fake: PineconeFake, store: Path, qm: Cli, write_job: Callable[..., Path]
) -> None:
    index = pinecone_fake.create_index("docs", dimension=4)
    wrong = job(pinecone_fake, store, {"index": "docs", "controller_host": index.host})
    line = one_line_error(qm("plan", str(write_job(wrong))))
    assert f"Pinecone control plane {index.host} (is controller_host right?): HTTP 404" in line


def test_a_pod_index_asks_for_ids_file_and_ids_file_works(
    pinecone_fake: PineconeFake,
    tmp_path: Path,
    store: Path,
    qm: Cli,
    write_job: Callable[..., Path],
) -> None:
    index = pinecone_fake.create_index("pods", dimension=6, metric="euclidean", pod=True)
    index.upsert(vectors(150, dimension=6, sparse=False, seed=10))
    by_name = write_job(job(pinecone_fake, store, {"index": "pods"}))
    for command in ("plan", "apply"):
        line = one_line_error(qm(command, str(by_name)))
        assert "pod-based" in line and "source.ids_file" in line
    by_host = write_job(job(pinecone_fake, store, {"host": index.host}), "host.yaml")
    line = one_line_error(qm("plan", str(by_host)))
    assert "cannot list its IDs" in line and "source.ids_file" in line
    assert pinecone_fake.count("/vectors/list") == 1  # only the by-host attempt

    ids = tmp_path / "ids.txt"
    ids.write_text("\n".join(index.namespaces[DEFAULT_NAMESPACE]) + "\nno-such-id\n\n")
    with_ids = write_job(
        job(pinecone_fake, store, {"index": "pods", "ids_file": str(ids)}, parallelism=3),
        "ids.yaml",
    )
    result = qm("apply", str(with_ids), "--output", "json")
    assert result.code == 0, result.stderr
    summary = result.json()["jobs"][0]
    assert summary["partitions"] == 3 and summary["count_check"] == "ok"
    expected = expected_points(index, scoped=False, dense="values")
    assert_target_equals(store / "qdrant", "docs", expected)


def test_a_sparse_only_index(
    pinecone_fake: PineconeFake,
    store: Path,
    qm: Cli,
    write_job: Callable[..., Path],
) -> None:
    index = pinecone_fake.create_index("splade", sparse=True)
    index.upsert(vectors(120, dimension=None, seed=11), namespace="en")
    path = write_job(job(pinecone_fake, store, {"index": "splade"}, parallelism=2))
    result = qm("apply", str(path), "--output", "json")
    assert result.code == 0, result.stderr
    expected = expected_points(index, scoped=False, sparse="sparse_values")
    assert_target_equals(store / "qdrant", "docs", expected)


def test_filter_goes_to_fetch_by_metadata_where_it_can(
    pinecone_fake: PineconeFake,
    store: Path,
    qm: Cli,
    write_job: Callable[..., Path],
) -> None:
    index = pinecone_fake.create_index("docs", dimension=4, metric="dotproduct")
    index.upsert(vectors(200, dimension=4, sparse=False, seed=12))
    flt = {
        "must": [
            {"key": "category", "match": {"any": ["shoes", "hats"]}},
            {"key": "price", "range": {"gte": 10, "lt": 200}},
        ],
        "must_not": [{"key": "in_stock", "match": {"value": True}}],
    }
    path = write_job(job(pinecone_fake, store, {"index": "docs"}, filter=flt))
    plan = qm("plan", str(path))
    assert plan.code == 0, plan.stderr
    assert "partly pushed down; the rest evaluated client-side" in plan.stdout
    assert qm("apply", str(path)).code == 0
    points = read_collection(store / "qdrant", "docs")
    wanted = {
        point_id(i)[0]
        for i, r in index.namespaces[DEFAULT_NAMESPACE].items()
        if r["metadata"]["category"] != "bags"
        and 10 <= r["metadata"]["price"] < 200
        and not r["metadata"]["in_stock"]
    }
    assert set(points) == wanted and wanted
    assert pinecone_fake.count("/vectors/fetch_by_metadata") > 0
    assert pinecone_fake.count("/vectors/fetch") == 2  # the plan's and the apply's samples


def test_the_headline_job_validates_with_any_environment(cli: Cli) -> None:
    file = REPO / "jobs" / "pinecone-to-cloud.yaml"
    names = set(re.findall(r"env\.([A-Z_][A-Z0-9_]*)", file.read_text()))
    assert {"PINECONE_API_KEY", "QDRANT_URL", "QDRANT_API_KEY"} <= names
    anything = cli(
        "validate", str(file), env={**dict.fromkeys(names, "x"), "QDRANT_URL": "http://q"}
    )
    assert anything.code == 0, anything.stderr
    cloud = {
        "PINECONE_API_KEY": "k",
        "QDRANT_URL": "https://x.cloud.qdrant.io",
        "QDRANT_API_KEY": "k",
    }
    result = cli("validate", str(file), env=cloud)
    assert result.code == 0, result.stderr


def test_the_headline_job_runs_against_the_fake(
    pinecone_fake: PineconeFake, store: Path, cli: Cli
) -> None:
    index = pinecone_fake.create_index("products", dimension=8, metric="dotproduct", sparse=True)
    index.upsert(vectors(150, seed=13))
    index.upsert(vectors(60, seed=14), namespace="tenant-a")
    env = {"PINECONE_API_KEY": pinecone_fake.api_key, "PINECONE_CONTROLLER_HOST": pinecone_fake.url}
    # The job as published, its target moved to a local directory (no Qdrant server here).
    document = yaml.safe_load((REPO / "jobs" / "pinecone-to-cloud.yaml").read_text())
    document["target"] = {**document["target"], "path": str(store / "qdrant")}
    del document["target"]["url"], document["target"]["api_key"]
    local = store / "pinecone-to-local.yaml"
    local.write_text(yaml.safe_dump(document))
    result = cli("apply", str(local), env=env)
    assert result.code == 0, result.stderr
    expected = expected_points(index, scoped=True, sparse="sparse_values")
    assert_target_equals(store / "qdrant", "products", expected)


# --- in process -------------------------------------------------------------------------


def test_sdk_errors_reach_the_engine_as_transient_with_retry_after(
    pinecone_fake: PineconeFake, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(http_client, "_retry_sleep", lambda _seconds: None)
    index = pinecone_fake.create_index("docs", dimension=4)
    client = Pinecone(api_key=pinecone_fake.api_key, host=pinecone_fake.url).index(host=index.host)
    for status, retry_after in ((429, 0.25), (503, None)):
        pinecone_fake.fail_next(4, status=status, retry_after=retry_after)  # outlast the SDK's
        with pytest.raises(Exception) as caught:
            client.list_paginated(namespace="")
        assert retry.is_transient(caught.value)
        assert retry.retry_after(caught.value) == retry_after
    wrong = Pinecone(api_key="wrong", host=pinecone_fake.url).index(host=index.host)
    with pytest.raises(Exception) as caught:
        wrong.list_paginated(namespace="")
    assert not retry.is_transient(caught.value)
    closed = Pinecone(api_key="k").index(host=f"http://127.0.0.1:{free_port()}")
    with pytest.raises(Exception) as caught:
        closed.list_paginated(namespace="")
    assert retry.is_transient(caught.value)


def test_rate_limit_caps_requests_per_second(pinecone_fake: PineconeFake) -> None:
    index = pinecone_fake.create_index("docs", dimension=4)
    index.upsert(vectors(400, dimension=4, sparse=False))
    config = {"type": "pinecone", "api_key": pinecone_fake.api_key, "host": index.host}
    source = open_source("pinecone", {**config, "rate_limit": 20}, batch_size=100)
    try:
        source.describe()
        (partition,) = source.partitions(1)
        started = time.monotonic()
        pages = list(source.read(partition, None))
        elapsed = time.monotonic() - started
    finally:
        source.close()
    assert sum(len(p.records) for p in pages) == 400
    requests = 5 + 4  # 4 pages: 5 lists (a full page always has a next one) and 4 fetches
    assert elapsed >= (requests - 1) / 20


def test_partitions_are_disjoint_complete_and_resume_from_every_cursor(
    pinecone_fake: PineconeFake,
) -> None:
    index = pinecone_fake.create_index("docs", dimension=4)
    index.upsert(vectors(230, dimension=4, sparse=False))
    # IDs behind a shared prefix, and IDs equal to parts of it.
    chunks = [f"doc-{i}#c" for i in range(120)] + ["d", "doc", "doc-"]
    index.upsert([{"id": i, "values": [0.5] * 4} for i in chunks], namespace="chunks")
    config = {"type": "pinecone", "api_key": pinecone_fake.api_key, "host": index.host}
    source = open_source("pinecone", config, batch_size=40)
    try:
        source.describe()
        partitions = source.partitions(3)
        assert len(partitions) > 3
        seen: list[str] = []
        for partition in partitions:
            partition = Partition(partition.key, json.loads(json.dumps(partition.spec)))
            pages = list(source.read(partition, None))
            ids = [r.id for p in pages for r in p.records]
            seen += ids
            for number, page in enumerate(pages):
                cursor = json.loads(json.dumps(page.cursor))
                rest = [r.id for p in source.read(partition, cursor) for r in p.records]
                assert rest == ids[sum(len(p.records) for p in pages[: number + 1]) :]
    finally:
        source.close()
    everything = [f"{quote(ns)}/{i}" for ns, records in index.namespaces.items() for i in records]
    assert sorted(seen) == sorted(everything)


@pytest.mark.parametrize(
    ("flt", "pushed", "residual"),
    [
        (
            {"must": [{"key": "a", "match": {"value": "x"}}]},
            {"a": {"$eq": "x"}},
            None,
        ),
        (  # Pinecone stores numbers as floats, which Qdrant's integer match never selects
            {"must": [{"key": "n", "match": {"value": 4}}]},
            None,
            {"must": [{"key": "n", "match": {"value": 4}}]},
        ),
        (
            {
                "must": [
                    {"key": "a", "match": {"any": ["x", "y"]}},
                    {"key": "n", "range": {"gt": 1, "lte": 5}},
                    {"key": "t", "match": {"text": "hello"}},
                    {"key": "nested.k", "match": {"value": 1}},
                ],
                "should": [
                    {"key": "b", "match": {"value": True}},
                    {"key": "c", "match": {"value": "z"}},
                ],
            },
            {
                "$and": [
                    {"a": {"$in": ["x", "y"]}},
                    {"$and": [{"n": {"$gt": 1}}, {"n": {"$lte": 5}}]},
                    {"$or": [{"b": {"$eq": True}}, {"c": {"$eq": "z"}}]},
                ]
            },
            {
                "must": [
                    {"key": "t", "match": {"text": "hello"}},
                    {"key": "nested.k", "match": {"value": 1}},
                ]
            },
        ),
        (
            {
                "should": [{"key": "a", "match": {"value": 1}}, {"is_empty": {"key": "b"}}],
                "must_not": [{"key": "c", "match": {"value": 1}}],
            },
            None,
            {
                "should": [{"key": "a", "match": {"value": 1}}, {"is_empty": {"key": "b"}}],
                "must_not": [{"key": "c", "match": {"value": 1}}],
            },
        ),
        (
            {"must": [{"should": [{"key": "a", "match": {"value": "v"}}]}, {"has_id": ["x"]}]},
            {"a": {"$eq": "v"}},
            {"must": [{"has_id": ["x"]}]},
        ),
    ],
)
def test_filter_translation(
    flt: dict[str, Any], pushed: dict[str, Any] | None, residual: dict[str, Any] | None
) -> None:
    assert kit.split_filter(flt, METADATA_FILTER) == (pushed, residual)
