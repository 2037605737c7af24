"""Elasticsearch -> Qdrant local mode, against a real Elasticsearch 8.19 node
(tests/servers/elasticsearch.py: the integ-test-zip from Maven Central, security on).

Every vector kind (float, byte and bit dense_vector, sparse_vector, a vector left out of
_source), object and nested payload, kill -9 and resume, an index that changes during the
run, a point in time that expires, and the one-line errors.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from qmigrate.mapping import point_id
from qmigrate.records import CursorLost
from tests.conftest import (
    apply_and_kill,
    apply_resumed,
    checkpoint_points,
    kill_mid_apply,
    open_source,
    read_collection,
    run_cli,
    run_job,
)
from tests.servers.elasticsearch import PASSWORD, USER, ElasticsearchServer

pytest.importorskip("elasticsearch")

COUNT = 2000
CHANGING = 1000  # documents of the index that changes during the run
MAPPING: dict[str, Any] = {
    "_source": {"excludes": ["hidden"]},
    "properties": {
        "dense": {"type": "dense_vector", "dims": 8, "similarity": "cosine"},
        "small": {
            "type": "dense_vector",
            "dims": 4,
            "element_type": "byte",
            "similarity": "l2_norm",
        },
        "bits": {"type": "dense_vector", "dims": 16, "element_type": "bit"},
        "hidden": {"type": "dense_vector", "dims": 4, "similarity": "dot_product"},
        "sparse": {"type": "sparse_vector"},
        "title": {"type": "text", "fields": {"keyword": {"type": "keyword"}}},
        "sku": {"type": "keyword"},
        "price": {"type": "double"},
        "stock": {"type": "long"},
        "meta": {"properties": {"brand": {"type": "keyword"}, "origin": {"type": "keyword"}}},
        "parts": {"type": "nested", "properties": {"name": {"type": "keyword"}}},
    },
}


def document(i: int, rng: np.random.Generator) -> dict[str, Any]:
    unit = rng.normal(size=4)
    return {
        "dense": [float(v) for v in rng.uniform(-1, 1, 8).astype(np.float32)],
        "small": [int(v) for v in rng.integers(-128, 128, 4)],
        "bits": [int(v) for v in rng.integers(-128, 128, 2)],
        "hidden": [float(v) for v in (unit / np.linalg.norm(unit)).astype(np.float32)],
        "sparse": {str(i % 50): 0.5 + i % 3, "7000": 1.25},
        "title": f"product number {i}",
        "sku": f"sku-{i:05d}",
        "price": i * 0.5,
        "stock": i % 40,
        "meta": {"brand": ["acme", "globex"][i % 2], "origin": "nl"},
        "parts": [{"name": f"part {k}"} for k in range(i % 3)],
    }


def expected_point(doc_id: str, doc: dict[str, Any]) -> dict[str, Any]:
    vectors = {
        "dense": doc["dense"],
        "small": [float(v) for v in doc["small"]],
        "bits": np.unpackbits(np.asarray(doc["bits"], np.int8).view(np.uint8)).tolist(),
        "hidden": doc["hidden"],
    }
    sparse = {int(k): v for k, v in doc["sparse"].items()}
    payload = {k: v for k, v in doc.items() if k not in (*vectors, "sparse")}
    return {"vectors": vectors, "sparse": sparse, "payload": payload | {"original_id": doc_id}}


def load_index(server: ElasticsearchServer, name: str, count: int) -> dict[Any, dict[str, Any]]:
    server.request(
        "PUT",
        f"/{name}",
        {"settings": {"number_of_shards": 2, "number_of_replicas": 0}, "mappings": MAPPING},
    )
    rng = np.random.default_rng(3)
    expected = {}
    for start in range(0, count, 1000):
        lines: list[dict[str, Any]] = []
        for i in range(start, min(count, start + 1000)):
            doc = document(i, rng)
            lines += [{"index": {"_index": name, "_id": f"p{i}"}}, doc]
            expected[point_id(f"p{i}")[0]] = expected_point(f"p{i}", doc)
        server.bulk(lines)
    return expected


@pytest.fixture(scope="module")
def products(elasticsearch_server: ElasticsearchServer) -> dict[Any, dict[str, Any]]:
    return load_index(elasticsearch_server, "products", COUNT)


def job(server: ElasticsearchServer, index: str, target: Path, **extra: Any) -> dict[str, Any]:
    return {
        "version": 1,
        "name": "es-test",
        "source": {
            "type": "elasticsearch",
            "url": server.url,
            "index": index,
            "username": USER,
            "password": PASSWORD,
        },
        "target": {"path": str(target), "collection": "copy"},
        "batch_size": 200,
        **extra,
    }


def assert_migrated(target: Path, expected: dict[Any, dict[str, Any]]) -> None:
    points = read_collection(target, "copy")
    assert sorted(map(str, points)) == sorted(map(str, expected))
    for key, doc in expected.items():
        point = points[key]
        assert point.payload == doc["payload"], key
        vectors = point.vector
        assert isinstance(vectors, dict)
        for name, values in doc["vectors"].items():
            assert np.asarray(vectors[name], np.float32).tolist() == (
                np.asarray(values, np.float32).tolist()
            ), (key, name)
        sparse = vectors["sparse"]
        assert dict(zip(sparse.indices, sparse.values, strict=True)) == doc["sparse"], key


def save(document: dict[str, Any], path: Path) -> Path:
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


# --- migration ------------------------------------------------------------------------


def test_every_vector_kind_and_the_payload_arrive_exactly(
    elasticsearch_server: ElasticsearchServer, products: dict[Any, Any], tmp_path: Path
) -> None:
    path = save(job(elasticsearch_server, "products", tmp_path / "t"), tmp_path / "job.yaml")
    plan = run_cli("plan", "--output", "json", str(path), cwd=tmp_path)
    assert plan.code == 0, plan.stderr
    assert "hidden: left out of _source, read from doc values" in plan.stdout
    assert PASSWORD not in plan.stdout + plan.stderr
    summary = run_job(job(elasticsearch_server, "products", tmp_path / "t"), tmp_path)
    assert (summary.total_points, summary.count_check) == (COUNT, "ok")
    assert_migrated(tmp_path / "t", products)
    verified = run_cli("verify", str(path), cwd=tmp_path)
    assert verified.code == 0, verified.stdout + verified.stderr
    assert "mean overlap@" in verified.stdout, verified.stdout


def test_kill_9_then_resume_ends_with_the_same_points(
    elasticsearch_server: ElasticsearchServer, products: dict[Any, Any], tmp_path: Path
) -> None:
    checkpoint = tmp_path / "checkpoint.json"
    document = job(
        elasticsearch_server,
        "products",
        tmp_path / "t",
        batch_size=50,
        parallelism=3,
        checkpoint={"store": "file", "path": str(checkpoint)},
    )
    path = save(document, tmp_path / "job.yaml")
    checkpointed = kill_mid_apply(path, checkpoint, after_points=700, count=COUNT)
    summary = apply_resumed(path, COUNT)
    assert summary["written"] == COUNT - checkpointed, "resumed exactly from the checkpoints"
    assert_migrated(tmp_path / "t", products)


def test_a_resume_after_the_point_in_time_expired_reads_unfinished_partitions_again(
    elasticsearch_server: ElasticsearchServer, products: dict[Any, Any], tmp_path: Path
) -> None:
    checkpoint = tmp_path / "checkpoint.json"
    document = job(
        elasticsearch_server,
        "products",
        tmp_path / "t",
        batch_size=50,
        parallelism=2,
        checkpoint={"store": "file", "path": str(checkpoint)},
    )
    path = save(document, tmp_path / "job.yaml")
    assert apply_and_kill(path, checkpoint, after_points=600), "apply finished before the kill"
    elasticsearch_server.request("DELETE", "/_pit", {"id": saved_pit(checkpoint)})
    result = run_cli("apply", "--output", "json", str(path), cwd=tmp_path)
    assert result.code == 0, result.stderr
    assert "point in time expired" in result.stderr and "reading it again" in result.stderr
    summary = result.json()["jobs"][0]
    assert (summary["total_points"], summary["count_check"]) == (COUNT, "ok")
    assert_migrated(tmp_path / "t", products)


def saved_pit(checkpoint: Path) -> str:
    """The point in time the job's partitions were made in, from its file checkpoints."""
    jobs = json.loads(checkpoint.read_text())["jobs"]
    return str(next(iter(jobs.values()))["job"]["partitions"][0]["spec"]["pit"])


