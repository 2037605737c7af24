"""The Weaviate source against a real Weaviate server (tests/servers/weaviate.py: built from
its Go module, run in a loopback-only network namespace and bridged to 127.0.0.1): types,
vectors, tenants, cross-references, one-line errors, kill -9 resume, verify. The contract
suite (tests/sources/contract.py) covers partitions, resume from every cursor and pushdown.
"""

from __future__ import annotations

import datetime as dt
import random
import re
import uuid
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml

from qmigrate import cli
from qmigrate.records import Partition, Record, SourceInfo
from tests.conftest import (
    apply_resumed,
    kill_mid_apply,
    open_source,
    read_collection,
    read_partition,
    run_cli,
)
from tests.servers.weaviate import API_KEY, WeaviateServer

pytest.importorskip("weaviate")

from weaviate.classes.config import (  # noqa: E402
    Configure,
    DataType,
    Property,
    ReferenceProperty,
    Tokenization,
    VectorDistances,
)
from weaviate.classes.data import GeoCoordinate, ReferenceToMulti  # noqa: E402
from weaviate.classes.tenants import Tenant, TenantActivityStatus  # noqa: E402


def object_uuid(name: str, i: int) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{name}/{i}"))


def hnsw(metric: VectorDistances) -> Any:
    return Configure.VectorIndex.hnsw(distance_metric=metric)


def job(server: WeaviateServer, target: Path, **source: Any) -> dict[str, Any]:
    return {
        "version": 1,
        "name": "weaviate",
        "source": {"type": "weaviate", **server.config(), **source},
        "target": {"path": str(target), "collection": "copy"},
        "batch_size": 40,
    }


def plan_error(
    document: dict[str, Any], directory: Path, capsys: pytest.CaptureFixture[str]
) -> str:
    """What `qmigrate plan` prints to stderr for a job it refuses (run in this process)."""
    capsys.readouterr()
    assert cli.main(["plan", str(write(document, directory))]) != 0
    return capsys.readouterr().err


def write(document: dict[str, Any], directory: Path) -> Path:
    path = directory / "job.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def described_and_read(
    config: dict[str, Any], batch_size: int, n: int
) -> tuple[SourceInfo, list[Partition], list[Record]]:
    """What the engine asks a Weaviate source, in its order (push_down, describe, partitions):
    the description, `n` partitions and every record they read."""
    source = open_source("weaviate", config, batch_size)
    try:
        source.push_down(None)
        info = source.describe()
        partitions = source.partitions(n)
        return info, partitions, [r for p in partitions for r in read_partition(source, p)]
    finally:
        source.close()


@pytest.fixture(scope="module")
def typed(weaviate_server: WeaviateServer) -> str:
    """A single-tenant collection with the legacy vector (dot), every property type the
    source converts, and a cross-reference to another collection, whose own vector is the
    unnamed one of today's client (a named vector called "default")."""
    client = weaviate_server.client()
    try:
        authors = client.collections.create(
            "Author",
            vector_config=Configure.Vectors.self_provided(
                vector_index_config=hnsw(VectorDistances.COSINE)
            ),
            properties=[Property(name="name", data_type=DataType.TEXT)],
        )
        authors.data.insert({"name": "ann"}, uuid=object_uuid("author", 1), vector=[1.0, 0.0])
        authors.data.insert({"name": "bob"}, uuid=object_uuid("author", 2), vector=[0.0, 1.0])
        books = client.collections.create(  # the legacy single vector: no named vectors
            "Book",
            vectorizer_config=Configure.Vectorizer.none(),
            vector_index_config=hnsw(VectorDistances.DOT),
            properties=[
                Property(name="title", data_type=DataType.TEXT),
                Property(name="pages", data_type=DataType.INT),
                Property(name="score", data_type=DataType.NUMBER),
                Property(name="open", data_type=DataType.BOOL),
                Property(name="published", data_type=DataType.DATE),
                Property(name="isbn", data_type=DataType.UUID),
                Property(name="place", data_type=DataType.GEO_COORDINATES),
                Property(name="labels", data_type=DataType.TEXT_ARRAY),
                Property(name="counts", data_type=DataType.INT_ARRAY),
                Property(
                    name="meta",
                    data_type=DataType.OBJECT,
                    nested_properties=[
                        Property(name="lang", data_type=DataType.TEXT),
                        Property(name="year", data_type=DataType.INT),
                    ],
                ),
            ],
            references=[ReferenceProperty(name="writtenBy", target_collection="Author")],
        )
        for i in range(5):
            books.data.insert(
                {
                    "title": f"book {i}",
                    "pages": 100 + i,
                    "score": i / 4,
                    "open": i % 2 == 0,
                    "published": dt.datetime(2020, 1, 1 + i, 12, tzinfo=dt.UTC),
                    "isbn": uuid.UUID(int=i + 1),
                    "place": GeoCoordinate(latitude=52.5, longitude=13.25 + i),
                    "labels": ["x", f"l{i}"],
                    "counts": [i, i + 1],
                    "meta": {"lang": "en", "year": 2000 + i},
                },
                uuid=object_uuid("book", i),
                vector=[float(i), 1.0, 0.5],
                references={
                    "writtenBy": [object_uuid("author", 1 + (k % 2)) for k in range(i % 3)]
                },
            )
    finally:
        client.close()
    return "Book"


