"""Qdrant -> Qdrant, local mode on both ends: every vector kind, payload type and ID kind."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from qdrant_client import QdrantClient, models
from qdrant_client import grpc as pb

from qmigrate.errors import QmigrateError
from qmigrate.records import SparseVector
from qmigrate.sources.base import Source
from qmigrate.sources.qdrant import _grpc_vector
from tests.conftest import (
    as_stored,
    assert_same_points,
    make_qdrant_collection,
    open_source,
    read_collection,
    run_cli,
    run_job,
)
from tests.servers.qdrant_grpc import running_both


def job(tmp_path: Path, **extra: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "version": 1,
        "name": "q2q",
        "source": {"type": "qdrant", "path": str(tmp_path / "source"), "collection": "docs"},
        "target": {"path": str(tmp_path / "target"), "collection": "copy"},
        "batch_size": 32,
    }
    document.update(extra)
    return document


@pytest.mark.parametrize("named", [True, False], ids=["named-dense-sparse-multi", "unnamed"])
def test_migrates_every_vector_kind_and_payload_exactly(tmp_path: Path, named: bool) -> None:
    make_qdrant_collection(tmp_path / "source", count=150, named=named)
    summary = run_job(job(tmp_path, parallelism=3), tmp_path)
    assert (summary.written, summary.count_check) == (150, "ok")
    expected = read_collection(tmp_path / "source", "docs")
    assert_same_points(expected, read_collection(tmp_path / "target", "copy"))
    assert any(isinstance(i, int) for i in expected) and any(isinstance(i, str) for i in expected)


@pytest.mark.parametrize("named", [True, False], ids=["named-dense-sparse-multi", "unnamed"])
@pytest.mark.parametrize("prefer_grpc", [None, False], ids=["grpc-by-default", "rest"])
def test_a_server_source_moves_every_vector_kind_exactly(
    tmp_path: Path, named: bool, prefer_grpc: bool | None
) -> None:
    """From a server (the stand-in, serving local-mode data): by default over gRPC, whose
    pages are read from the protobuf messages themselves, or over REST."""
    make_qdrant_collection(tmp_path / "source", count=150, named=named)
    expected = read_collection(tmp_path / "source", "docs")
    with running_both(str(tmp_path / "source")) as (url, grpc_port, store):
        source: dict[str, Any] = {
            "type": "qdrant",
            "url": url,
            "grpc_port": grpc_port,
            "collection": "docs",
        }
        if prefer_grpc is not None:
            source["prefer_grpc"] = prefer_grpc
        summary = run_job(job(tmp_path, source=source, parallelism=3), tmp_path)
    assert (summary.written, summary.count_check) == (150, "ok")
    assert_same_points(expected, read_collection(tmp_path / "target", "copy"))
    used, unused = ("grpc", "rest") if prefer_grpc is None else ("rest", "grpc")
    assert store.scrolls[used] > 0 and store.scrolls[unused] == 0


def test_grpc_pages_carry_dense_vectors_as_float32_arrays(tmp_path: Path) -> None:
    make_qdrant_collection(tmp_path / "source", count=20)
    with running_both(str(tmp_path / "source")) as (url, grpc_port, _store):
        config = {"url": url, "grpc_port": grpc_port, "collection": "docs"}
        source = open_source("qdrant", config, batch_size=8)
        try:
            source.describe()
            (partition,) = source.partitions(1)
            pages = list(source.read(partition, None))
        finally:
            source.close()
    records = [r for page in pages for r in page.records]
    assert len(records) == 20
    for record in records:
        dense = record.vectors["dense"]
        assert isinstance(dense, np.ndarray) and dense.dtype == np.float32 and dense.shape == (8,)
    for page in pages:  # one matrix per page, whose rows the records hold (Page.matrices)
        matrix = page.matrices["dense"]
        assert matrix.shape == (len(page.records), 8)
        assert all(np.shares_memory(r.vectors["dense"], matrix) for r in page.records)


@pytest.mark.parametrize("size", [0, 1, 31, 32, 768, 5000])
def test_a_grpc_dense_vector_is_read_from_its_packed_bytes_exactly(size: int) -> None:
    """Read from the field's bytes, whatever the length's varint takes (1 byte up to 31
    floats, 2 from 32, 3 from 4096): the same float32s as protobuf's own repeated field."""
    data = np.random.default_rng(size).standard_normal(size).astype(np.float32)
    message = pb.VectorOutput(dense=pb.DenseVector(data=data.tolist()))
    dense = _grpc_vector(pb.VectorOutput.FromString(message.SerializeToString()))
    assert isinstance(dense, np.ndarray) and dense.dtype == np.float32
    assert np.array_equal(dense, np.array(message.dense.data, dtype=np.float32))
    assert dense.shape == (size,)