def test_an_index_changing_during_the_run_is_read_as_one_view(
    elasticsearch_server: ElasticsearchServer, tmp_path: Path
) -> None:
    """Documents added, deleted and updated while apply runs: the run reads the index as
    it was when the job described it, so the target is exactly that first view."""
    expected = load_index(elasticsearch_server, "changing", CHANGING)
    checkpoint = tmp_path / "checkpoint.json"
    document = job(
        elasticsearch_server,
        "changing",
        tmp_path / "t",
        batch_size=20,
        parallelism=2,
        checkpoint={"store": "file", "path": str(checkpoint)},
    )
    path = save(document, tmp_path / "job.yaml")
    stop = threading.Event()
    changes = 0

    def writer() -> None:
        nonlocal changes
        rng = np.random.default_rng(9)
        while checkpoint_points(checkpoint) < 100 and not stop.is_set():
            time.sleep(0.005)
        while not stop.is_set():
            i = changes
            elasticsearch_server.bulk(
                [
                    {"index": {"_index": "changing", "_id": f"new{i}"}},
                    document_for_change(i, rng),
                    {"delete": {"_index": "changing", "_id": f"p{CHANGING - 1 - i}"}},
                    {"update": {"_index": "changing", "_id": f"p{i}"}},
                    {"doc": {"title": "changed"}},
                ]
            )
            changes += 1

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        result = run_cli("apply", "--output", "json", str(path), cwd=tmp_path)
    finally:
        stop.set()
        thread.join()
    assert changes > 5, "the index changed during the run"
    assert result.code == 0, result.stderr
    assert result.json()["jobs"][0]["count_check"] == "ok"
    assert_migrated(tmp_path / "t", expected)


