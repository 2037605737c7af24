"""The source contract, checked the same way for every source that runs here.

Each source gets one fixture below that loads `ROWS` into its real server (or file) and
returns a `Case`; a new source joins by adding its fixture to `CASES`. The checks follow
the engine's call order (push_down, describe, partitions, read, close):

- describe() reports the count, the vectors and the payload fields before any data moves;
- partitions are disjoint and cover everything, for several n;
- reading resumes exactly from every cursor, after a JSON round trip;
- for each filter of `FILTERS`, what the source pushes down plus the residual selects exactly
  what Qdrant's filter selects;
- closing twice is harmless.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from qdrant_client import QdrantClient, models

from qmigrate.mapping import ClientFilter
from qmigrate.records import Record
from qmigrate.sources.base import Source
from tests.conftest import open_source, read_everything, read_partition
from tests.servers.elasticsearch import SearchRest
from tests.sources.reference import ReferenceSource, selected_ids

COUNT = 60
DIM = 4
BATCH = 7  # pages of odd sizes, so partitions end mid-page
COLORS = ("red", "green", "blue")
TAGS = (["x"], ["y"], ["x", "y"], ["z"])
SHARED_FIELDS = {"color", "n", "price", "tags"}
# Objects: a geo point and an array of objects. Chroma, Pinecone and Redis hashes hold only
# flat metadata, so they get `flat_payload`, and the geo and nested filters select nothing
# there; the other sources evaluate them client-side (Qdrant: pushed down).
STRUCTURED_FIELDS = {"location", "parts"}
HOLDS_OBJECTS = {
    "reference",
    "file",
    "qdrant",
    "milvus",
    "pgvector",
    "lancedb",
    "faiss",
    "mongodb",
    "weaviate",
    "elasticsearch",
    "opensearch",
}


def rows() -> list[dict[str, Any]]:
    """The data every source holds: string, integer, float, boolean and list fields, and
    (where the source can hold them) a geo point and an array of objects."""
    rng = np.random.default_rng(7)
    return [
        {
            "id": i,
            "vector": [float(v) for v in rng.uniform(-1, 1, DIM).astype(np.float32)],
            "color": COLORS[i % 3],
            "n": i % 10,
            "price": i * 0.25 + 0.5,
            "flag": i % 2 == 0,
            "tags": TAGS[i % 4],
            "location": {"lat": 52.0 + (i % 10) * 0.1, "lon": 13.0 + (i % 7) * 0.1},
            "parts": [{"color": COLORS[(i + k) % 3], "n": (i * k) % 5} for k in range(i % 3)],
        }
        for i in range(COUNT)
    ]


def payload(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k not in ("id", "vector")}


def flat_payload(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in payload(row).items() if k not in STRUCTURED_FIELDS}


def point(lat: float, lon: float) -> dict[str, float]:
    return {"lat": lat, "lon": lon}


def match(key: str, value: Any) -> dict[str, Any]:
    return {"key": key, "match": {"value": value}}


# Qdrant filters over the shared fields: each source pushes what it can express exactly.
FILTERS: list[dict[str, Any]] = [
    {"must": [match("color", "red")]},
    {"must": [{"key": "color", "match": {"any": ["red", "blue"]}}]},
    {"must_not": [match("color", "red")]},
    {"must": [{"key": "n", "range": {"gte": 3, "lt": 7}}]},
    {"must": [match("n", 4)]},
    {"must": [{"key": "price", "range": {"gt": 5.5}}]},
    {"must": [match("flag", True)]},
    {"must": [match("tags", "x")]},
    {"must_not": [{"key": "tags", "match": {"any": ["x", "z"]}}]},
    {"should": [match("color", "green"), {"key": "n", "range": {"gt": 8}}]},
    {"should": [match("color", "green"), match("tags", "z")]},
    {
        "must": [{"should": [match("color", "red"), match("n", 1)]}],
        "must_not": [{"key": "n", "range": {"lt": 2}}],
    },
    {"must": [match("color", "blue")], "must_not": [match("tags", "y")]},
    {"min_should": {"conditions": [match("color", "red"), match("tags", "x")], "min_count": 2}},
    {"must": [match("absent", "a")]},
    {"must_not": [match("absent", "a")]},
    {"must": [{"is_empty": {"key": "tags"}}]},
    {"must": [{"key": "location", "geo_radius": {"center": point(52.3, 13.3), "radius": 20000}}]},
    {
        "must": [match("color", "red")],
        "must_not": [
            {
                "key": "location",
                "geo_bounding_box": {
                    "top_left": point(52.55, 12.95),
                    "bottom_right": point(52.05, 13.35),
                },
            }
        ],
    },
    {
        "must": [
            {
                "key": "location",
                "geo_polygon": {
                    "exterior": {
                        "points": [
                            point(51.9, 12.9),
                            point(52.95, 12.9),
                            point(51.9, 13.65),
                            point(51.9, 12.9),
                        ]
                    }
                },
            }
        ]
    },
    {
        "must": [
            {
                "nested": {
                    "key": "parts",
                    "filter": {"must": [match("color", "red"), {"key": "n", "range": {"gte": 2}}]},
                }
            }
        ]
    },
    {"must_not": [{"nested": {"key": "parts", "filter": {"must": [match("color", "blue")]}}}]},
    {
        "should": [
            match("color", "green"),
            {"nested": {"key": "parts[]", "filter": {"must": [match("n", 0)]}}},
        ]
    },
]


@dataclass
class Case:
    name: str
    open: Callable[[], Source]  # a new, unused source
    pushes_down: bool  # whether some filter of FILTERS is expected to reach the backend
    # The ID a source gives the row of `rows()` with this "id" (Weaviate: a UUID of its own).
    record_id: Callable[[int], Any] = lambda i: i


# --- the sources ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def reference_case() -> Case:
    records = [Record(r["id"], {"vector": r["vector"]}, payload(r)) for r in rows()]
    return Case("reference", lambda: ReferenceSource(records, BATCH), pushes_down=True)


@pytest.fixture(scope="module")
def file_case(tmp_path_factory: pytest.TempPathFactory) -> Case:
    path = tmp_path_factory.mktemp("contract-file") / "rows.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows()))
    config = {"path": str(path), "vectors": {"vector": {"distance": "cosine"}}}
    return Case("file", lambda: open_source("file", config, BATCH), pushes_down=False)


@pytest.fixture(scope="module")
def qdrant_case(tmp_path_factory: pytest.TempPathFactory) -> Case:
    path = tmp_path_factory.mktemp("contract-qdrant")
    client = QdrantClient(path=str(path))
    client.create_collection(
        "contract", {"vector": models.VectorParams(size=DIM, distance=models.Distance.COSINE)}
    )
    points = [
        models.PointStruct(id=r["id"], vector={"vector": r["vector"]}, payload=payload(r))
        for r in rows()
    ]
    client.upsert("contract", points)
    client.close()
    config = {"path": str(path), "collection": "contract"}
    return Case("qdrant", lambda: open_source("qdrant", config, BATCH), pushes_down=True)


@pytest.fixture(scope="module")
def chroma_case(chroma_server: Any) -> Case:
    collection = chroma_server.client().create_collection(
        "contract", embedding_function=None, metadata={"hnsw:space": "cosine"}
    )
    data = rows()
    collection.add(
        ids=[str(r["id"]) for r in data],
        embeddings=[r["vector"] for r in data],
        metadatas=[flat_payload(r) for r in data],
    )
    config = {"url": chroma_server.url, "collection": "contract"}
    return Case("chroma", lambda: open_source("chroma", config, BATCH), pushes_down=True)


@pytest.fixture  # the fake is made per test
def pinecone_case(pinecone_fake: Any) -> Case:
    index = pinecone_fake.create_index("contract", dimension=DIM)
    index.upsert(
        {"id": f"r{r['id']:03d}", "values": r["vector"], "metadata": flat_payload(r)}
        for r in rows()
    )
    config = {
        "index": "contract",
        "api_key": pinecone_fake.api_key,
        "controller_host": pinecone_fake.url,
    }
    return Case("pinecone", lambda: open_source("pinecone", config, BATCH), pushes_down=True)


@pytest.fixture(scope="module")
def redis_case(redis_server: Any) -> Case:
    client = redis_server.client()
    client.execute_command(
        "FT.CREATE", "contract", "ON", "HASH", "PREFIX", "1", "contract:", "SCHEMA",
        "vector", "VECTOR", "FLAT", "6", "TYPE", "FLOAT32", "DIM", str(DIM),
        "DISTANCE_METRIC", "COSINE",
        "color", "TAG", "CASESENSITIVE", "tags", "TAG", "CASESENSITIVE",
        "n", "NUMERIC", "price", "NUMERIC",
    )  # fmt: skip
    pipeline = client.pipeline(transaction=False)
    for r in rows():
        fields = {**flat_payload(r), "flag": str(r["flag"]).lower(), "tags": ",".join(r["tags"])}
        fields["vector"] = np.asarray(r["vector"], dtype="<f4").tobytes()
        pipeline.hset(f"contract:{r['id']}", mapping=fields)
    # Keys outside the prefix: SCAN walks them too, so the rows arrive over several pages.
    for i in range(5000):
        pipeline.set(f"contract-filler:{i}", i)
    pipeline.execute()
    config = {"url": redis_server.url, "index": "contract"}
    return Case("redis", lambda: open_source("redis", config, BATCH), pushes_down=True)


@pytest.fixture(scope="module")
def milvus_case(milvus_lite_server: Any) -> Case:
    from pymilvus import DataType, MilvusClient

    client = milvus_lite_server.client()
    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=DIM)
    schema.add_field("color", DataType.VARCHAR, max_length=16)
    schema.add_field("n", DataType.INT64)
    schema.add_field("price", DataType.DOUBLE)
    schema.add_field("flag", DataType.BOOL)
    schema.add_field(
        "tags", DataType.ARRAY, element_type=DataType.VARCHAR, max_capacity=4, max_length=4
    )
    schema.add_field("location", DataType.JSON)
    schema.add_field("parts", DataType.JSON)
    index = client.prepare_index_params()
    index.add_index("vector", index_type="FLAT", metric_type="COSINE")
    client.create_collection("contract", schema=schema, index_params=index)
    client.insert("contract", rows())
    config = {"uri": milvus_lite_server.uri, "collection": "contract"}
    return Case("milvus", lambda: open_source("milvus", config, BATCH), pushes_down=True)


@pytest.fixture(scope="module")
def pgvector_case(pg18_server: Any) -> Case:
    """Typed columns for the flat fields (pushed down as SQL), jsonb for the structured ones
    (geo and nested filters stay client-side); no index: pg18's dense index dies here."""
    from psycopg.types.json import Jsonb

    with pg18_server.connect() as connection:
        connection.execute(
            "CREATE TABLE contract (id int PRIMARY KEY, vector vector(4), color text, n int, "
            "price float8, flag bool, tags text[], location jsonb, parts jsonb)"
        )
        with connection.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO contract VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                [
                    (r["id"], np.asarray(r["vector"], dtype=np.float32), r["color"], r["n"])
                    + (r["price"], r["flag"], r["tags"], Jsonb(r["location"]), Jsonb(r["parts"]))
                    for r in rows()
                ],
            )
    config = {
        "dsn": pg18_server.dsn(),
        "table": "contract",
        "vectors": {"vector": {"distance": "cosine"}},
    }
    return Case("pgvector", lambda: open_source("pgvector", config, BATCH), pushes_down=True)