def test_grpc_vectors_in_the_older_layout_are_read_too() -> None:
    """Servers from before the `dense` field send a dense vector as `data` alone, a sparse
    one as `data` with `indices`, and a multi-vector as `data` with `vectors_count`."""
    dense = _grpc_vector(pb.VectorOutput(data=[0.5, -1.0]))
    assert isinstance(dense, np.ndarray) and dense.dtype == np.float32
    assert dense.tolist() == [0.5, -1.0]
    sparse = _grpc_vector(pb.VectorOutput(data=[0.5], indices=pb.SparseIndices(data=[7])))
    assert sparse == SparseVector([7], [0.5])
    assert _grpc_vector(pb.VectorOutput(data=[1, 2, 3, 4], vectors_count=2)) == [[1, 2], [3, 4]]


def test_target_collection_is_created_from_the_source_config(tmp_path: Path) -> None:
    make_qdrant_collection(tmp_path / "source", count=5)
    run_job(job(tmp_path), tmp_path)
    client = QdrantClient(path=str(tmp_path / "target"))
    params = client.get_collection("copy").config.params
    client.close()
    assert params.vectors["dense"].size == 8
    assert params.vectors["dense"].distance == models.Distance.COSINE
    assert params.vectors["colbert"].multivector_config is not None
    assert set(params.sparse_vectors) == {"text"}


def test_filter_is_pushed_down_and_selects_exactly(tmp_path: Path) -> None:
    points = make_qdrant_collection(tmp_path / "source", count=120)
    flt = {
        "must": [
            {"key": "category", "match": {"value": "hats"}},
            {"key": "price", "range": {"gte": 20}},
        ]
    }
    document = job(tmp_path, filter=flt, parallelism=2)
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(document))
    plan = run_cli("plan", "--output", "json", "job.yaml", cwd=tmp_path).json()["jobs"][0]
    assert plan["filter"]["pushed_down"] is True and plan["filter"]["client_side"] is None
    summary = run_job(document, tmp_path)
    expected = {
        str(p.id) for p in points if p.payload["category"] == "hats" and p.payload["price"] >= 20
    }
    assert expected and {str(i) for i in read_collection(tmp_path / "target", "copy")} == expected
    assert summary.filtered == 0, "nothing was filtered client-side"


def test_mapping_renames_vectors_and_reshapes_payload(tmp_path: Path) -> None:
    make_qdrant_collection(tmp_path / "source", count=20)
    mapping = {
        "vectors": {"dense": "semantic"},
        "payload": {
            "exclude": ["geo", "missing"],
            "rename": {"i": "index"},
            "set": {"migrated": True},
        },
    }
    run_job(job(tmp_path, mapping=mapping), tmp_path)
    source = read_collection(tmp_path / "source", "docs")
    for point_id, point in read_collection(tmp_path / "target", "copy").items():
        original = source[point_id]
        assert as_stored(point.vector["semantic"]) == as_stored(original.vector["dense"])
        assert point.payload["index"] == original.payload["i"]
        assert point.payload["migrated"] is True
        assert "geo" not in point.payload and "i" not in point.payload


def ids_of_partitions(source: Source, n: int) -> list[Any]:
    seen = []
    for partition in source.partitions(n):
        for page in source.read(partition, None):
            seen.extend(r.id for r in page.records)
    return seen


@pytest.mark.parametrize("kind", ["mixed", "ints", "uuids"])
@pytest.mark.parametrize("n", [1, 2, 5, 8])
def test_partitions_cover_every_point_exactly_once(tmp_path: Path, kind: str, n: int) -> None:
    client = QdrantClient(path=str(tmp_path / "p"))
    client.create_collection("c", vectors_config=models.VectorParams(size=2, distance="Dot"))
    ids: list[Any] = []
    if kind in ("mixed", "ints"):
        ids += [0, 1, 2, 1000, 10**6, 2**63, 2**64 - 1] + list(range(50, 90))
    if kind in ("mixed", "uuids"):
        ids += [str(uuid.UUID(int=i * 2**120 + 7)) for i in range(200)] + [str(uuid.UUID(int=0))]
    client.upsert("c", [models.PointStruct(id=i, vector=[1.0, 0.0]) for i in ids])
    client.close()
    source = open_source(
        "qdrant", {"type": "qdrant", "path": str(tmp_path / "p"), "collection": "c"}, 7
    )
    seen = ids_of_partitions(source, n)
    source.close()
    assert sorted(map(str, seen)) == sorted(map(str, ids))