def document_for_change(i: int, rng: np.random.Generator) -> dict[str, Any]:
    return document(10_000 + i, rng)


def test_a_point_in_time_expiring_mid_read_is_a_lost_cursor(
    elasticsearch_server: ElasticsearchServer, products: dict[Any, Any]
) -> None:
    """Mid-partition the source says CursorLost (never a silent skip); read again from its
    start, the partition comes whole through a new point in time."""
    config = job(elasticsearch_server, "products", Path("unused"))["source"]
    source = open_source("elasticsearch", {k: v for k, v in config.items() if k != "type"}, 100)
    source.push_down(None)
    source.describe()
    partition = source.partitions(2)[0]
    pages = source.read(partition, None)
    first = next(pages)
    elasticsearch_server.request("DELETE", "/_pit", {"id": partition.spec["pit"]})
    with pytest.raises(CursorLost, match="point in time expired"):
        list(pages)
    with pytest.raises(CursorLost):
        list(source.read(partition, first.cursor))
    again = [r.id for page in source.read(partition, None) for r in page.records]
    assert len(again) == len(set(again)) > len(first.records)
    assert {r.id for r in first.records} <= set(again)
    source.close()


def test_ids_from_a_source_field_and_a_filter_on_a_text_fields_keyword(
    elasticsearch_server: ElasticsearchServer, products: dict[Any, Any]
) -> None:
    """id: {field: sku} takes each document's sku; a match on the text field `title` is
    pushed as a term on title.keyword, a range on the double `price` as a range."""
    config = job(elasticsearch_server, "products", Path("unused"))["source"]
    config = {k: v for k, v in config.items() if k != "type"} | {"id": {"field": "sku"}}
    source = open_source("elasticsearch", config, 500)
    flt = {
        "must": [
            {"key": "title", "match": {"any": ["product number 7", "product number 8"]}},
            {"key": "price", "range": {"lt": 4}},
        ]
    }
    assert source.push_down(flt) is None
    assert source.describe().count == 1
    records = [
        r for p in source.partitions(2) for page in source.read(p, None) for r in page.records
    ]
    source.close()
    assert [(r.id, r.payload["title"]) for r in records] == [("sku-00007", "product number 7")]


# --- errors ---------------------------------------------------------------------------


def one_line_failure(document: dict[str, Any], tmp_path: Path) -> str:
    path = save(document, tmp_path / "job.yaml")
    result = run_cli("plan", str(path), cwd=tmp_path)
    assert result.code != 0
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert PASSWORD not in result.stderr + result.stdout
    return result.stderr


