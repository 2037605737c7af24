"""Chroma -> Qdrant local mode, against a real `chroma run` server and a PersistentClient directory."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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
from tests.servers.chroma import ChromaServer, auth_gate

chromadb = pytest.importorskip("chromadb")
from chromadb.config import Settings  # noqa: E402

Row = dict[str, Any]


def make_rows(count: int, dim: int, seed: int = 0) -> list[Row]:
    """Documents, mixed metadata types and gaps: no metadata, missing keys, no document."""
    rng = random.Random(seed)
    rows = []
    for i in range(count):
        metadata: dict[str, Any] | None = {
            "category": ["news", "blog", "paper"][i % 3],
            "year": 2000 + i % 25,
            "published": i % 2 == 0,
            "tags": [f"t{(i + k) % 5}" for k in range(1 + i % 3)],
            "ratings": [i % 4, 4 + i % 2],
            "weights": [round(rng.random(), 6), 2.0],
            "flags": [i % 3 == 0],
        }
        if i % 4 == 1:
            metadata["score"] = round(rng.uniform(-5, 5), 6)
        if i % 5 == 2:
            del metadata["tags"], metadata["year"]
        if i % 7 == 0:
            metadata = None
        rows.append(
            {
                "id": str(uuid.UUID(int=rng.getrandbits(128))) if i % 5 == 0 else f"doc-{i:05d}",
                "embedding": [rng.uniform(-1, 1) for _ in range(dim)],
                "metadata": metadata,
                "document": f"text of record {i}" if i % 3 else None,
            }
        )
    return rows


def add_rows(collection: Any, rows: list[Row]) -> None:
    for start in range(0, len(rows), 500):
        chunk = rows[start : start + 500]
        collection.add(
            ids=[r["id"] for r in chunk],
            embeddings=[r["embedding"] for r in chunk],
            metadatas=[r["metadata"] for r in chunk],
            documents=[r["document"] for r in chunk],
        )


def create(server: ChromaServer, name: str, rows: list[Row], **options: Any) -> None:
    add_rows(server.client().create_collection(name, embedding_function=None, **options), rows)


def expected_payload(row: Row) -> dict[str, Any]:
    payload = dict(row["metadata"] or {})
    if row["document"] is not None:
        payload["document"] = row["document"]
    if not _is_uuid(row["id"]):
        payload["original_id"] = row["id"]
    return payload


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def assert_migrated(target: Path, rows: list[Row]) -> None:
    """Exactly these rows in the target: IDs, payloads, and vectors to float32 precision."""
    points = read_collection(target, "copy")
    expected = {point_id(r["id"])[0]: r for r in rows}
    assert sorted(points) == sorted(expected)
    for key, row in expected.items():
        assert points[key].payload == expected_payload(row), row["id"]
        assert points[key].vector == pytest.approx(row["embedding"], abs=1e-6), row["id"]


def job(source: dict[str, Any], target: Path, **extra: Any) -> dict[str, Any]:
    return {
        "version": 1,
        "name": "chroma-test",
        "source": {"type": "chroma", **source},
        "target": {"path": str(target), "collection": "copy"},
        "batch_size": 64,
        **extra,
    }


def target_params(target: Path) -> models.VectorParams:
    client = QdrantClient(path=str(target))
    try:
        return client.get_collection("copy").config.params.vectors
    finally:
        client.close()


ROWS = make_rows(700, 16)


@pytest.fixture(scope="module")
def articles(chroma_server: ChromaServer) -> str:
    """700 rows (11 batches of 64) in a collection with the default space (l2)."""
    create(chroma_server, "articles", ROWS)
    return chroma_server.url


# --- migration ------------------------------------------------------------------------


@pytest.mark.parametrize("parallelism", [1, 2])
def test_migrates_ids_vectors_documents_and_metadata_exactly(
    articles: str, tmp_path: Path, parallelism: int
) -> None:
    document = job(
        {"url": articles, "collection": "articles"}, tmp_path / "t", parallelism=parallelism
    )
    summary = run_job(document, tmp_path)
    assert (summary.written, summary.partitions, summary.count_check) == (700, parallelism, "ok")
    assert_migrated(tmp_path / "t", ROWS)
    params = target_params(tmp_path / "t")
    assert (params.size, params.distance) == (16, models.Distance.EUCLID)


def test_resumes_after_kill_9_without_gaps(chroma_server: ChromaServer, tmp_path: Path) -> None:
    rows = make_rows(3000, 32, seed=1)
    create(chroma_server, "resume", rows)
    checkpoint = tmp_path / "checkpoint.json"
    document = job(
        {"url": chroma_server.url, "collection": "resume"},
        tmp_path / "t",
        batch_size=50,
        parallelism=2,
        checkpoint={"store": "file", "path": str(checkpoint)},
    )
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(document))
    kill_mid_apply(path, checkpoint, after_points=600, count=3000)
    apply_resumed(path, 3000)
    assert_migrated(tmp_path / "t", rows)


# --- filters --------------------------------------------------------------------------


def test_filter_pushed_down_selects_exactly(articles: str, tmp_path: Path) -> None:
    flt = {
        "must": [{"key": "category", "match": {"value": "news"}}],
        "should": [{"key": "tags", "match": {"any": ["t1", "t2"]}}],
        "must_not": [{"key": "published", "match": {"value": True}}],
    }
    document = job({"url": articles, "collection": "articles"}, tmp_path / "t", filter=flt)
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(document))
    plan = run_cli("plan", "--output", "json", "job.yaml", cwd=tmp_path).json()["jobs"][0]
    assert plan["filter"]["pushed_down"] is True and plan["filter"]["client_side"] is None
    summary = run_job(document, tmp_path)
    expected = [
        r
        for r in ROWS
        if r["metadata"]
        and r["metadata"]["category"] == "news"
        and {"t1", "t2"} & set(r["metadata"].get("tags", []))
        and not r["metadata"]["published"]
    ]
    assert expected and summary.filtered == 0, "Chroma did all the filtering"
    assert_migrated(tmp_path / "t", expected)


def test_filter_chroma_cannot_match_exactly_runs_client_side(articles: str, tmp_path: Path) -> None:
    flt = {
        "must": [
            {"key": "year", "range": {"gte": 2010, "lt": 2015}},
            {"key": "ratings", "match": {"value": 5}},
            {"key": "category", "match": {"value": "blog"}},
        ]
    }
    document = job({"url": articles, "collection": "articles"}, tmp_path / "t", filter=flt)
    summary = run_job(document, tmp_path)
    expected = [
        r
        for r in ROWS
        if r["metadata"]
        and 2010 <= r["metadata"].get("year", 0) < 2015
        and 5 in r["metadata"]["ratings"]
        and r["metadata"]["category"] == "blog"
    ]
    assert expected and summary.filtered > 0, "year and ratings were filtered client-side"
    assert_migrated(tmp_path / "t", expected)


# Every kind of value a metadata key can hold in Chroma, under the same key.
TRICKY = {
    "missing": None,
    "str-a": "a",
    "str-b": "b",
    "str-empty": "",
    "int-1": 1,
    "int-2": 2,
    "float-1": 1.0,
    "float-1.5": 1.5,
    "true": True,
    "false": False,
    "list-ab": ["a", "b"],
    "list-b": ["b"],
    "list-abc": ["abc"],
    "list-int": [1, 2],
    "list-float": [1.0, 2.5],
    "list-true": [True],
    "list-bools": [False, True],
}


def k(match: dict[str, Any]) -> dict[str, Any]:
    return {"key": "k", "match": match}


SEMANTIC_FILTERS = [
    # pushed down: string and boolean matches, their negations, and/or nesting
    pytest.param({"must": [k({"value": "a"})]}, True, id="str"),
    pytest.param({"must": [k({"value": ""})]}, True, id="empty-str"),
    pytest.param({"must": [k({"value": True})]}, True, id="bool"),
    pytest.param({"must": [k({"any": ["a", "abc"]})]}, True, id="str-any"),
    pytest.param({"must_not": [k({"value": "b"})]}, True, id="not-str"),
    pytest.param({"must_not": [k({"any": ["a", "b"]})]}, True, id="not-str-any"),
    pytest.param({"must_not": [k({"value": False})]}, True, id="not-bool"),
    pytest.param({"should": [k({"value": "a"}), k({"value": True})]}, True, id="should"),
    pytest.param(
        {
            "must": [
                {"key": "o", "match": {"value": "x"}},
                {"should": [k({"value": "b"}), {"must_not": [k({"value": "a"})]}]},
            ]
        },
        True,
        id="nested",
    ),
    # client-side: integers (Chroma's $eq 1 also matches 1.0), ranges (Chroma skips lists),
    # except, emptiness, the document, path keys, min_should, should with one of those
    pytest.param({"must": [k({"value": 1})]}, False, id="int"),
    pytest.param({"must_not": [k({"value": 1})]}, False, id="not-int"),
    pytest.param({"must": [{"key": "k", "range": {"gt": 1}}]}, False, id="range"),
    pytest.param({"must": [{"key": "k", "range": {"lt": 1.5}}]}, False, id="range-float"),
    pytest.param({"must": [k({"except": ["a"]})]}, False, id="except"),
    pytest.param({"must": [{"is_empty": {"key": "k"}}]}, False, id="is-empty"),
    pytest.param(
        {"must": [{"key": "document", "match": {"value": "doc str-a"}}]}, False, id="document"
    ),
    pytest.param({"must": [{"key": "k.x", "match": {"value": "a"}}]}, False, id="path-key"),
    pytest.param(
        {"min_should": {"conditions": [k({"value": "a"})], "min_count": 1}}, False, id="min-should"
    ),
    pytest.param(
        {"should": [k({"value": "a"}), {"key": "k", "range": {"gt": 1}}]}, False, id="should-range"
    ),
]


@pytest.fixture(scope="module")
def tricky(chroma_server: ChromaServer) -> dict[str, Any]:
    collection = chroma_server.client().create_collection("tricky", embedding_function=None)
    ids = list(TRICKY)
    metadatas = [
        {"o": "x" if i % 2 else "y", **({} if v is None else {"k": v})}
        for i, v in enumerate(TRICKY.values())
    ]
    documents = [f"doc {name}" for name in ids]
    collection.add(
        ids=ids, embeddings=[[1.0, 0.0]] * len(ids), metadatas=metadatas, documents=documents
    )
    return {"url": chroma_server.url, "collection": "tricky"}


def read_all(source: Source) -> list[Any]:
    return [r for p in source.partitions(3) for page in source.read(p, None) for r in page.records]


@pytest.mark.parametrize("flt,pushed", SEMANTIC_FILTERS)
def test_pushdown_has_qdrant_semantics(
    tricky: dict[str, Any], flt: dict[str, Any], pushed: bool
) -> None:
    """Chroma's `where` plus the residual selects exactly what Qdrant's filter selects."""
    everything = open_source("chroma", tricky, 4)
    records = read_all(everything)
    everything.close()
    qdrant_filter = models.Filter.model_validate(flt)
    expected = sorted(r.id for r in records if check_filter(qdrant_filter, r.payload, r.id, {}))
    source = open_source("chroma", tricky, 4)
    try:
        residual = source.push_down(flt)
        assert (source.where is not None and residual is None) is pushed, (source.where, residual)
        selected = read_all(source)
        if residual is not None:
            selected = [r for r in selected if ClientFilter(residual).matches(r)]
        assert sorted(r.id for r in selected) == expected
    finally:
        source.close()


def test_a_filter_is_split_into_pushed_and_client_side_parts() -> None:
    range_condition = {"key": "year", "range": {"gte": 2010}}
    flt = {
        "must": [{"key": "category", "match": {"value": "news"}}, range_condition],
        "must_not": [{"key": "year", "match": {"value": 2012}}],
    }
    source = open_source("chroma", {"url": "http://unused", "collection": "x"}, 10)
    residual = source.push_down(flt)
    assert source.where == {
        "$or": [{"category": {"$eq": "news"}}, {"category": {"$contains": "news"}}]
    }
    assert residual == {"must": [range_condition], "must_not": flt["must_not"]}


# --- describe, partitions -------------------------------------------------------------


@pytest.mark.parametrize(
    "options,distance",
    [
        ({}, "Euclid"),
        ({"metadata": {"hnsw:space": "cosine"}}, "Cosine"),
        ({"configuration": {"hnsw": {"space": "ip"}}}, "Dot"),
    ],
    ids=["default-l2", "legacy-metadata-cosine", "configuration-ip"],
)
def test_describe_reports_space_dimension_count_and_keys(
    chroma_server: ChromaServer, options: dict[str, Any], distance: str
) -> None:
    name = f"space-{distance.lower()}"
    create(chroma_server, name, make_rows(30, 5), **options)
    source = open_source("chroma", {"url": chroma_server.url, "collection": name}, 10)
    try:
        info = source.describe()
    finally:
        source.close()
    assert info.count == 30
    assert [(v.name, v.size, v.distance) for v in info.vectors] == [("", 5, distance)]
    assert {"category", "year", "tags", "score", "document"} <= set(info.payload_fields)


def test_partitions_are_disjoint_and_complete(articles: str) -> None:
    source = open_source("chroma", {"url": articles, "collection": "articles"}, 64)
    try:
        parts = source.partitions(3)
        specs = [p.spec for p in parts]
        assert [(s["start"], s["end"]) for s in specs] == [(0, 233), (233, 466), (466, 700)]
        ids = [r.id for p in parts for page in source.read(p, None) for r in page.records]
    finally:
        source.close()
    assert ids == [r["id"] for r in ROWS]


def test_resuming_from_any_cursor_neither_skips_nor_repeats(articles: str) -> None:
    source = open_source("chroma", {"url": articles, "collection": "articles"}, 64)
    try:
        (whole,) = source.partitions(1)
        pages = list(source.read(whole, None))
        for index in (0, 4, len(pages) - 2):
            rest = [r.id for page in source.read(whole, pages[index].cursor) for r in page.records]
            assert rest == [r.id for page in pages[index + 1 :] for r in page.records]
        assert list(source.read(whole, pages[-1].cursor)) == []
    finally:
        source.close()


def test_a_delete_behind_the_cursor_stops_the_read(chroma_server: ChromaServer) -> None:
    rows = make_rows(40, 4, seed=2)
    create(chroma_server, "shrinking", rows)
    source = open_source("chroma", {"url": chroma_server.url, "collection": "shrinking"}, 10)
    try:
        (whole,) = source.partitions(1)
        pages = source.read(whole, None)
        next(pages)
        chroma_server.client().get_collection("shrinking").delete(ids=[rows[3]["id"]])
        with pytest.raises(QmigrateError, match="changed while it was read"):
            next(pages)
    finally:
        source.close()


# --- connections and errors -----------------------------------------------------------


@pytest.fixture(scope="module")
def gate(chroma_server: ChromaServer) -> Iterator[str]:
    with auth_gate(
        chroma_server.url, basic=("alice", "s3cret"), token="tok-123", api_key="ck-456"
    ) as url:
        yield url


@pytest.mark.parametrize(
    "credentials",
    [
        {"username": "alice", "password": "s3cret"},
        {"token": "tok-123"},
        {"token": "tok-123", "token_header": "X-Chroma-Token"},
    ],
    ids=["basic", "bearer-token", "x-chroma-token"],
)
def test_authenticated_server(articles: str, gate: str, credentials: dict[str, str]) -> None:
    source = open_source("chroma", {"url": gate, "collection": "articles", **credentials}, 100)
    try:
        assert source.describe().count == 700
        assert len(read_all(source)) == 700
    finally:
        source.close()


def test_cloud_style_api_key_tenant_and_database(chroma_server: ChromaServer, gate: str) -> None:
    admin = chroma_server.admin()
    admin.create_tenant("acme")
    admin.create_database("prod", tenant="acme")
    client = chroma_server.client(tenant="acme", database="prod")
    add_rows(client.create_collection("orders", embedding_function=None), make_rows(20, 3))
    config = {
        "url": gate,
        "api_key": "ck-456",
        "tenant": "acme",
        "database": "prod",
        "collection": "orders",
    }
    source = open_source("chroma", config, 100)
    try:
        assert source.describe().count == 20
    finally:
        source.close()


def one_line_error(result: Any) -> str:
    assert result.code == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_wrong_credentials_fail_in_one_line(articles: str, gate: str, tmp_path: Path) -> None:
    document = job({"url": gate, "token": "wrong", "collection": "articles"}, tmp_path / "t")
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(document))
    line = one_line_error(run_cli("apply", "job.yaml", cwd=tmp_path))
    assert "rejected the credentials (token in the Authorization header)" in line
    assert "wrong" not in line


def test_missing_collection_is_named_with_what_exists(
    chroma_server: ChromaServer, articles: str, tmp_path: Path
) -> None:
    document = job({"url": articles, "collection": "artcles"}, tmp_path / "t")
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(document))
    line = one_line_error(run_cli("apply", "job.yaml", cwd=tmp_path))
    assert "collection 'artcles' does not exist" in line and "articles" in line
    names = [c.name for c in chroma_server.client().list_collections()]
    assert "artcles" not in names


# --- embedded PersistentClient --------------------------------------------------------


def test_embedded_directory(tmp_path: Path) -> None:
    rows = make_rows(300, 8, seed=3)
    client = chromadb.PersistentClient(str(tmp_path / "db"), Settings(anonymized_telemetry=False))
    add_rows(
        client.create_collection(
            "local", embedding_function=None, configuration={"hnsw": {"space": "ip"}}
        ),
        rows,
    )
    client.close()
    document = job(
        {"path": str(tmp_path / "db"), "collection": "local"}, tmp_path / "t", parallelism=2
    )
    summary = run_job(document, tmp_path)
    assert (summary.written, summary.count_check) == (300, "ok")
    assert_migrated(tmp_path / "t", rows)
    assert target_params(tmp_path / "t").distance == models.Distance.DOT


def test_embedded_directory_that_does_not_exist_is_not_created(tmp_path: Path) -> None:
    source = open_source("chroma", {"path": str(tmp_path / "nothing"), "collection": "x"}, 10)
    with pytest.raises(QmigrateError, match="no Chroma database"):
        source.describe()
    assert not (tmp_path / "nothing").exists()