@pytest.fixture(scope="module")
def lancedb_case(tmp_path_factory: pytest.TempPathFactory) -> Case:
    import lancedb
    import pyarrow as pa

    path = tmp_path_factory.mktemp("contract-lancedb")
    table = pa.Table.from_pylist(rows())
    vectors = pa.array([r["vector"] for r in rows()], pa.list_(pa.float32(), DIM))
    table = table.set_column(table.schema.get_field_index("vector"), "vector", vectors)
    db = lancedb.connect(str(path))
    db.create_table("contract", table.slice(0, 25))
    db.open_table("contract").add(table.slice(25))  # two fragments
    config = {"uri": str(path), "table": "contract", "vectors": {"vector": {"distance": "cosine"}}}
    return Case("lancedb", lambda: open_source("lancedb", config, BATCH), pushes_down=True)


@pytest.fixture(scope="module")
def faiss_case(tmp_path_factory: pytest.TempPathFactory) -> Case:
    import faiss

    path = tmp_path_factory.mktemp("contract-faiss")
    index = faiss.IndexIDMap2(faiss.IndexFlatIP(DIM))
    vectors = np.asarray([r["vector"] for r in rows()], np.float32)
    index.add_with_ids(vectors, np.asarray([r["id"] for r in rows()], np.int64))
    faiss.write_index(index, str(path / "index.faiss"))
    (path / "payload.jsonl").write_text("".join(json.dumps(payload(r)) + "\n" for r in rows()))
    config = {
        "index": str(path / "index.faiss"),
        "payload": str(path / "payload.jsonl"),
        "distance": "cosine",
    }
    return Case("faiss", lambda: open_source("faiss", config, BATCH), pushes_down=False)