def test_empty_collection_is_one_partition(tmp_path: Path) -> None:
    client = QdrantClient(path=str(tmp_path / "p"))
    client.create_collection("c", vectors_config=models.VectorParams(size=2, distance="Dot"))
    client.close()
    source = open_source(
        "qdrant", {"type": "qdrant", "path": str(tmp_path / "p"), "collection": "c"}, 7
    )
    assert len(source.partitions(4)) == 1
    assert ids_of_partitions(source, 4) == []
    source.close()


def test_missing_source_collection_lists_what_exists(tmp_path: Path) -> None:
    make_qdrant_collection(tmp_path / "source", count=1)
    source = open_source(
        "qdrant", {"type": "qdrant", "path": str(tmp_path / "source"), "collection": "nope"}, 7
    )
    with pytest.raises(
        QmigrateError, match=r"source collection 'nope' does not exist .* \(it has: docs\)"
    ):
        source.describe()
    source.close()


@pytest.mark.parametrize("made", [False, True])
def test_a_path_without_local_mode_data_is_refused_not_created(tmp_path: Path, made: bool) -> None:
    where = tmp_path / "nothing"
    if made:
        where.mkdir()  # a directory, but no Qdrant storage in it
    (tmp_path / "job.yaml").write_text(
        yaml.safe_dump(
            {
                "version": 1,
                "name": "missing",
                "source": {"type": "qdrant", "path": str(where), "collection": "docs"},
                "target": {"path": str(tmp_path / "t"), "collection": "copy"},
            }
        )
    )
    result = run_cli("plan", "job.yaml", cwd=tmp_path)
    assert result.code == 1, result.stdout
    assert result.stderr.splitlines() == [
        f"qmigrate: error: source Qdrant at {where}: no Qdrant local-mode data there"
    ]
    if made:
        assert list(where.iterdir()) == [], "nothing was written into it"
    else:
        assert not where.exists()


needs_server = pytest.mark.skipif(
    not os.environ.get("QDRANT_URL"),
    reason="QDRANT_URL is not set: no Qdrant server to run the server contract test against",
)


@needs_server
def test_contract_against_a_real_server(tmp_path: Path) -> None:
    """Qdrant -> Qdrant through a real server, both as source and as target."""
    url, key = os.environ["QDRANT_URL"], os.environ.get("QDRANT_API_KEY")
    suffix = uuid.uuid4().hex[:8]
    make_qdrant_collection(tmp_path / "local", count=200)
    upload = {
        "version": 1,
        "name": f"contract-up-{suffix}",
        "source": {"type": "qdrant", "path": str(tmp_path / "local"), "collection": "docs"},
        "target": {
            "url": url,
            "api_key": key or "",
            "collection": f"qm_src_{suffix}",
            "payload_indexes": {"category": "keyword"},
            "bulk_load": True,
        },
        "parallelism": 2,
    }
    down = {
        "version": 1,
        "name": f"contract-down-{suffix}",
        "source": {
            "type": "qdrant",
            "url": url,
            "api_key": key or "",
            "collection": f"qm_src_{suffix}",
        },
        "target": {"url": url, "api_key": key or "", "collection": f"qm_dst_{suffix}"},
        "parallelism": 4,
    }
    client = QdrantClient(url=url, api_key=key)
    try:
        assert run_job(upload, tmp_path, "up.yaml").count_check == "ok"
        assert run_job(down, tmp_path, "down.yaml").count_check == "ok"
        info = client.get_collection(f"qm_dst_{suffix}")
        assert "category" in info.payload_schema, "payload indexes follow the source"
        assert info.config.hnsw_config.m == 16, "bulk load gave indexing back"
        copied, _ = client.scroll(f"qm_dst_{suffix}", limit=500, with_vectors=True)
        original = read_collection(tmp_path / "local", "docs")
        assert len(copied) == len(original)
        for point in copied:
            assert point.payload == original[point.id].payload
    finally:
        for name in (f"qm_src_{suffix}", f"qm_dst_{suffix}"):
            client.delete_collection(name)
        client.close()


