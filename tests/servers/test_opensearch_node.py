"""The OpenSearch test node does what the OpenSearch source relies on, through opensearch-py:
k-NN vectors on the Lucene engine, and point-in-time reads paged with search_after and sliced.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from typing import Any

import pytest
from opensearchpy import NotFoundError

from tests.servers.opensearch import INSTALL_SCRIPT, OpenSearchServer

DIMENSION = 4
DOCUMENTS = 23


def vector_of(number: int) -> list[float]:
    """A distinct direction per document, so a k-NN query for one finds it first."""
    return [math.cos(number), math.sin(number), (number % 5) / 5, 1.0 + number / DOCUMENTS]


@pytest.fixture(scope="module")
def vectors_index(opensearch_server: OpenSearchServer) -> Iterator[str]:
    client = opensearch_server.client()
    name = "node-check"
    client.indices.create(
        index=name,
        body={
            "settings": {"index": {"knn": True, "number_of_shards": 2, "number_of_replicas": 0}},
            "mappings": {
                "properties": {
                    "embedding": {
                        "type": "knn_vector",
                        "dimension": DIMENSION,
                        "method": {"name": "hnsw", "engine": "lucene", "space_type": "cosinesimil"},
                    },
                    "number": {"type": "integer"},
                }
            },
        },
    )
    actions: list[dict[str, Any]] = []
    for number in range(DOCUMENTS):
        actions.append({"index": {"_index": name, "_id": f"doc-{number}"}})
        actions.append({"embedding": vector_of(number), "number": number})
    response = client.bulk(body=actions, refresh=True)
    assert not response["errors"], response
    yield name
    client.indices.delete(index=name)


def test_the_node_is_the_pinned_version_with_the_knn_plugin(
    opensearch_server: OpenSearchServer,
) -> None:
    pinned = re.search(r"^OPENSEARCH_VERSION=(\S+)$", INSTALL_SCRIPT.read_text(), re.MULTILINE)
    assert pinned and opensearch_server.version == pinned.group(1)
    plugins = opensearch_server.client().cat.plugins(format="json")
    assert {row["component"]: row["version"] for row in plugins} == {
        "opensearch-knn": f"{pinned.group(1)}.0"
    }
    assert opensearch_server.pid > 0


def test_knn_vectors_are_stored_and_searched_on_the_lucene_engine(
    opensearch_server: OpenSearchServer, vectors_index: str
) -> None:
    client = opensearch_server.client()
    mapping = client.indices.get_mapping(index=vectors_index)[vectors_index]["mappings"]
    embedding = mapping["properties"]["embedding"]
    assert embedding["dimension"] == DIMENSION
    assert embedding["method"]["engine"] == "lucene"
    assert embedding["method"]["space_type"] == "cosinesimil"

    answer = client.search(
        index=vectors_index,
        body={"size": 3, "query": {"knn": {"embedding": {"vector": vector_of(7), "k": 3}}}},
    )
    hits = answer["hits"]["hits"]
    assert hits[0]["_id"] == "doc-7"
    # The vector comes back in _source as it was written (float32 precision).
    returned = hits[0]["_source"]["embedding"]
    assert returned == pytest.approx(vector_of(7), rel=1e-6)


def _page_through(client: Any, pit_id: str, extra: dict[str, Any]) -> list[str]:
    """Every document id a point in time holds, three per page, in _shard_doc order."""
    seen: list[str] = []
    search_after: list[Any] | None = None
    while True:
        body: dict[str, Any] = {
            "size": 3,
            "pit": {"id": pit_id, "keep_alive": "1m"},
            "sort": [{"_shard_doc": "asc"}],
            **extra,
        }
        if search_after is not None:
            body["search_after"] = search_after
        hits = client.search(body=body)["hits"]["hits"]
        if not hits:
            return seen
        seen += [hit["_id"] for hit in hits]
        search_after = hits[-1]["sort"]


def test_a_point_in_time_is_paged_with_search_after_and_sliced_then_deleted(
    opensearch_server: OpenSearchServer, vectors_index: str
) -> None:
    client = opensearch_server.client()
    every_id = {f"doc-{number}" for number in range(DOCUMENTS)}
    pit = client.transport.perform_request(
        "POST", f"/{vectors_index}/_search/point_in_time", params={"keep_alive": "1m"}
    )
    pit_id = pit["pit_id"]
    # A document indexed after the PIT was opened is not in it.
    client.index(index=vectors_index, id="late", body={"number": -1}, refresh=True)

    paged = _page_through(client, pit_id, {})
    assert sorted(paged) == sorted(every_id)

    slices = [_page_through(client, pit_id, {"slice": {"id": i, "max": 2}}) for i in range(2)]
    assert all(slices), slices
    assert set(slices[0]).isdisjoint(slices[1])
    assert sorted(slices[0] + slices[1]) == sorted(every_id)

    deleted = client.delete_pit(body={"pit_id": [pit_id]})
    assert deleted["pits"] == [{"pit_id": pit_id, "successful": True}]
    with pytest.raises(NotFoundError):
        client.search(body={"size": 1, "pit": {"id": pit_id}, "sort": [{"_shard_doc": "asc"}]})
    client.delete(index=vectors_index, id="late", refresh=True)