@pytest.fixture(scope="module")
def mongodb_case(ferretdb_server: Any) -> Case:
    """FerretDB (SQLite): integer _id values, the vectors as arrays named by the job."""
    client = ferretdb_server.client()
    client["contract"]["contract"].insert_many(
        [{"_id": r["id"], "vector": r["vector"], **payload(r)} for r in rows()]
    )
    client.close()
    config = {
        "uri": ferretdb_server.uri,
        "database": "contract",
        "collection": "contract",
        "vectors": {"vector": {"distance": "cosine"}},
    }
    return Case("mongodb", lambda: open_source("mongodb", config, BATCH), pushes_down=True)


def weaviate_uuid(i: int) -> str:
    """Row i's object UUID: spread over the UUID space, so partitions split the rows."""
    return str(uuid.uuid5(uuid.NAMESPACE_OID, f"contract-{i}"))


@pytest.fixture(scope="module")
def weaviate_case(weaviate_server: Any) -> Case:
    """Two tenants (rows 0-24, 25-59); text properties with field tokenization (pushed
    down), a geoCoordinates location (arrives as {lat, lon}) and an object[] of parts."""
    from weaviate.classes.config import Configure, DataType, Property, Tokenization, VectorDistances
    from weaviate.classes.data import GeoCoordinate
    from weaviate.classes.tenants import Tenant

    client = weaviate_server.client()
    try:
        field = Tokenization.FIELD
        collection = client.collections.create(
            "Contract",
            vector_config=Configure.Vectors.self_provided(
                name="vector",
                vector_index_config=Configure.VectorIndex.hnsw(
                    distance_metric=VectorDistances.COSINE
                ),
            ),
            multi_tenancy_config=Configure.multi_tenancy(enabled=True),
            properties=[
                Property(name="color", data_type=DataType.TEXT, tokenization=field),
                Property(name="n", data_type=DataType.INT),
                Property(name="price", data_type=DataType.NUMBER),
                Property(name="flag", data_type=DataType.BOOL),
                Property(name="tags", data_type=DataType.TEXT_ARRAY, tokenization=field),
                Property(name="location", data_type=DataType.GEO_COORDINATES),
                Property(
                    name="parts",
                    data_type=DataType.OBJECT_ARRAY,
                    nested_properties=[
                        Property(name="color", data_type=DataType.TEXT, tokenization=field),
                        Property(name="n", data_type=DataType.INT),
                    ],
                ),
            ],
        )
        collection.tenants.create([Tenant(name="a"), Tenant(name="b")])
        for tenant, chosen in (("a", rows()[:25]), ("b", rows()[25:])):
            with collection.with_tenant(tenant).batch.fixed_size(100) as batch:
                for r in chosen:
                    properties = flat_payload(r)
                    properties["location"] = GeoCoordinate(
                        latitude=r["location"]["lat"], longitude=r["location"]["lon"]
                    )
                    properties["parts"] = r["parts"]
                    batch.add_object(
                        properties, uuid=weaviate_uuid(r["id"]), vector={"vector": r["vector"]}
                    )
            assert not collection.with_tenant(tenant).batch.failed_objects
    finally:
        client.close()
    config = weaviate_server.config(collection="Contract")
    return Case(
        "weaviate",
        lambda: open_source("weaviate", config, BATCH),
        pushes_down=True,
        record_id=weaviate_uuid,
    )


