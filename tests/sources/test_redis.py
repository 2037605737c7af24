"""Redis (RediSearch indexes on HASH and JSON) -> Qdrant local mode, against a real valkey-server."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
import yaml
from qdrant_client import QdrantClient, models
from qdrant_client.local.payload_filters import check_filter

from qmigrate.mapping import point_id
from tests.conftest import (
    apply_resumed,
    kill_mid_apply,
    open_source,
    read_collection,
    run_cli,
    run_job,
)
from tests.servers.redis import PASSWORD, RedisServer, running_redis

np = pytest.importorskip("numpy")
pytest.importorskip("redis")

Doc = dict[str, Any]
PRODUCTS = 10_500  # more than FT.SEARCH's default 10,000 result cap


def product(i: int, rng: random.Random) -> tuple[Doc, Doc]:
    """(hash fields as written, payload expected in Qdrant) for one product."""
    dense = np.array([rng.uniform(-1, 1) for _ in range(8)], dtype="<f4")
    small = np.array([rng.uniform(-1, 1) for _ in range(4)], dtype="<f8")
    tags = ["Red", "blue", "green tea", "x,y"][: 1 + i % 4]
    fields = {
        "dense": dense.tobytes(),
        "small": small.tobytes(),
        "tags": ";".join(tags),
        "price": f"{i * 0.5:g}",
        "stock": str(i % 40),
        "title": f"product number {i}",
        "where": f"{13 + i % 10 / 10},{52.5}",
        "note": f"unindexed {i}",
    }
    payload = {
        "tags": tags,
        "price": int(i * 0.5) if i % 2 == 0 else i * 0.5,
        "stock": i % 40,
        "title": f"product number {i}",
        "where": {"lon": 13 + i % 10 / 10, "lat": 52.5},
        "note": f"unindexed {i}",
        "original_id": str(i),
    }
    vectors = {"dense": dense.tolist(), "small": small.tolist()}
    return fields, {"payload": payload, "vectors": vectors, "id": str(i)}


@pytest.fixture(scope="module")
def products(redis_server: RedisServer) -> dict[Any, Doc]:
    """10,500 HASH products, keys outside the prefix, and keys under it the index does not hold."""
    client = redis_server.client()
    client.execute_command(
        "FT.CREATE", "products", "ON", "HASH", "PREFIX", "1", "product:", "SCHEMA",
        "dense", "VECTOR", "HNSW", "6", "TYPE", "FLOAT32", "DIM", "8", "DISTANCE_METRIC", "COSINE",
        "small", "VECTOR", "FLAT", "6", "TYPE", "FLOAT64", "DIM", "4", "DISTANCE_METRIC", "L2",
        "tags", "TAG", "SEPARATOR", ";", "CASESENSITIVE",
        "price", "NUMERIC", "stock", "NUMERIC", "title", "TEXT", "where", "GEO",
    )  # fmt: skip
    rng = random.Random(0)
    expected = {}
    pipeline = client.pipeline(transaction=False)
    for i in range(PRODUCTS):
        fields, doc = product(i, rng)
        pipeline.hset(f"product:{i}", mapping=fields)
        expected[point_id(doc["id"])[0]] = doc
    pipeline.hset("product:no-vector", mapping={"title": "no vector", "price": 1})
    pipeline.hset("product:bad-vector", mapping={"dense": b"\x00\x01", "small": b"x", "price": 2})
    pipeline.hset("other:1", mapping={"dense": np.zeros(8, "<f4").tobytes(), "price": 3})
    pipeline.set("unrelated", "value")
    pipeline.execute()
    return expected


def job(server: RedisServer, index: str, target: Path, **extra: Any) -> dict[str, Any]:
    return {
        "version": 1,
        "name": "redis-test",
        "source": {"type": "redis", "url": server.url, "index": index},
        "target": {"path": str(target), "collection": "copy"},
        "batch_size": 500,
        **extra,
    }


def assert_migrated(target: Path, expected: dict[Any, Doc]) -> None:
    points = read_collection(target, "copy")
    assert sorted(map(str, points)) == sorted(map(str, expected))
    for key, doc in expected.items():
        assert points[key].payload == doc["payload"], doc["id"]
        for name, vector in doc["vectors"].items():
            assert points[key].vector[name] == pytest.approx(vector, rel=1e-6), (doc["id"], name)


# --- migration ------------------------------------------------------------------------


def test_hash_index_migrates_exactly_the_indexed_documents(
    redis_server: RedisServer, products: dict[Any, Doc], tmp_path: Path
) -> None:
    parallelism = 3  # 1 runs in the filter tests, 2 in the JSON and kill -9 tests
    summary = run_job(
        job(redis_server, "products", tmp_path / "t", parallelism=parallelism), tmp_path
    )
    assert (summary.written, summary.partitions, summary.count_check) == (
        PRODUCTS,
        parallelism,
        "ok",
    )
    assert summary.passed_over == 1, "product:bad-vector is under the prefix, not indexed"
    assert_migrated(tmp_path / "t", products)
    client = QdrantClient(path=str(tmp_path / "t"))
    try:
        vectors = client.get_collection("copy").config.params.vectors
    finally:
        client.close()
    assert (vectors["dense"].size, vectors["dense"].distance) == (8, models.Distance.COSINE)
    assert (vectors["small"].size, vectors["small"].distance) == (4, models.Distance.EUCLID)


def test_plan_shows_discovery_and_payload_indexes(
    redis_server: RedisServer, products: dict[Any, Doc], tmp_path: Path
) -> None:
    document = job(redis_server, "products", tmp_path / "t")
    document["source"]["payload_indexes"] = {"title": None, "where": "keyword"}
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(document))
    result = run_cli("plan", "--output", "json", "job.yaml", cwd=tmp_path)
    assert result.code == 0, result.stderr
    assert PASSWORD not in result.stdout + result.stderr
    plan = result.json()["jobs"][0]
    text = json.dumps(plan)
    assert '"HASH"' in text and "product:" in text
    assert f'"count": {PRODUCTS + 1}' in text, "num_docs: the hash without a vector is held"

    source = open_source("redis", {"url": redis_server.url, "index": "products"}, 100)
    try:
        assert source.describe().payload_indexes == {
            "tags": "keyword",
            "price": "float",
            "stock": "integer",
            "title": "text",
            "where": "geo",
        }
        source.index_overrides = document["source"]["payload_indexes"]
        assert source._payload_indexes() == {
            "tags": "keyword", "price": "float", "stock": "integer", "where": "keyword"
        }  # fmt: skip
    finally:
        source.close()


def test_json_index_keeps_structure_minus_the_vector(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    client = redis_server.client()
    client.execute_command(
        "FT.CREATE", "notes", "ON", "JSON", "PREFIX", "1", "note:", "SCHEMA",
        "$.embedding", "AS", "emb", "VECTOR", "FLAT", "6", "TYPE", "FLOAT32", "DIM", "3",
        "DISTANCE_METRIC", "IP", "$.meta.rating", "AS", "rating", "NUMERIC",
        "$.labels[*]", "AS", "labels", "TAG",
    )  # fmt: skip
    expected = {}
    for i in range(50):
        doc = {"embedding": [i, 0.5, -1.0], "meta": {"rating": i / 4, "by": "x"}, "labels": ["a"]}
        client.execute_command("JSON.SET", f"note:n{i}", "$", json.dumps(doc))
        payload = {"meta": {"rating": i / 4, "by": "x"}, "labels": ["a"], "original_id": f"n{i}"}
        expected[point_id(f"n{i}")[0]] = {
            "id": f"n{i}", "payload": payload, "vectors": {"emb": [i, 0.5, -1.0]}
        }  # fmt: skip
    client.execute_command("JSON.SET", "note:novec", "$", json.dumps({"meta": {"rating": 1}}))
    summary = run_job(job(redis_server, "notes", tmp_path / "t", parallelism=2), tmp_path)
    assert (summary.written, summary.count_check) == (50, "ok")
    assert_migrated(tmp_path / "t", expected)


def test_index_filter_excludes_documents_and_non_utf8_is_dead_lettered(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    client = redis_server.client()
    client.execute_command(
        "FT.CREATE", "cheap", "ON", "HASH", "PREFIX", "2", "cheap:", "bargain:",
        "FILTER", "@price < 10", "SCHEMA",
        "v", "VECTOR", "FLAT", "6", "TYPE", "FLOAT32", "DIM", "2", "DISTANCE_METRIC", "L2",
        "price", "NUMERIC",
    )  # fmt: skip
    vector = np.array([1, 2], "<f4").tobytes()
    for i in range(20):
        client.hset(f"cheap:{i}", mapping={"v": vector, "price": i})
    client.hset("bargain:b", mapping={"v": vector, "price": 1, "blob": b"\xff\xfe"})
    summary = run_job(
        {**job(redis_server, "cheap", tmp_path / "t"), "on_invalid": {"action": "dead_letter"}},
        tmp_path,
    )
    assert (summary.written, summary.invalid, summary.count_check) == (10, 1, "ok")
    assert summary.passed_over == 10, "the index FILTER leaves out cheap:10 to cheap:19"
    letters = [json.loads(line) for line in Path(summary.dead_letter).read_text().splitlines()]
    assert [(d["id"], "not UTF-8" in d["error"]) for d in letters] == [("b", True)]
    points = read_collection(tmp_path / "t", "copy")
    assert sorted(p.payload["price"] for p in points.values()) == list(range(10))


def test_resumes_after_kill_9_without_gaps(
    redis_server: RedisServer, products: dict[Any, Doc], tmp_path: Path
) -> None:
    checkpoint = tmp_path / "checkpoint.json"
    document = job(
        redis_server,
        "products",
        tmp_path / "t",
        batch_size=200,
        parallelism=2,
        checkpoint={"store": "file", "path": str(checkpoint)},
    )
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(document))
    kill_mid_apply(path, checkpoint, after_points=2000, count=PRODUCTS)
    apply_resumed(path, PRODUCTS)
    assert_migrated(tmp_path / "t", products)


# --- filters --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "flt, pushed",
    [
        (
            {
                "must": [{"key": "price", "range": {"gte": 100, "lt": 900}}],
                "should": [{"key": "tags", "match": {"any": ["green tea", "x,y"]}}],
                "must_not": [{"key": "stock", "range": {"gt": 30}}],
            },
            True,
        ),
        ({"must": [{"key": "tags", "match": {"value": "blue"}}]}, True),
        ({"must_not": [{"key": "tags", "match": {"value": "green tea"}}]}, True),
        ({"must": [{"key": "title", "match": {"text": "number 12"}}]}, False),
    ],
)
def test_filter_selects_what_qdrant_selects(
    redis_server: RedisServer,
    products: dict[Any, Doc],
    tmp_path: Path,
    flt: dict[str, Any],
    pushed: bool,
) -> None:
    document = job(redis_server, "products", tmp_path / "t", filter=flt)
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(document))
    plan = run_cli("plan", "--output", "json", "job.yaml", cwd=tmp_path).json()["jobs"][0]
    assert plan["filter"]["pushed_down"] is pushed
    assert (plan["filter"]["client_side"] is None) is pushed
    summary = run_job(document, tmp_path)
    qdrant_filter = models.Filter.model_validate(flt)
    expected = {
        k: d for k, d in products.items() if check_filter(qdrant_filter, d["payload"], k, {})
    }
    assert 0 < len(expected) < PRODUCTS
    if pushed:
        # Redis did the filtering; only the held hash without a vector may reach the engine.
        assert summary.filtered <= 1
    assert_migrated(tmp_path / "t", expected)


# --- errors ---------------------------------------------------------------------------


def test_wrong_password_is_one_line_without_the_password(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    document = job(redis_server, "products", tmp_path / "t")
    document["source"]["url"] = f"redis://default:wrong-{PASSWORD}@127.0.0.1:{redis_server.port}"
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(document))
    result = run_cli("plan", "job.yaml", cwd=tmp_path)
    assert result.code != 0
    assert "rejected the username or password" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert PASSWORD not in result.stderr + result.stdout


def test_unix_socket_with_password_key(
    redis_server: RedisServer, products: dict[Any, Doc], tmp_path: Path
) -> None:
    document = job(redis_server, "products", tmp_path / "t")
    document["source"].update(url=f"unix://{redis_server.socket}", password=PASSWORD, timeout=5)
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(document))
    result = run_cli("plan", "--output", "json", "job.yaml", cwd=tmp_path)
    assert result.code == 0, result.stderr
    assert f'"count": {PRODUCTS + 1}' in result.stdout
    assert PASSWORD not in result.stdout


def test_unknown_index_lists_the_existing_ones(
    redis_server: RedisServer, products: dict[Any, Doc], tmp_path: Path
) -> None:
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(job(redis_server, "nope", tmp_path / "t")))
    result = run_cli("plan", "job.yaml", cwd=tmp_path)
    assert result.code != 0
    assert "index 'nope' does not exist" in result.stderr and "products" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_server_without_the_search_module(tmp_path: Path) -> None:
    with running_redis(tmp_path, password=None, modules=False) as bare:
        (tmp_path / "job.yaml").write_text(yaml.safe_dump(job(bare, "products", tmp_path / "t")))
        result = run_cli("plan", "job.yaml", cwd=tmp_path)
    assert result.code != 0
    assert "no search module" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_held_keys_beyond_one_search_result_page(
    redis_server: RedisServer, products: dict[Any, Doc]
) -> None:
    """A page of more keys than one FT.SEARCH may return (batch_size x parallelism) is checked in chunks."""

    numbered = [f"product:{i}".encode() for i in range(PRODUCTS)]  # over the 10,000 cap
    others = [b"product:bad-vector", b"other:1", b"unrelated", b"product:no-vector"]
    source = open_source("redis", {"url": redis_server.url, "index": "products"}, 100)
    try:
        assert source._held(others + numbered) == [b"product:no-vector", *numbered]
    finally:
        source.close()


def test_decodes_float16_and_bfloat16() -> None:
    from qmigrate.sources.redis import decode_vector

    values = [1.5, -2.0, 0.25]
    half = np.array(values, "<f2").tobytes()
    bf16 = (np.array(values, "<f4").view("<u4") >> 16).astype("<u2").tobytes()
    assert decode_vector(half, "FLOAT16").tolist() == values
    assert decode_vector(bf16, "BFLOAT16").tolist() == values


def test_redis_transport_errors_are_transient_and_auth_errors_fatal(tmp_path: Path) -> None:
    """Real errors from redis-py: a refused connection is retried, a wrong password is not."""
    import redis

    from qmigrate.retry import is_transient
    from tests.servers.process import free_port

    with pytest.raises(redis.ConnectionError) as refused:
        redis.Redis(port=free_port(), socket_connect_timeout=1).ping()
    assert is_transient(refused.value)
    with (
        running_redis(tmp_path, modules=False) as server,
        pytest.raises(redis.AuthenticationError) as rejected,
    ):
        redis.Redis(port=server.port, password="wrong").ping()
    assert not is_transient(rejected.value)


def test_json_fields_are_named_by_path_and_a_filter_on_an_alias_is_warned(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    client = redis_server.client()
    client.execute_command(
        "FT.CREATE", "shelf", "ON", "JSON", "PREFIX", "1", "shelf:", "SCHEMA",
        "$.v", "AS", "v", "VECTOR", "FLAT", "6", "TYPE", "FLOAT32", "DIM", "2",
        "DISTANCE_METRIC", "L2", "$.meta.cat", "AS", "cat", "TAG",
    )  # fmt: skip
    for i in range(6):
        doc = {"v": [i, 1.0], "meta": {"cat": "book" if i % 2 else "pen"}, "n": i}
        client.execute_command("JSON.SET", f"shelf:{i}", "$", json.dumps(doc))

    def plan(key: str) -> dict[str, Any]:
        document = job(redis_server, "shelf", tmp_path / "t")
        document["filter"] = {"must": [{"key": key, "match": {"value": "book"}}]}
        (tmp_path / "job.yaml").write_text(yaml.safe_dump(document))
        result = run_cli("plan", "--output", "json", "job.yaml", cwd=tmp_path)
        assert result.code == 0, result.stderr
        return result.json()["jobs"][0]

    by_alias = plan("cat")
    assert by_alias["source"]["payload_fields"] == ["meta", "meta.cat", "n"]
    assert by_alias["source"]["payload_indexes"] == {"meta.cat": "keyword"}
    assert [w.split(":")[0] for w in by_alias["warnings"]] == [
        "filter key 'cat' is no payload field the source showed (meta, meta.cat, n)"
    ]
    assert plan("meta.cat")["warnings"] == []
    summary = run_job(
        {**job(redis_server, "shelf", tmp_path / "t"), "filter": {"must": [
            {"key": "meta.cat", "match": {"value": "book"}}
        ]}},
        tmp_path,
    )  # fmt: skip
    assert (summary.written, summary.filtered) == (3, 3)


def test_one_id_under_two_prefixes_advises_the_whole_key(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    client = redis_server.client()
    client.execute_command(
        "FT.CREATE", "ab", "ON", "HASH", "PREFIX", "2", "a:", "b:", "SCHEMA",
        "v", "VECTOR", "FLAT", "6", "TYPE", "FLOAT32", "DIM", "2", "DISTANCE_METRIC", "L2",
    )  # fmt: skip
    for key in ("a:1", "b:1", "a:2"):
        client.hset(key, mapping={"v": np.array([1, 2], "<f4").tobytes()})
    document = job(redis_server, "ab", tmp_path / "t")
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(document))
    result = run_cli("apply", "job.yaml", cwd=tmp_path)
    assert result.code == 1, result.stdout
    assert "(e.g. '1'); the target kept one point per ID" in result.stderr, result.stderr
    assert "so 'a:1' and 'b:1' are one ID: set source.id: key" in result.stderr
    assert "Set on_duplicate: last_wins" not in result.stderr
    document["source"]["id"] = "key"
    document["restart"] = "restart"
    summary = run_job(document, tmp_path)
    assert (summary.written, summary.count_check) == (3, "ok")