def test_properties_and_the_legacy_vector_arrive_as_json(
    weaviate_server: WeaviateServer, typed: str
) -> None:
    info, _, records = described_and_read(weaviate_server.config(collection=typed), 10, 1)
    assert [(v.name, v.kind, v.size, v.distance) for v in info.vectors] == [("", "dense", 3, "Dot")]
    assert info.count == 5 and not info.payload_indexes
    assert info.details["references"] == "writtenBy: dropped"
    by_id = {r.id: r for r in records}
    assert sorted(by_id) == sorted(object_uuid("book", i) for i in range(5))
    record = by_id[object_uuid("book", 2)]
    assert list(record.vectors[""]) == [2.0, 1.0, 0.5]
    assert record.payload == {
        "title": "book 2",
        "pages": 102,
        "score": 0.5,
        "open": True,
        "published": "2020-01-03T12:00:00Z",
        "isbn": str(uuid.UUID(int=3)),
        "place": {"lat": 52.5, "lon": 15.25},
        "labels": ["x", "l2"],
        "counts": [2, 3],
        "meta": {"lang": "en", "year": 2002},
    }


def test_references_are_kept_as_uuid_lists_or_dropped_and_counted(
    weaviate_server: WeaviateServer, typed: str, tmp_path: Path
) -> None:
    kept = write(
        job(weaviate_server, tmp_path / "t", collection=typed, references="keep"), tmp_path
    )
    result = run_cli("apply", "--output", "json", str(kept), cwd=tmp_path)
    assert result.code == 0, result.stderr
    points = read_collection(tmp_path / "t", "copy")
    refs = {str(k): sorted(p.payload["writtenBy"]) for k, p in points.items()}
    ann, bob = object_uuid("author", 1), object_uuid("author", 2)
    assert refs[object_uuid("book", 0)] == []
    assert refs[object_uuid("book", 2)] == sorted([ann, bob])
    assert refs[object_uuid("book", 4)] == [ann]
    dropped = job(weaviate_server, tmp_path / "d", collection=typed)
    result = run_cli("apply", str(write(dropped, tmp_path)), cwd=tmp_path)
    assert result.code == 0, result.stderr
    # Books 1, 2, 4, 5... of 0-4: i % 3 references each: 0 + 1 + 2 + 0 + 1.
    assert "dropped 4 cross-references" in result.stdout + result.stderr
    assert all(
        "writtenBy" not in p.payload for p in read_collection(tmp_path / "d", "copy").values()
    )


@pytest.fixture(scope="module")
def vectors_collection(weaviate_server: WeaviateServer) -> str:
    """Named vectors: cosine, l2-squared, a multi-vector, and one with hamming distance."""
    client = weaviate_server.client()
    try:
        collection = client.collections.create(
            "Shapes",
            vector_config=[
                Configure.Vectors.self_provided(
                    name="text", vector_index_config=hnsw(VectorDistances.COSINE)
                ),
                Configure.Vectors.self_provided(
                    name="image", vector_index_config=hnsw(VectorDistances.L2_SQUARED)
                ),
                Configure.MultiVectors.self_provided(name="colbert"),
                Configure.Vectors.self_provided(
                    name="bits", vector_index_config=hnsw(VectorDistances.HAMMING)
                ),
            ],
            properties=[Property(name="kind", data_type=DataType.TEXT)],
        )
        for i in range(3):
            collection.data.insert(
                {"kind": "k"},
                uuid=object_uuid("shape", i),
                vector={
                    "text": [1.0, float(i)],
                    "image": [0.5, 0.25, float(i)],
                    "colbert": [[1.0, 0.0, 0.0, 0.0], [0.0, float(i), 0.0, 0.0]],
                    "bits": [1.0, 0.0, 1.0, 0.0, 1.0],
                },
            )
    finally:
        client.close()
    return "Shapes"