# The same typed mapping for both engines: keyword, long, double and boolean fields (pushed
# down as term, terms and range), a geo_point and a nested array of objects (client-side).
SEARCH_PROPERTIES: dict[str, Any] = {
    "color": {"type": "keyword"},
    "n": {"type": "long"},
    "price": {"type": "double"},
    "flag": {"type": "boolean"},
    "tags": {"type": "keyword"},
    "location": {"type": "geo_point"},
    "parts": {
        "type": "nested",
        "properties": {"color": {"type": "keyword"}, "n": {"type": "long"}},
    },
}


def load_search_index(
    rest: SearchRest, index: str, vector: dict[str, Any], **settings: Any
) -> None:
    """ROWS into a two-shard index (slices then span shards), `_id` the row's id."""
    mapping = {"properties": {"vector": vector, **SEARCH_PROPERTIES}}
    settings |= {"number_of_shards": 2, "number_of_replicas": 0}
    rest.request("PUT", f"/{index}", {"settings": settings, "mappings": mapping})
    lines: list[dict[str, Any]] = []
    for r in rows():
        lines.append({"index": {"_index": index, "_id": str(r["id"])}})
        lines.append({k: v for k, v in r.items() if k != "id"})
    rest.bulk(lines)


@pytest.fixture(scope="module")
def elasticsearch_case(elasticsearch_server: Any) -> Case:
    vector = {"type": "dense_vector", "dims": DIM, "similarity": "cosine"}
    load_search_index(elasticsearch_server, "contract", vector)
    config = {
        "url": elasticsearch_server.url,
        "index": "contract",
        "username": elasticsearch_server.user,
        "password": elasticsearch_server.password,
        "integer_ids": True,
    }
    return Case("elasticsearch", lambda: open_source("elasticsearch", config, BATCH), True)


