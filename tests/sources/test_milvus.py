"""Milvus -> Qdrant local mode, against a `milvus-lite server` and the real Milvus 2.3 server."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from qdrant_client import QdrantClient, models
from qdrant_client.local.payload_filters import check_filter

from qmigrate.errors import QmigrateError
from qmigrate.mapping import ClientFilter, point_id
from qmigrate.sources.base import Source
from tests.conftest import (
    apply_resumed,
    kill_mid_apply,
    open_source,
    read_collection,
    run_cli,
    run_job,
)
from tests.servers.milvus import MilvusServer

pymilvus = pytest.importorskip("pymilvus")
from pymilvus import DataType, MilvusClient  # noqa: E402

Row = dict[str, Any]


def make_rows(count: int, seed: int = 0, negative: bool = True) -> list[Row]:
    """INT64 keys (some negative), two dense vectors, sparse, JSON, ARRAY, dynamic keys."""
    rng = random.Random(seed)
    rows = []
    for i in range(count):
        row: Row = {
            "pk": -(i + 1) if negative and i % 10 == 3 else i * 7 + 1,
            "text": [rng.uniform(-1, 1) for _ in range(8)],
            "image": [rng.uniform(-1, 1) for _ in range(4)],
            "keywords": {k: round(rng.random(), 4) + 0.01 for k in rng.sample(range(1000), 3)},
            "category": ["news", "blog", "paper"][i % 3],
            "year": 2000 + i % 25,
            "score": rng.uniform(0, 10),
            "meta": {"level": {"value": i % 7}, "ok": i % 2 == 0},
            "tags": [f"t{(i + k) % 5}" for k in range(i % 3)],
        }
        if i % 4 == 1:
            row["color"] = ["red", "green"][i % 8 // 4]  # dynamic
        rows.append(row)
    return rows


def one_vector(rows: list[Row]) -> list[Row]:
    """The rows for Milvus 2.3, which allows one vector field and has no sparse vectors."""
    return [{k: v for k, v in r.items() if k not in ("image", "keywords")} for r in rows]


def create_items(client: MilvusClient, name: str, rows: list[Row]) -> None:
    """The collection `rows` fit: the first half in partition _default, the rest in archive."""
    many = "image" in rows[0]
    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=True)
    schema.add_field("pk", DataType.INT64, is_primary=True)
    schema.add_field("text", DataType.FLOAT_VECTOR, dim=8)
    if many:
        schema.add_field("image", DataType.FLOAT_VECTOR, dim=4)
        schema.add_field("keywords", DataType.SPARSE_FLOAT_VECTOR)
    schema.add_field("category", DataType.VARCHAR, max_length=32)
    schema.add_field("year", DataType.INT64)
    schema.add_field("score", DataType.DOUBLE)
    schema.add_field("meta", DataType.JSON)
    schema.add_field(
        "tags", DataType.ARRAY, element_type=DataType.VARCHAR, max_capacity=8, max_length=16
    )
    index = client.prepare_index_params()
    index.add_index("text", index_type="FLAT", metric_type="COSINE")
    if many:
        index.add_index("image", index_type="FLAT", metric_type="L2")
        index.add_index("keywords", index_type="SPARSE_INVERTED_INDEX", metric_type="IP")
    client.create_collection(name, schema=schema, index_params=index)
    client.create_partition(name, "archive")
    half = len(rows) // 2
    for partition, part in (("_default", rows[:half]), ("archive", rows[half:])):
        for start in range(0, len(part), 500):
            client.insert(name, part[start : start + 500], partition_name=partition)


def partition_of(rows: list[Row], row: Row) -> str:
    return "archive" if rows.index(row) >= len(rows) // 2 else "_default"


def expected_id(row: Row) -> Any:
    return point_id(row["pk"] if row["pk"] >= 0 else str(row["pk"]))[0]


def expected_payload(row: Row, extra: dict[str, Any]) -> dict[str, Any]:
    vectors = ("pk", "text", "image", "keywords")
    payload = {k: v for k, v in row.items() if k not in vectors}
    if row["pk"] < 0:
        payload["original_id"] = str(row["pk"])
    return {**payload, **extra}


def assert_migrated(target: Path, rows: list[Row], field: bool = True) -> None:
    """Exactly these rows: IDs, payloads, and vectors to float32 precision."""
    points = read_collection(target, "copy")
    expected = {expected_id(r): r for r in rows}
    assert sorted(map(str, points)) == sorted(map(str, expected))
    for key, row in expected.items():
        point = points[key]
        extra = {"milvus_partition": partition_of(rows, row)} if field else {}
        payload = expected_payload(row, extra)
        assert point.payload.pop("score") == pytest.approx(payload.pop("score")), key
        assert point.payload == payload, key
        # Cosine vectors may come back normalised: compare directions.
        assert unit(point.vector["text"]) == pytest.approx(unit(row["text"]), abs=1e-5), key
        if "image" in row:
            assert point.vector["image"] == pytest.approx(row["image"], abs=1e-6), key
            keywords = sorted(row["keywords"].items())
            assert point.vector["keywords"].indices == [k for k, _ in keywords], key
            assert point.vector["keywords"].values == pytest.approx([v for _, v in keywords])


def unit(vector: list[float]) -> list[float]:
    norm = sum(x * x for x in vector) ** 0.5
    return [x / norm for x in vector]


def job(server: MilvusServer, collection: str, target: Path, **extra: Any) -> dict[str, Any]:
    source: dict[str, Any] = {"type": "milvus", "uri": server.uri, "collection": collection}
    if server.token:
        source["token"] = server.token
    source.update(extra.pop("source", {}))
    return {
        "version": 1,
        "name": "milvus-test",
        "source": source,
        "target": {"path": str(target), "collection": "copy"},
        "batch_size": 64,
        **extra,
    }


ROWS = make_rows(500)


@pytest.fixture(scope="module")
def items(milvus_lite_server: MilvusServer) -> MilvusServer:
    client = milvus_lite_server.client()
    try:
        create_items(client, "items", ROWS)
    finally:
        client.close()
    return milvus_lite_server


# --- migration ------------------------------------------------------------------------


@pytest.mark.parametrize("parallelism", [1, 3])
def test_migrates_every_vector_payload_and_partition(
    items: MilvusServer, tmp_path: Path, parallelism: int
) -> None:
    document = job(
        items,
        "items",
        tmp_path / "t",
        parallelism=parallelism,
        source={"partition_field": "milvus_partition"},
    )
    summary = run_job(document, tmp_path)
    assert (summary.written, summary.count_check) == (500, "ok")
    assert_migrated(tmp_path / "t", ROWS)
    client = QdrantClient(path=str(tmp_path / "t"))
    try:
        params = client.get_collection("copy").config.params
    finally:
        client.close()
    assert params.vectors["text"].distance == models.Distance.COSINE
    assert params.vectors["image"].distance == models.Distance.EUCLID
    assert (params.vectors["text"].size, params.vectors["image"].size) == (8, 4)
    assert set(params.sparse_vectors) == {"keywords"}


def test_one_partition_is_read_alone(items: MilvusServer, tmp_path: Path) -> None:
    document = job(items, "items", tmp_path / "t", source={"partitions": ["archive"]})
    summary = run_job(document, tmp_path)
    archive = ROWS[len(ROWS) // 2 :]
    assert summary.written == len(archive)
    assert_migrated(tmp_path / "t", archive, field=False)


@pytest.mark.parametrize("server_fixture", ["milvus_lite_server", "milvus_server"])
def test_a_page_of_float_vectors_is_one_float32_array_not_copied(
    server_fixture: str, request: pytest.FixtureRequest
) -> None:
    """Each record's vector is a view of its page's float32 array, exactly what was inserted
    (to float32): no list of Python floats per row, no copy per row."""
    server: MilvusServer = request.getfixturevalue(server_fixture)
    rows = one_vector(make_rows(150, seed=3))
    client = server.client()
    create_items(client, "views", rows)
    client.close()
    config = {"uri": server.uri, "collection": "views"}
    source = open_source(
        "milvus", {**config, "token": server.token} if server.token else config, 64
    )
    try:
        source.describe()
        pages = [page for part in source.partitions(1) for page in source.read(part, None)]
    finally:
        source.close()
    inserted = {expected_id(r): np.asarray(r["text"], dtype=np.float32) for r in rows}
    assert sorted(len(page.records) for page in pages) == [22, 64, 64]
    for page in pages:
        bases = [record.vectors["text"].base for record in page.records]
        assert bases[0] is not None and bases[0].size == 8 * len(bases), "one array per page"
        assert all(base is bases[0] for base in bases), "one array per page"
        for record in page.records:
            vector = record.vectors["text"]
            assert (type(vector), vector.dtype, vector.shape) == (np.ndarray, np.float32, (8,))
            assert np.array_equal(vector, inserted[point_id(record.id)[0]]), record.id


def test_varchar_keys_follow_the_id_policy(
    milvus_lite_server: MilvusServer, tmp_path: Path
) -> None:
    client = milvus_lite_server.client()
    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("key", DataType.VARCHAR, is_primary=True, max_length=64)
    schema.add_field("v", DataType.FLOAT_VECTOR, dim=2)
    index = client.prepare_index_params()
    index.add_index("v", index_type="FLAT", metric_type="IP")
    client.create_collection("named", schema=schema, index_params=index)
    keys = ["b", "a", "é", "doc-10", "doc-9", "Z", "a b"] * 1
    client.insert("named", [{"key": k, "v": [float(i), 1.0]} for i, k in enumerate(keys)])
    client.close()
    document = job(milvus_lite_server, "named", tmp_path / "t", batch_size=2, parallelism=2)
    run_job(document, tmp_path)
    points = read_collection(tmp_path / "t", "copy")
    assert {p.payload["original_id"]: p.id for p in points.values()} == {
        k: point_id(k)[0] for k in keys
    }


INT64_EXTREMES = [-(2**63), -(2**63) + 1, -1, 0, 1, 2**63 - 2, 2**63 - 1]


@pytest.mark.parametrize("parallelism", [1, 3])
def test_the_extreme_int64_keys_are_read_and_counted(
    milvus_lite_server: MilvusServer, tmp_path: Path, parallelism: int
) -> None:
    """-2**63 is a key Milvus cannot write as a literal: every range expression (count,
    partition bounds, page cursors) must still take it in."""
    collection = f"extremes{parallelism}"
    client = milvus_lite_server.client()
    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("pk", DataType.INT64, is_primary=True)
    schema.add_field("v", DataType.FLOAT_VECTOR, dim=2)
    index = client.prepare_index_params()
    index.add_index("v", index_type="FLAT", metric_type="L2")
    client.create_collection(collection, schema=schema, index_params=index)
    client.insert(
        collection, [{"pk": k, "v": [float(i), 1.0]} for i, k in enumerate(INT64_EXTREMES)]
    )
    client.close()
    document = job(milvus_lite_server, collection, tmp_path / "t", batch_size=1)
    document["parallelism"] = parallelism
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    applied = run_cli("apply", str(path))
    assert applied.code == 0, applied.stderr
    points = read_collection(tmp_path / "t", "copy")
    originals = {p.payload.get("original_id", p.id) for p in points.values()}
    assert originals == {str(k) if k < 0 else k for k in INT64_EXTREMES}
    verified = run_cli("verify", str(path), "--sample", "all")
    assert verified.code == 0, verified.stdout + verified.stderr


def test_resumes_after_kill_9_without_gaps(
    milvus_lite_server: MilvusServer, tmp_path: Path
) -> None:
    rows = make_rows(3000, seed=1)
    client = milvus_lite_server.client()
    create_items(client, "resume", rows)
    client.close()
    assert_kill_resume(milvus_lite_server, "resume", rows, tmp_path)


def assert_kill_resume(server: MilvusServer, name: str, rows: list[Row], tmp_path: Path) -> None:
    checkpoint = tmp_path / "checkpoint.json"
    document = job(
        server,
        name,
        tmp_path / "t",
        batch_size=50,
        parallelism=2,
        checkpoint={"store": "file", "path": str(checkpoint)},
        source={"partition_field": "milvus_partition"},
    )
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(document))
    kill_mid_apply(path, checkpoint, after_points=600, count=len(rows))
    apply_resumed(path, len(rows))
    assert_migrated(tmp_path / "t", rows)


# --- filters --------------------------------------------------------------------------


def read_all(source: Source) -> list[Any]:
    return [r for p in source.partitions(3) for page in source.read(p, None) for r in page.records]


FILTERS = [
    pytest.param({"must": [{"key": "category", "match": {"value": "news"}}]}, True, id="str"),
    pytest.param({"must": [{"key": "year", "match": {"any": [2001, 2003]}}]}, True, id="int-any"),
    pytest.param({"must": [{"key": "year", "range": {"gte": 2010, "lt": 2015}}]}, True, id="range"),
    pytest.param({"must": [{"key": "score", "range": {"gt": 5.5}}]}, True, id="double-range"),
    pytest.param({"must_not": [{"key": "category", "match": {"value": "blog"}}]}, True, id="not"),
    pytest.param(
        {
            "should": [
                {"key": "category", "match": {"value": "news"}},
                {"key": "year", "range": {"lt": 2003}},
            ]
        },
        True,
        id="should",
    ),
    pytest.param({"must": [{"key": "year", "range": {"gt": 2010.5}}]}, False, id="int-float-bound"),
    pytest.param({"must": [{"key": "year", "match": {"value": "2010"}}]}, False, id="wrong-type"),
    pytest.param({"must": [{"key": "tags", "match": {"value": "t1"}}]}, False, id="array"),
    pytest.param({"must": [{"key": "color", "match": {"value": "green"}}]}, False, id="dynamic"),
    pytest.param({"must": [{"key": "meta.ok", "match": {"value": True}}]}, False, id="json-path"),
    pytest.param(
        {
            "must": [{"key": "category", "match": {"value": "paper"}}],
            "must_not": [{"key": "tags", "match": {"value": "t2"}}],
        },
        False,
        id="mixed",
    ),
]


@pytest.mark.parametrize("flt,pushed", FILTERS)
def test_pushdown_has_qdrant_semantics(
    items: MilvusServer, flt: dict[str, Any], pushed: bool
) -> None:
    """Milvus's expression plus the residual selects exactly what Qdrant's filter selects."""
    config = {"uri": items.uri, "collection": "items"}
    everything = open_source("milvus", config, 64)
    records = read_all(everything)
    everything.close()
    qdrant_filter = models.Filter.model_validate(flt)
    expected = sorted(str(r.id) for r in records if check_filter(qdrant_filter, r.payload, 0, {}))
    source = open_source("milvus", config, 64)
    try:
        residual = source.push_down(flt)
        assert (source.expression is not None and residual is None) is pushed, residual
        selected = read_all(source)
        if residual is not None:
            selected = [r for r in selected if ClientFilter(residual).matches(r)]
        assert sorted(str(r.id) for r in selected) == expected
    finally:
        source.close()


def test_plan_prints_the_expression_and_binary_note(items: MilvusServer, tmp_path: Path) -> None:
    flt = {"must": [{"key": "category", "match": {"value": "news"}}]}
    document = job(items, "items", tmp_path / "t", filter=flt)
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(document))
    result = run_cli("plan", "job.yaml", cwd=tmp_path)
    assert result.code == 0, result.stderr
    assert 'category == "news"' in result.stdout


# --- describe, partitions, errors -----------------------------------------------------


def test_a_field_without_index_asks_for_target_vectors(
    milvus_lite_server: MilvusServer, tmp_path: Path
) -> None:
    client = milvus_lite_server.client()
    schema = MilvusClient.create_schema(auto_id=False)
    schema.add_field("pk", DataType.INT64, is_primary=True)
    schema.add_field("v", DataType.FLOAT_VECTOR, dim=2)
    client.create_collection("unindexed", schema=schema)
    client.close()
    source = open_source("milvus", {"uri": milvus_lite_server.uri, "collection": "unindexed"}, 10)
    try:
        info = source.describe()
    finally:
        source.close()
    assert [(v.name, v.size, v.distance) for v in info.vectors] == [("v", 2, None)]
    document = job(milvus_lite_server, "unindexed", tmp_path / "t")
    with pytest.raises(QmigrateError, match=r"set target.vectors.v.distance"):
        run_job(document, tmp_path)


def test_unknown_collection_lists_the_existing_ones(items: MilvusServer) -> None:
    source = open_source("milvus", {"uri": items.uri, "collection": "nope"}, 10)
    with pytest.raises(QmigrateError, match=r"collection 'nope' does not exist.*items"):
        source.describe()
    source.close()
    client = items.client()
    assert "nope" not in client.list_collections()
    client.close()


def test_a_missing_lite_file_is_not_created(tmp_path: Path) -> None:
    source = open_source("milvus", {"uri": str(tmp_path / "x.db"), "collection": "c"}, 10)
    with pytest.raises(QmigrateError, match="no milvus-lite database there"):
        source.describe()
    assert not (tmp_path / "x.db").exists()


# --- the real Milvus 2.3 server -------------------------------------------------------


def test_real_server_migration_resumes_after_kill_9(
    milvus_server: MilvusServer, tmp_path: Path
) -> None:
    rows = one_vector(make_rows(3000, seed=2))
    client = milvus_server.client()
    create_items(client, "real", rows)
    client.close()
    assert_kill_resume(milvus_server, "real", rows, tmp_path)


def test_real_server_rows_written_just_before_the_job_are_read(
    milvus_server: MilvusServer, tmp_path: Path
) -> None:
    """Pages are read at the collection's default consistency (Bounded here), which alone
    misses rows the query node has not consumed yet; describe's Strong count(*) makes it
    catch up before the first page."""
    rows = one_vector(make_rows(300, seed=4))
    client = milvus_server.client()
    create_items(client, "fresh", rows)  # no flush, and the job starts at once
    client.close()
    summary = run_job(job(milvus_server, "fresh", tmp_path / "t"), tmp_path)
    assert (summary.written, summary.count_check) == (300, "ok")
    assert_migrated(tmp_path / "t", rows, field=False)


def test_real_server_rejects_a_wrong_token_in_one_line(
    milvus_server: MilvusServer, tmp_path: Path
) -> None:
    document = job(milvus_server, "real", tmp_path / "t", source={"token": "root:wrong-secret"})
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(document))
    result = run_cli("plan", "job.yaml", cwd=tmp_path)
    assert result.code != 0
    assert "wrong-secret" not in result.stdout + result.stderr
    assert "rejected the token" in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_real_server_binary_vectors_become_0_1_with_manhattan(
    milvus_server: MilvusServer, tmp_path: Path
) -> None:
    client = milvus_server.client()
    schema = MilvusClient.create_schema(auto_id=False)
    schema.add_field("pk", DataType.INT64, is_primary=True)
    schema.add_field("bits", DataType.BINARY_VECTOR, dim=16)
    index = client.prepare_index_params()
    index.add_index("bits", index_type="BIN_FLAT", metric_type="HAMMING")
    client.create_collection("binary", schema=schema, index_params=index)
    packed = {i: bytes([i, 255 - i]) for i in range(20)}
    client.insert("binary", [{"pk": i, "bits": b} for i, b in packed.items()])
    client.close()
    document = job(milvus_server, "binary", tmp_path / "t")
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(document))
    plan = run_cli("plan", "job.yaml", cwd=tmp_path)
    assert "Manhattan" in plan.stdout and "Hamming" in plan.stdout, plan.stdout + plan.stderr
    run_job(document, tmp_path)
    points = read_collection(tmp_path / "t", "copy")
    for i, raw in packed.items():
        bits = [(byte >> (7 - k)) & 1 for byte in raw for k in range(8)]
        assert points[i].vector["bits"] == bits, i
    qdrant = QdrantClient(path=str(tmp_path / "t"))
    try:
        params = qdrant.get_collection("copy").config.params.vectors["bits"]
    finally:
        qdrant.close()
    assert (params.size, params.distance, params.datatype) == (
        16,
        models.Distance.MANHATTAN,
        models.Datatype.UINT8,
    )


def test_a_collection_still_released_after_its_reload_is_transient() -> None:
    """A restarted server may answer code 101 again right after `_query` loaded the
    collection: the engine backs off and reads again, instead of failing the job."""
    from pymilvus.exceptions import MilvusException

    from qmigrate.retry import is_transient
    from qmigrate.sources.milvus import COLLECTION_NOT_LOADED, _request

    def raising(error: MilvusException) -> Callable[[], None]:
        def call() -> None:
            raise error

        return call

    released = MilvusException(code=COLLECTION_NOT_LOADED, message="collection not loaded")
    with pytest.raises(Exception) as caught:
        _request(raising(released))
    assert is_transient(caught.value)
    with pytest.raises(Exception) as caught:
        _request(raising(MilvusException(code=1, message="bad filter")))
    assert not is_transient(caught.value)