def test_named_and_multi_vectors_with_their_distances(
    weaviate_server: WeaviateServer, vectors_collection: str
) -> None:
    config = weaviate_server.config(
        collection=vectors_collection,
        vectors={"bits": {"distance": "manhattan"}, "image": {"name": "picture"}},
    )
    info, _, records = described_and_read(config, 10, 2)
    assert sorted((v.name, v.kind, v.size, v.distance) for v in info.vectors) == [
        ("bits", "dense", 5, "Manhattan"),
        ("colbert", "multi", 4, "Cosine"),
        ("picture", "dense", 3, "Euclid"),
        ("text", "dense", 2, "Cosine"),
    ]
    record = next(r for r in records if r.id == object_uuid("shape", 2))
    assert record.vectors["colbert"] == [[1.0, 0.0, 0.0, 0.0], [0.0, 2.0, 0.0, 0.0]]
    assert list(record.vectors["picture"]) == [0.5, 0.25, 2.0]


def test_a_distance_qdrant_has_not_stops_the_job_in_one_line(
    weaviate_server: WeaviateServer,
    vectors_collection: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    document = job(weaviate_server, tmp_path / "t", collection=vectors_collection)
    error = plan_error(document, tmp_path, capsys)
    assert (
        "vector bits uses hamming distance, which Qdrant has not: set vectors.bits.distance"
        in error
    )
    assert len(error.strip().splitlines()) == 1, error


# --- tenants --------------------------------------------------------------------------

TENANTS = {"acme": 700, "globex": 500, "initech": 300}
SIZE = 16


def tenant_rows(tenant: str) -> list[tuple[str, list[float], dict[str, Any]]]:
    rng = random.Random(tenant)
    return [
        (
            object_uuid(tenant, i),
            [rng.uniform(-1, 1) for _ in range(SIZE)],
            {"n": i, "color": ("red", "green", "blue")[i % 3]},
        )
        for i in range(TENANTS[tenant])
    ]


@pytest.fixture(scope="module")
def tenanted(weaviate_server: WeaviateServer) -> str:
    """Three active tenants of different sizes and one inactive (COLD) tenant."""
    client = weaviate_server.client()
    try:
        collection = client.collections.create(
            "Ticket",
            vector_config=Configure.Vectors.self_provided(
                vector_index_config=hnsw(VectorDistances.COSINE)
            ),
            multi_tenancy_config=Configure.multi_tenancy(enabled=True),
            properties=[
                Property(name="n", data_type=DataType.INT),
                Property(name="color", data_type=DataType.TEXT, tokenization=Tokenization.FIELD),
            ],
        )
        collection.tenants.create([Tenant(name=name) for name in [*TENANTS, "dormant"]])
        for tenant in TENANTS:
            with collection.with_tenant(tenant).batch.fixed_size(200) as batch:
                for object_id, vector, properties in tenant_rows(tenant):
                    batch.add_object(properties, uuid=object_id, vector=vector)
            assert not collection.with_tenant(tenant).batch.failed_objects
        collection.tenants.update(
            [Tenant(name="dormant", activity_status=TenantActivityStatus.INACTIVE)]
        )
    finally:
        client.close()
    return "Ticket"


def test_tenants_are_listed_counted_and_split(
    weaviate_server: WeaviateServer, tenanted: str
) -> None:
    config = weaviate_server.config(collection=tenanted, tenants=["acme", "initech"])
    info, partitions, records = described_and_read(config, 64, 6)
    assert info.count == 1000
    assert info.payload_indexes == {"tenant": {"type": "keyword", "is_tenant": True}}
    assert len(partitions) == 6, "two tenants cut into UUID ranges for six partitions"
    assert sorted(r.id for r in records) == sorted(
        object_id for tenant in ("acme", "initech") for object_id, _, _ in tenant_rows(tenant)
    )
    assert {r.payload["tenant"] for r in records} == {"acme", "initech"}


def test_an_inactive_or_unknown_tenant_stops_the_job(
    weaviate_server: WeaviateServer,
    tenanted: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for tenants, message in (
        ("all", "tenant dormant is INACTIVE: activate it before the job reads it"),
        (
            ["acme", "nobody"],
            "tenant nobody does not exist (it has: acme, dormant, globex, initech)",
        ),
    ):
        document = job(weaviate_server, tmp_path / "t", collection=tenanted, tenants=tenants)
        error = plan_error(document, tmp_path, capsys)
        assert message in error, error
        assert len(error.strip().splitlines()) == 1, error


def test_a_filter_is_pushed_down_and_counted_by_the_server(
    weaviate_server: WeaviateServer, tenanted: str, tmp_path: Path
) -> None:
    document = job(weaviate_server, tmp_path / "t", collection=tenanted, tenants=["globex"])
    document["filter"] = {
        "must": [{"key": "color", "match": {"value": "red"}}, {"key": "n", "range": {"gte": 100}}]
    }
    plan = run_cli("plan", "--output", "json", str(write(document, tmp_path)), cwd=tmp_path)
    assert plan.code == 0, plan.stderr
    source = plan.json()["jobs"][0]["source"]
    assert source["count"] == len([i for i in range(100, 500) if i % 3 == 0])
    assert source["details"]["where"] == "(color Equal 'red' AND n GreaterThanEqual 100)"
    result = run_cli("apply", "--output", "json", str(write(document, tmp_path)), cwd=tmp_path)
    assert result.code == 0, result.stderr
    points = read_collection(tmp_path / "t", "copy")
    assert sorted(p.payload["n"] for p in points.values()) == [
        i for i in range(100, 500) if i % 3 == 0
    ]


# --- errors ---------------------------------------------------------------------------


def test_an_unknown_collection_is_one_line_naming_the_collections(
    weaviate_server: WeaviateServer, typed: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    document = job(weaviate_server, tmp_path / "t", collection="Nope")
    error = plan_error(document, tmp_path, capsys)
    assert "collection Nope does not exist (it has: " in error and "Book" in error
    assert len(error.strip().splitlines()) == 1, error


def test_a_wrong_api_key_is_one_line_and_never_shown(
    weaviate_server: WeaviateServer, typed: str, tmp_path: Path
) -> None:
    wrong = "not-the-key-" + "x" * 8
    document = job(weaviate_server, tmp_path / "t", collection=typed, api_key="{{ env.WV_KEY }}")
    path = write(document, tmp_path)
    result = run_cli("plan", str(path), cwd=tmp_path, env={"WV_KEY": wrong})
    assert result.code != 0
    assert "refused the credentials" in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert wrong not in result.stdout + result.stderr
    right = run_cli("plan", str(path), cwd=tmp_path, env={"WV_KEY": API_KEY})
    assert right.code == 0, right.stderr
    assert API_KEY not in right.stdout + right.stderr


# --- kill -9, verify ------------------------------------------------------------------


def test_resumes_after_kill_9_with_every_point_equal(
    weaviate_server: WeaviateServer,
    tenanted: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    checkpoint = tmp_path / "checkpoint.json"
    document = job(
        weaviate_server,
        tmp_path / "t",
        collection=tenanted,
        tenants=list(TENANTS),
        api_key="{{ env.WV_KEY }}",
        references="keep",
    )
    document.update(parallelism=2, checkpoint={"store": "file", "path": str(checkpoint)})
    path = write(document, tmp_path)
    total = sum(TENANTS.values())
    env = {"WV_KEY": API_KEY}
    monkeypatch.setenv("WV_KEY", API_KEY)  # apply_and_kill's apply inherits this environment
    kill_mid_apply(path, checkpoint, after_points=300, count=total)
    assert API_KEY not in checkpoint.read_text()
    apply_resumed(path, total, env=env)
    points = read_collection(tmp_path / "t", "copy")
    expected = {
        object_id: (vector, {**properties, "tenant": tenant})
        for tenant in TENANTS
        for object_id, vector, properties in tenant_rows(tenant)
    }
    assert {str(k) for k in points} == set(expected)
    for key, point in points.items():
        vector, payload = expected[str(key)]
        assert point.payload == payload, key
        assert point.vector == pytest.approx(vector, abs=1e-6), key  # float32 of the float64
    verified = run_cli("verify", str(path), "--sample", "all", cwd=tmp_path, env=env)
    assert verified.code == 0, verified.stdout + verified.stderr
    assert re.search(r"search\s+pass", verified.stdout), verified.stdout


def test_tenants_go_to_shard_keys_when_the_job_says_so(
    weaviate_server: WeaviateServer, tenanted: str, tmp_path: Path
) -> None:
    """target.shard_key: {field: tenant}, through the Qdrant stand-ins (local mode has no
    shards): a key per tenant, each point upserted under its own tenant's key."""
    from tests.servers.qdrant_grpc import running_both

    with running_both() as (url, grpc_port, store):
        document = job(
            weaviate_server, tmp_path / "t", collection=tenanted, tenants=["initech", "globex"]
        )
        document["target"] = {
            "url": url,
            "grpc_port": grpc_port,
            "collection": "sharded",
            "shard_key": {"field": "tenant"},
        }
        result = run_cli("apply", "--output", "json", str(write(document, tmp_path)), cwd=tmp_path)
        assert result.code == 0, result.stderr
        assert result.json()["jobs"][0]["count_check"] == "ok"
        assert sorted(store.shard_keys["sharded"]) == ["globex", "initech"]
        keyed = [(key, ids) for name, key, ids in store.keyed_upserts if name == "sharded"]
        expected = {
            object_id: tenant
            for tenant in ("initech", "globex")
            for object_id, _, _ in tenant_rows(tenant)
        }
        placed = {str(i): key for key, ids in keyed for i in ids}
        assert placed == expected


class _RpcError(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode) -> None:
        self._code = code

    def code(self) -> grpc.StatusCode:
        return self._code


@pytest.mark.parametrize(
    ("code", "transient"),
    [
        (grpc.StatusCode.UNAVAILABLE, True),
        (grpc.StatusCode.DEADLINE_EXCEEDED, True),
        (grpc.StatusCode.INVALID_ARGUMENT, False),
        (grpc.StatusCode.UNAUTHENTICATED, False),
    ],
)
def test_a_query_error_is_retried_by_its_grpc_code(code: grpc.StatusCode, transient: bool) -> None:
    """The client wraps gRPC failures in WeaviateQueryError; the code underneath decides."""
    from weaviate.exceptions import WeaviateQueryError

    from qmigrate.errors import TransientError
    from qmigrate.sources.weaviate import _transient_or_as_is

    try:
        raise WeaviateQueryError("boom", "GRPC") from _RpcError(code)
    except WeaviateQueryError as exc:
        assert isinstance(_transient_or_as_is(exc), TransientError) == transient


def test_a_reference_to_several_collections_keeps_every_link(
    weaviate_server: WeaviateServer, typed: str
) -> None:
    """The server wants a multi-target reference asked per linked collection, and the
    client keeps one answer per name: the source asks each and joins them."""
    client = weaviate_server.client()
    try:
        shelves = client.collections.create(
            "Shelf",
            vector_config=Configure.Vectors.self_provided(),
            properties=[Property(name="label", data_type=DataType.TEXT)],
            references=[
                ReferenceProperty.MultiTarget(name="holds", target_collections=["Author", "Book"])
            ],
        )
        for i in range(12):
            # A link to a multi-target reference names its collection (else the server
            # looks the UUID up in every collection, tenants included).
            shelf = object_uuid("shelf", i)
            author = ReferenceToMulti(
                target_collection="Author", uuids=object_uuid("author", 1 + i % 2)
            )
            shelves.data.insert(
                {"label": f"s{i}"}, uuid=shelf, vector=[1.0, float(i)], references={"holds": author}
            )
            for k in range(i % 4):
                to = ReferenceToMulti(target_collection="Book", uuids=object_uuid("book", k))
                shelves.data.reference_add(shelf, "holds", to)
    finally:
        client.close()
    for references in ("keep", "drop"):
        config = weaviate_server.config(collection="Shelf", references=references)
        source = open_source("weaviate", config, 5)
        try:
            source.push_down(None)
            source.describe()
            pages = [page for p in source.partitions(2) for page in source.read(p, None)]
        finally:
            source.close()
        records = {r.id: r for page in pages for r in page.records}
        assert len(records) == 12
        if references == "keep":
            for i in range(12):
                links = [object_uuid("author", 1 + i % 2)] + [
                    object_uuid("book", k) for k in range(i % 4)
                ]
                assert sorted(records[object_uuid("shelf", i)].payload["holds"]) == sorted(links), i
        else:
            assert sum(page.references_dropped for page in pages) == sum(
                1 + i % 4 for i in range(12)
            )
            assert all("holds" not in r.payload for r in records.values())


def test_a_multi_vector_lands_as_a_qdrant_multivector(
    weaviate_server: WeaviateServer, vectors_collection: str, tmp_path: Path
) -> None:
    from qdrant_client import QdrantClient

    from tests.conftest import run_job

    document = job(
        weaviate_server,
        tmp_path / "t",
        collection=vectors_collection,
        vectors={"bits": {"distance": "manhattan"}},
    )
    summary = run_job(document, tmp_path)
    assert (summary.written, summary.count_check) == (3, "ok")
    client = QdrantClient(path=str(tmp_path / "t"))
    try:
        params = client.get_collection("copy").config.params.vectors
        point = client.retrieve("copy", [object_uuid("shape", 1)], with_vectors=True)[0]
    finally:
        client.close()
    assert params["colbert"].multivector_config is not None
    assert params["image"].distance.value == "Euclid"
    assert point.vector["colbert"] == [[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]]