@pytest.fixture(scope="module")
def opensearch_case(opensearch_server: Any) -> Case:
    """The real OpenSearch node (tests/servers/opensearch.py), k-NN on the Lucene engine."""
    vector = {
        "type": "knn_vector",
        "dimension": DIM,
        "method": {"name": "hnsw", "engine": "lucene", "space_type": "cosinesimil"},
    }
    load_search_index(SearchRest(opensearch_server.url), "contract", vector, **{"index.knn": True})
    config = {"url": opensearch_server.url, "index": "contract", "integer_ids": True}
    return Case("opensearch", lambda: open_source("opensearch", config, BATCH), True)


CASES = [
    "reference_case",
    "file_case",
    "qdrant_case",
    "chroma_case",
    "pinecone_case",
    "redis_case",
    "milvus_case",
    "pgvector_case",
    "lancedb_case",
    "faiss_case",
    "mongodb_case",
    "weaviate_case",
    "elasticsearch_case",
    "opensearch_case",
]


@pytest.fixture(params=CASES)
def case(request: pytest.FixtureRequest) -> Case:
    return request.getfixturevalue(request.param)


@pytest.fixture
def opened(case: Case) -> Iterator[Source]:
    """A source as the engine starts one: push_down, then describe."""
    source = case.open()
    source.push_down(None)
    source.describe()
    yield source
    source.close()


# --- reading helpers ------------------------------------------------------------------


def round_trip(value: Any) -> Any:
    """What a checkpoint store gives back: JSON."""
    return json.loads(json.dumps(value))


# --- the checks -----------------------------------------------------------------------


