"""OpenSearch -> Qdrant local mode, against a real OpenSearch node with the k-NN plugin
(tests/servers/opensearch.py; Lucene engine). The node runs without the security plugin,
so wrong credentials are tested on the Elasticsearch node only (test_elasticsearch.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from qmigrate.mapping import point_id
from qmigrate.records import CursorLost
from tests.conftest import (
    apply_resumed,
    kill_mid_apply,
    open_source,
    read_collection,
    run_cli,
)
from tests.servers.elasticsearch import SearchRest

pytest.importorskip("opensearchpy")

COUNT = 1200
MAPPING: dict[str, Any] = {
    "properties": {
        "dense": {
            "type": "knn_vector",
            "dimension": 8,
            "method": {"name": "hnsw", "engine": "lucene", "space_type": "cosinesimil"},
        },
        # No space type: l2 by default. The engine is named: the default, FAISS, is native
        # code that this node has not (indexing into it kills the node).
        "plain": {
            "type": "knn_vector",
            "dimension": 3,
            "method": {"name": "hnsw", "engine": "lucene"},
        },
        "title": {"type": "text", "fields": {"keyword": {"type": "keyword"}}},
        "stock": {"type": "long"},
        "parts": {"type": "nested", "properties": {"name": {"type": "keyword"}}},
    }
}


@pytest.fixture(scope="module")
def items(opensearch_server: Any) -> dict[Any, dict[str, Any]]:
    rest = SearchRest(opensearch_server.url)
    settings = {"index.knn": True, "number_of_shards": 2, "number_of_replicas": 0}
    rest.request("PUT", "/items", {"settings": settings, "mappings": MAPPING})
    rng = np.random.default_rng(5)
    expected = {}
    for start in range(0, COUNT, 1000):
        lines: list[dict[str, Any]] = []
        for i in range(start, min(COUNT, start + 1000)):
            doc = {
                "dense": [float(v) for v in rng.uniform(-1, 1, 8).astype(np.float32)],
                "plain": [float(v) for v in rng.uniform(-1, 1, 3).astype(np.float32)],
                "title": f"item {i}",
                "stock": i % 17,
                "parts": [{"name": f"part {k}"} for k in range(i % 3)],
            }
            lines += [{"index": {"_index": "items", "_id": f"i{i}"}}, doc]
            expected[point_id(f"i{i}")[0]] = doc | {"id": f"i{i}"}
        rest.bulk(lines)
    return expected


def job(server: Any, target: Path, **extra: Any) -> dict[str, Any]:
    return {
        "version": 1,
        "name": "os-test",
        "source": {"type": "opensearch", "url": server.url, "index": "items"},
        "target": {"path": str(target), "collection": "copy"},
        "batch_size": 100,
        **extra,
    }


def assert_migrated(target: Path, expected: dict[Any, dict[str, Any]]) -> None:
    points = read_collection(target, "copy")
    assert sorted(map(str, points)) == sorted(map(str, expected))
    for key, doc in expected.items():
        payload = {k: v for k, v in doc.items() if k not in ("dense", "plain", "id")}
        assert points[key].payload == payload | {"original_id": doc["id"]}, key
        vectors = points[key].vector
        assert isinstance(vectors, dict)
        for name in ("dense", "plain"):
            assert vectors[name] == np.asarray(doc[name], np.float32).tolist(), (key, name)


def test_knn_vectors_and_payload_arrive_exactly_and_verify_searches(
    opensearch_server: Any, items: dict[Any, Any], tmp_path: Path
) -> None:
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(job(opensearch_server, tmp_path / "t")))
    plan = run_cli("plan", "--output", "json", str(path), cwd=tmp_path)
    assert plan.code == 0, plan.stderr
    assert "dense knn_vector(8, float) Cosine engine=lucene" in plan.stdout
    assert "plain knn_vector(3, float) Euclid" in plan.stdout
    applied = run_cli("apply", "--output", "json", str(path), cwd=tmp_path)
    assert applied.code == 0, applied.stderr
    assert applied.json()["jobs"][0]["count_check"] == "ok"
    assert_migrated(tmp_path / "t", items)
    verified = run_cli("verify", str(path), cwd=tmp_path)
    assert verified.code == 0, verified.stdout + verified.stderr
    assert "mean overlap@" in verified.stdout, verified.stdout


def test_kill_9_then_resume_ends_with_the_same_points(
    opensearch_server: Any, items: dict[Any, Any], tmp_path: Path
) -> None:
    checkpoint = tmp_path / "checkpoint.json"
    document = job(
        opensearch_server,
        tmp_path / "t",
        batch_size=50,
        parallelism=2,
        checkpoint={"store": "file", "path": str(checkpoint)},
    )
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(document))
    checkpointed = kill_mid_apply(path, checkpoint, after_points=400, count=COUNT)
    summary = apply_resumed(path, COUNT)
    assert summary["written"] == COUNT - checkpointed, "resumed exactly from the checkpoints"
    assert_migrated(tmp_path / "t", items)


def test_a_point_in_time_expiring_mid_read_is_a_lost_cursor(
    opensearch_server: Any, items: dict[Any, Any]
) -> None:
    source = open_source("opensearch", {"url": opensearch_server.url, "index": "items"}, 100)
    source.push_down(None)
    source.describe()
    partition = source.partitions(3)[1]
    pages = source.read(partition, None)
    first = next(pages)
    SearchRest(opensearch_server.url).request(
        "DELETE", "/_search/point_in_time", {"pit_id": [partition.spec["pit"]]}
    )
    with pytest.raises(CursorLost, match="point in time expired"):
        list(pages)
    again = [r.id for page in source.read(partition, None) for r in page.records]
    assert len(again) == len(set(again)) > len(first.records)
    assert {r.id for r in first.records} <= set(again)
    source.close()


def test_an_unknown_index_fails_in_one_line(
    opensearch_server: Any, items: dict[Any, Any], tmp_path: Path
) -> None:
    document = job(opensearch_server, tmp_path / "t")
    document["source"]["index"] = "nope"
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(document))
    result = run_cli("plan", "job.yaml", cwd=tmp_path)
    assert result.code != 0
    assert "index nope does not exist" in result.stderr and "items" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_a_knn_vector_left_out_of_source_is_refused_in_one_line(
    opensearch_server: Any, tmp_path: Path
) -> None:
    """OpenSearch answers docvalue_fields on a knn_vector with a 500 ("doesn't support
    sorting"): such a vector cannot be read back, and the job says so before data moves."""
    mapping = {
        "_source": {"excludes": ["v"]},
        "properties": {
            "v": {
                "type": "knn_vector",
                "dimension": 3,
                "method": {"name": "hnsw", "engine": "lucene"},
            }
        },
    }
    SearchRest(opensearch_server.url).request(
        "PUT", "/hidden", {"settings": {"index.knn": True}, "mappings": mapping}
    )
    document = job(opensearch_server, tmp_path / "t")
    document["source"]["index"] = "hidden"
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(document))
    result = run_cli("plan", "job.yaml", cwd=tmp_path)
    assert result.code != 0
    assert "knn_vector field v is left out of _source" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