@needs_server
def test_custom_sharding_and_tenants_against_a_real_server(tmp_path: Path) -> None:
    """Local -> server by payload field (keys created, tenant index made), then server ->
    server keeping each point's key (`from_source`, the default) and the tenant index."""
    url, key = os.environ["QDRANT_URL"], os.environ.get("QDRANT_API_KEY")
    suffix = uuid.uuid4().hex[:8]
    sharded, kept = f"qm_sharded_{suffix}", f"qm_kept_{suffix}"
    make_qdrant_collection(tmp_path / "local", count=120)
    server = {"url": url, "api_key": key or ""}
    by_field = {
        "version": 1,
        "name": f"contract-sharded-{suffix}",
        "source": {"type": "qdrant", "path": str(tmp_path / "local"), "collection": "docs"},
        "target": {
            **server,
            "collection": sharded,
            "shard_key": {"field": "category"},
            "payload_indexes": {"category": {"type": "keyword", "is_tenant": True}},
        },
        "parallelism": 2,
    }
    keeping = {
        "version": 1,
        "name": f"contract-kept-{suffix}",
        "source": {"type": "qdrant", **server, "collection": sharded},
        "target": {**server, "collection": kept},
        "parallelism": 3,
    }
    client = QdrantClient(url=url, api_key=key)
    try:
        assert run_job(by_field, tmp_path, "sharded.yaml").count_check == "ok"
        assert run_job(keeping, tmp_path, "kept.yaml").count_check == "ok"
        original = read_collection(tmp_path / "local", "docs")
        for name in (sharded, kept):
            info = client.get_collection(name)
            assert info.config.params.sharding_method == models.ShardingMethod.CUSTOM
            assert info.payload_schema["category"].params.is_tenant is True
            listed = client.list_shard_keys(name).shard_keys or []
            assert sorted(str(d.key) for d in listed) == ["bags", "hats", "shoes"]
            for category in ("bags", "hats", "shoes"):
                expected = sum(1 for p in original.values() if p.payload["category"] == category)
                counted = client.count(name, shard_key_selector=category, exact=True).count
                assert counted == expected, (name, category)
    finally:
        for name in (sharded, kept):
            client.delete_collection(name)


@needs_server
def test_strict_mode_contract_against_a_real_server(tmp_path: Path) -> None:
    """A target collection in strict mode: its batch limit and write rate obeyed (not one
    request refused, so no retry), and a job over its max_points_count refused by plan
    before data moves, with the numbers."""
    url, key = os.environ["QDRANT_URL"], os.environ.get("QDRANT_API_KEY")
    name = f"qm_strict_{uuid.uuid4().hex[:8]}"
    client = QdrantClient(url=url, api_key=key)
    client.create_collection(
        name,
        vectors_config=models.VectorParams(size=2, distance=models.Distance.DOT),
        strict_mode_config=models.StrictModeConfig(
            enabled=True, upsert_max_batchsize=7, write_rate_limit=120
        ),
    )
    try:
        rows = "".join(f'{{"id": {i}, "v": [1.0, {i}.0]}}\n' for i in range(140))
        (tmp_path / "rows.jsonl").write_text(rows)
        document: dict[str, Any] = {
            "version": 1,
            "name": name,
            "source": {
                "type": "file",
                "path": str(tmp_path / "rows.jsonl"),
                "vectors": {"v": {"distance": "dot"}},
            },
            "target": {"url": url, "api_key": key or "", "collection": name},
            "mapping": {"vectors": {"v": ""}},
            "batch_size": 32,
            "parallelism": 2,
        }
        summary = run_job(document, tmp_path)  # 20 points past the bucket: about 10 s
        assert (summary.count_check, summary.written, summary.retries) == ("ok", 140, 0)
        client.update_collection(
            name, strict_mode_config=models.StrictModeConfig(max_points_count=150)
        )
        over = {**document, "name": f"{name}_over"}
        (tmp_path / "over.yaml").write_text(yaml.safe_dump(over))
        result = run_cli("plan", "over.yaml", "--output", "json", cwd=tmp_path)
        (refused,) = json.loads(result.stdout)["jobs"][0]["refusals"]
        assert "make up to 280 points, above its strict mode max_points_count of 150" in refused
        assert client.count(name).count == 140, "plan wrote nothing"
    finally:
        client.delete_collection(name)
        client.close()


def test_tenant_and_principal_indexes_keep_their_flags() -> None:
    """A server's collection info names each payload index with its parameters; the target
    is to be created with the same tenant and principal flags (local mode has no indexes,
    so this reads the info a server returns)."""
    from qmigrate.sources.qdrant import _index_spec

    def info(kind: str, params: Any = None) -> models.PayloadIndexInfo:
        return models.PayloadIndexInfo(
            data_type=models.PayloadSchemaType(kind), params=params, points=0
        )

    assert _index_spec(info("keyword")) == "keyword"
    assert _index_spec(info("keyword", models.KeywordIndexParams(type="keyword"))) == "keyword"
    tenant = models.KeywordIndexParams(type="keyword", is_tenant=True)
    assert _index_spec(info("keyword", tenant)) == {"type": "keyword", "is_tenant": True}
    principal = models.DatetimeIndexParams(type="datetime", is_principal=True)
    assert _index_spec(info("datetime", principal)) == {"type": "datetime", "is_principal": True}