@pytest.mark.parametrize("auth", ["password", "api_key", "token"])
def test_wrong_credentials_fail_in_one_line(
    elasticsearch_server: ElasticsearchServer,
    products: dict[Any, Any],
    tmp_path: Path,
    auth: str,
) -> None:
    """A wrong password, API key or bearer token: each reaches the node (401) and is said in
    one line that holds none of them."""
    document = job(elasticsearch_server, "products", tmp_path / "t")
    secret = f"wrong-{PASSWORD}"
    if auth == "password":
        document["source"]["password"] = secret
    else:
        del document["source"]["username"], document["source"]["password"]
        document["source"][auth] = secret
    message = one_line_failure(document, tmp_path)
    assert "rejected the credentials (401)" in message
    assert secret not in message


def test_an_unknown_index_fails_in_one_line_naming_the_existing_ones(
    elasticsearch_server: ElasticsearchServer, products: dict[Any, Any], tmp_path: Path
) -> None:
    message = one_line_failure(job(elasticsearch_server, "nope", tmp_path / "t"), tmp_path)
    assert "index nope does not exist" in message and "products" in message


def test_a_sparse_vector_left_out_of_source_is_refused_in_one_line(
    elasticsearch_server: ElasticsearchServer, tmp_path: Path
) -> None:
    mapping = {
        "_source": {"excludes": ["terms"]},
        "properties": {"terms": {"type": "sparse_vector"}},
    }
    elasticsearch_server.request("PUT", "/sparse-hidden", {"mappings": mapping})
    message = one_line_failure(job(elasticsearch_server, "sparse-hidden", tmp_path), tmp_path)
    assert "sparse_vector field terms is left out of _source" in message


# --- values, without a server ---------------------------------------------------------


def test_integer_ids_are_plain_ascii_digits_only() -> None:
    from qmigrate.sources.elasticsearch import _plain_integer

    assert [_plain_integer(t) for t in ("0", "42", "007", "4a", "²", "-1", "")] == [
        True,
        True,
        False,
        False,
        False,
        False,
        False,
    ]


def test_sparse_tokens_and_bit_vectors() -> None:
    import zlib

    from qmigrate.sources.elasticsearch import VectorMapping, _vector_value

    sparse = VectorMapping("s", "sparse_vector", None, "float", None)
    value = _vector_value(sparse, {"12": 0.5, "##ing": 2})
    assert (value.indices, value.values) == ([12, zlib.crc32(b"##ing")], [0.5, 2.0])
    bits = VectorMapping("b", "dense_vector", 16, "bit", "l2_norm")
    as_bytes = _vector_value(bits, [5, -3]).tolist()
    assert as_bytes == _vector_value(bits, "05fd").tolist()
    assert as_bytes == [0, 0, 0, 0, 0, 1, 0, 1, 1, 1, 1, 1, 1, 1, 0, 1]


def test_what_the_query_dsl_takes_and_what_stays_client_side() -> None:
    from qmigrate.sources.elasticsearch import FieldMapping, _condition

    fields = {
        "code": FieldMapping("code", "keyword", ignore_above=5),
        "name": FieldMapping("name", "text", keyword_subfield="name.keyword"),
        "body": FieldMapping("body", "text"),
        "ratio": FieldMapping("ratio", "float"),
        "n": FieldMapping("n", "long"),
    }

    def pushed(key: str, condition: dict[str, Any]) -> Any:
        return _condition({"key": key, **condition}, fields)

    assert pushed("code", {"match": {"value": "abc"}}) == {"term": {"code": "abc"}}
    assert pushed("code", {"match": {"value": "longer than five"}}) is None  # never indexed
    assert pushed("name", {"match": {"value": "A b"}}) == {"term": {"name.keyword": "A b"}}
    assert pushed("body", {"match": {"value": "x"}}) is None  # analysed text
    assert pushed("ratio", {"range": {"gt": 0.1}}) is None  # float rounds what it indexes
    assert pushed("n", {"range": {"gte": 2, "lt": None}}) == {"range": {"n": {"gte": 2}}}
    assert pushed("n", {"match": {"value": "2"}}) is None  # a string never equals a number
    assert pushed("n", {"match": {"except": [1]}}) is None


def test_source_includes_and_excludes_with_wildcards() -> None:
    from qmigrate.sources.elasticsearch import _kept

    assert not _kept("meta.embedding", [], ["meta.*"])
    assert not _kept("emb", [], ["em*"])
    assert _kept("title", [], ["emb"])
    assert not _kept("title", ["meta"], [])
    assert _kept("meta.embedding", ["meta"], [])