def test_describe_reports_count_vectors_and_payload_fields(case: Case) -> None:
    source = case.open()
    source.push_down(None)
    info = source.describe()
    source.close()
    assert info.count == COUNT
    assert info.vectors and all(v.kind == "sparse" or v.size == DIM for v in info.vectors)
    assert set(info.payload_fields) >= SHARED_FIELDS, info.payload_fields


@pytest.mark.parametrize("n", [1, 2, 3, 7])
def test_partitions_are_disjoint_and_cover_everything(opened: Source, n: int) -> None:
    partitions = opened.partitions(n)
    assert len({p.key for p in partitions}) == len(partitions)
    assert round_trip([p.spec for p in partitions]) == [p.spec for p in partitions]
    ids = Counter(r.id for r in read_everything(opened, n))
    assert sum(ids.values()) == COUNT, "some record was read twice or not at all"
    assert len(ids) == COUNT and max(ids.values()) == 1


def test_reading_resumes_exactly_from_every_cursor(opened: Source) -> None:
    pages_seen = 0
    for partition in opened.partitions(2):
        pages = list(opened.read(partition, None))
        pages_seen += len(pages)
        ids = [r.id for page in pages for r in page.records]
        done = 0
        for page in pages:
            done += len(page.records)
            rest = read_partition(opened, partition, round_trip(page.cursor))
            assert [r.id for r in rest] == ids[done:], f"resume after {page.cursor!r}"
    assert pages_seen > 2, "too few pages to test resuming mid-partition"


def test_pushed_part_and_residual_select_what_qdrant_selects(case: Case) -> None:
    everything = case.open()
    everything.push_down(None)
    everything.describe()
    records = read_everything(everything, 2)
    everything.close()
    reference = [
        Record(case.record_id(r["id"]), {"vector": r["vector"]}, payload(r)) for r in rows()
    ]
    pushed_any = False
    for flt in FILTERS:
        expected = selected_ids(records, flt)
        source = case.open()
        residual = source.push_down(flt)
        pushed_any |= residual != flt
        source.describe()
        read = read_everything(source, 2)
        source.close()
        kept = ClientFilter(residual) if residual else None
        got = {r.id for r in read if kept is None or kept.matches(r)}
        assert got == expected, f"{case.name}: {json.dumps(flt)} (residual {json.dumps(residual)})"
        if case.name in HOLDS_OBJECTS:  # the geo points and arrays of objects arrived whole
            assert expected == selected_ids(reference, flt), f"{case.name}: {json.dumps(flt)}"
    assert pushed_any == case.pushes_down


def test_the_filter_table_tells_sources_apart() -> None:
    """A filter that selects all rows or none cannot catch a wrong pushdown: few may."""
    records = [Record(r["id"], {"vector": r["vector"]}, payload(r)) for r in rows()]
    sizes = [len(selected_ids(records, flt)) for flt in FILTERS]
    assert sum(0 < size < COUNT for size in sizes) >= len(FILTERS) - 4, sizes


# Sources whose dense vectors come as one float32 matrix per page (Page.matrices).
GIVES_MATRICES = {"lancedb", "faiss", "redis", "milvus", "pgvector"}


def test_a_page_matrix_row_is_each_records_vector(case: Case, opened: Source) -> None:
    """The engine checks a page matrix once and passes its rows on unchecked: each record's
    vector must be that very row."""
    pages = [page for p in opened.partitions(2) for page in opened.read(p, None)]
    if case.name in GIVES_MATRICES:
        assert all(page.matrices for page in pages if page.records)
    for page in pages:
        for name, matrix in page.matrices.items():
            assert matrix.shape[0] == len(page.records)
            for row, record in zip(matrix, page.records, strict=True):
                vector = record.vectors[name]
                assert isinstance(vector, np.ndarray) and np.shares_memory(vector, matrix)
                assert np.array_equal(vector, row)


def test_closing_twice_is_harmless(case: Case) -> None:
    source = case.open()
    source.close()  # before connecting
    source = case.open()
    source.push_down(None)
    source.describe()
    source.close()
    source.close()
