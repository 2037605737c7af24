"""MongoDB -> Qdrant local mode, against a real MongoDB wire-protocol server: FerretDB 1.24
over SQLite (tests/servers/ferretdb.py), and pymongo's own BSON objects for what FerretDB
cannot hold (Decimal128 closes its connection) or list (Atlas vector search indexes)."""

from __future__ import annotations

import json
import re
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from qdrant_client import QdrantClient

from qmigrate.errors import SourceError
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
from tests.servers.ferretdb import FerretServer, running_ferretdb

pymongo = pytest.importorskip("pymongo")
from bson import Int64, Regex, Timestamp  # noqa: E402
from bson.binary import Binary, BinaryVectorDtype  # noqa: E402
from bson.datetime_ms import DatetimeMS  # noqa: E402
from bson.decimal128 import Decimal128  # noqa: E402
from bson.objectid import ObjectId  # noqa: E402

from qmigrate.sources import mongodb  # noqa: E402

UTC = timezone.utc


def job(server: FerretServer, target: Path, **extra: Any) -> dict[str, Any]:
    source = {"type": "mongodb", "uri": server.uri, "database": "shop", **extra.pop("source", {})}
    return {
        "version": 1,
        "name": "mongodb-test",
        "source": source,
        "target": {"path": str(target), "collection": "copy"},
        "batch_size": 16,
        **extra,
    }


def read_all(source: Source, n: int = 3) -> list[Any]:
    return [r for p in source.partitions(n) for page in source.read(p, None) for r in page.records]


def fill(server: FerretServer, collection: str, documents: list[dict[str, Any]]) -> None:
    client = server.client()
    try:
        client["shop"][collection].insert_many(documents)
    finally:
        client.close()


# --- BSON values, with pymongo's objects ------------------------------------------------


@pytest.mark.parametrize(
    "values, dtype, padding",
    [
        ([1.5, -2.25, 3e-8, 0.0], BinaryVectorDtype.FLOAT32, 0),
        ([1, -128, 127, 0], BinaryVectorDtype.INT8, 0),
        ([0b10110000, 0b11000000], BinaryVectorDtype.PACKED_BIT, 6),
        ([0b10000001], BinaryVectorDtype.PACKED_BIT, 0),
    ],
)
def test_binary_vectors_decode_as_pymongo_encodes_them(
    values: list[Any], dtype: Any, padding: int
) -> None:
    """Subtype 9 as pymongo writes it: float32 and int8 values, packed bits as 0/1 each,
    the padding bits of the last byte dropped."""
    binary = Binary.from_vector(values, dtype, padding=padding)
    decoded = mongodb.vector_value(binary)
    assert decoded.dtype == np.float32
    if dtype == BinaryVectorDtype.PACKED_BIT:
        bits = [int(b) for byte in values for b in format(byte, "08b")]
        assert decoded.tolist() == bits[: len(bits) - padding]
    else:
        assert decoded.tolist() == np.asarray(values, np.float32).tolist()
    assert mongodb.payload_value(binary) == decoded.tolist(), "undeclared: a list in the payload"


def test_a_malformed_binary_vector_is_refused() -> None:
    for data in (b"\x27", b"\x27\x00\x01\x02\x03", b"\x99\x00\x01", b"\x10\x09\xff"):
        with pytest.raises(ValueError):
            mongodb.binary_vector(data)
    with pytest.raises(ValueError, match="string is not a vector"):
        mongodb.vector_value("1,2,3")
    with pytest.raises(ValueError, match="not a vector"):
        mongodb.vector_value([1, "2"])


def test_payload_values_take_their_json_form() -> None:
    oid = ObjectId("65f0a1b2c3d4e5f601234567")
    when = datetime(2024, 5, 1, 10, 0, 0, 250000, tzinfo=UTC)
    value = {
        "oid": oid,
        "uuid": uuid.UUID(int=5),
        "legacy_uuid": Binary(uuid.UUID(int=6).bytes, 3),
        "when": when,
        "long": Int64(2**40),
        "exact": Decimal128("2.5"),
        "whole": Decimal128("42"),
        "digits": Decimal128("12345678901234567890.123456789"),
        "nan": Decimal128("NaN"),
        "bytes": b"\x00\x01",
        "ts": Timestamp(5, 1),
        "re": Regex("a.*", "i"),
        "nested": {"a": [1, {"b": oid}], "c": None},
    }
    assert mongodb.payload_value(value) == {
        "oid": "65f0a1b2c3d4e5f601234567",
        "uuid": "00000000-0000-0000-0000-000000000005",
        "legacy_uuid": "00000000-0000-0000-0000-000000000006",
        "when": "2024-05-01T10:00:00.250Z",
        "long": 2**40,
        "exact": 2.5,
        "whole": 42.0,
        "digits": "12345678901234567890.123456789",
        "nan": "NaN",
        "bytes": {"$binary": {"base64": "AAE=", "subType": "00"}},
        "ts": {"$timestamp": {"t": 5, "i": 1}},
        "re": {"$regularExpression": {"pattern": "a.*", "options": "i"}},
        "nested": {"a": [1, {"b": "65f0a1b2c3d4e5f601234567"}], "c": None},
    }
    assert type(mongodb.payload_value(Decimal128("42"))) is float
    with pytest.raises(ValueError, match="outside years 1-9999"):
        mongodb.payload_value(DatetimeMS(2**62))


@pytest.mark.parametrize(
    "raw, expected",
    [
        (7, 7),
        (Int64(2**40), 2**40),
        (-3, "-3"),
        (3.0, 3),
        (2.5, "2.5"),
        (Decimal128("12"), 12),
        ("sku-1", "sku-1"),
        (ObjectId("65f0a1b2c3d4e5f601234567"), "65f0a1b2c3d4e5f601234567"),
        (uuid.UUID(int=9), "00000000-0000-0000-0000-000000000009"),
        (None, None),
    ],
)
def test_ids_take_the_engines_forms(raw: Any, expected: Any) -> None:
    assert mongodb.point_id(raw) == expected


def test_cursors_round_trip_every_kind_of_id_through_json() -> None:
    for value in (5, Int64(2**40), 2.5, "a", uuid.UUID(int=1), ObjectId()):
        stored = json.loads(json.dumps(mongodb._extended(value)))
        back = mongodb._bson(stored)
        assert back == value and type(back) is type(value), value


def test_a_string_match_also_matches_what_prints_as_that_string() -> None:
    oid = ObjectId("65f0a1b2c3d4e5f601234567")
    assert mongodb._stored_as(str(oid)) == [str(oid), oid]
    text = "00000000-0000-0000-0000-000000000005"
    assert mongodb._stored_as(text) == [text, uuid.UUID(text), Binary(uuid.UUID(text).bytes, 3)]
    assert mongodb._stored_as("2024-05-01T10:00:00.250Z")[1] == datetime(
        2024, 5, 1, 10, 0, 0, 250000, tzinfo=UTC
    )
    assert mongodb._stored_as("red") == ["red"]
    assert mongodb._stored_as("1.50") == [], "Decimal128 values print so: left to the engine"


def test_unreachable_server_is_explained_in_one_line() -> None:
    exc = pymongo.errors.ServerSelectionTimeoutError(
        "127.0.0.1:9: [Errno 111] Connection refused (configured timeouts: socketTimeoutMS: "
        "2000.0ms, connectTimeoutMS: 2000.0ms), Timeout: 2.0s, Topology Description: <...>"
    )
    source = open_source("mongodb", {"uri": "mongodb://127.0.0.1:9/", "collection": "c"}, 4)
    assert (
        source.explain(exc)
        == "cannot reach the server: 127.0.0.1:9: [Errno 111] Connection refused"
    )


def test_atlas_vector_index_definitions_give_sizes_and_distances() -> None:
    """The shapes `listSearchIndexes` answers on Atlas (vectorSearch, and the older search
    index with knnVector), fed to the source as a collection would give them."""

    class Indexed:
        def list_search_indexes(self) -> list[dict[str, Any]]:
            return [
                {
                    "name": "vectors",
                    "type": "vectorSearch",
                    "latestDefinition": {
                        "fields": [
                            {"type": "vector", "path": "plot_embedding", "numDimensions": 1536,
                             "similarity": "dotProduct"},
                            {"type": "filter", "path": "genre"},
                        ]
                    },
                },
                {
                    "name": "legacy",
                    "type": "search",
                    "latestDefinition": {
                        "mappings": {"fields": {"old": {"type": "knnVector", "dimensions": 3,
                                                        "similarity": "euclidean"}}}
                    },
                },
            ]  # fmt: skip

    source = open_source("mongodb", {"uri": "mongodb://127.0.0.1:9/", "collection": "c"}, 4)
    found, note = source._vector_indexes(Indexed())  # type: ignore[attr-defined]
    assert found == {
        "plot_embedding": {"size": 1536, "distance": "Dot", "index": "vectors"},
        "old": {"size": 3, "distance": "Euclid", "index": "legacy"},
    }
    assert note == "Atlas vector search indexes: legacy, vectors"


# --- against FerretDB -------------------------------------------------------------------


@pytest.fixture(scope="module")
def typed(ferretdb_server: FerretServer) -> FerretServer:
    """ObjectId keys, a float array vector, a float32 binary vector, packed bits, and every
    payload type FerretDB holds."""
    rng = np.random.default_rng(3)
    documents = []
    for i in range(30):
        bits = [int(b) for b in rng.integers(0, 2, 12)]
        packed = np.packbits(np.asarray(bits + [0] * 4, np.uint8)).tolist()
        documents.append(
            {
                "_id": ObjectId(f"{i + 1:024x}"),
                "embedding": [float(v) for v in rng.uniform(-1, 1, 4)],
                "binary": Binary.from_vector(
                    [float(v) for v in np.float32(rng.uniform(-1, 1, 3))], BinaryVectorDtype.FLOAT32
                ),
                "bits": Binary.from_vector(packed, BinaryVectorDtype.PACKED_BIT, padding=4),
                "bit_values": bits,
                "title": f"t{i}",
                "n": i,
                "long": Int64(2**40 + i),
                "price": i / 4,
                "ok": i % 2 == 0,
                "when": datetime(2024, 1, 1 + i % 28, 10, i, 5, 123000, tzinfo=UTC),
                "ref": uuid.UUID(int=i),
                "owner": ObjectId(f"{i + 100:024x}"),
                "tags": ["a", "b"][: i % 3],
                "meta": {"level": {"value": i % 7}, "list": [{"x": i}]},
                "ts": Timestamp(1700000000 + i, 1),
                "other_vector": [1.0, 2.0],  # an array not named: payload
            }
        )
    fill(ferretdb_server, "typed", documents)
    client = ferretdb_server.client()
    try:
        collection = client["shop"]["typed"]
        for keys in (["title"], ["tags"], ["when"], ["ok", "n"], ["price"], ["meta.level.value"]):
            collection.create_index([(key, 1) for key in keys])
        collection.create_index([("ts", -1)])  # a Timestamp: no Qdrant index holds its form
    finally:
        client.close()
    return ferretdb_server


TYPED_SOURCE = {
    "collection": "typed",
    "vectors": {
        "embedding": {"distance": "cosine"},
        "binary": {"distance": "dot", "name": "b"},
        "bits": {"distance": "manhattan"},
    },
}


def test_every_type_arrives_as_qdrant_keeps_it(typed: FerretServer, tmp_path: Path) -> None:
    summary = run_job(job(typed, tmp_path / "t", source=TYPED_SOURCE), tmp_path)
    assert (summary.written, summary.count_check) == (30, "ok")
    points = {p.payload["original_id"]: p for p in read_collection(tmp_path / "t", "copy").values()}
    client = typed.client()
    try:
        documents = list(client["shop"]["typed"].find())
    finally:
        client.close()
    assert len(points) == 30
    for document in documents:
        i = document["n"]
        point = points[str(document["_id"])]
        assert point.vector["embedding"] == np.float32(document["embedding"]).tolist()
        assert point.vector["b"] == document["binary"].as_vector().data
        assert point.vector["bits"] == [float(b) for b in document["bit_values"]]
        assert point.payload == {
            "original_id": f"{i + 1:024x}",
            "bit_values": document["bit_values"],
            "title": f"t{i}",
            "n": i,
            "long": 2**40 + i,
            "price": i / 4,
            "ok": i % 2 == 0,
            "when": f"2024-01-{1 + i % 28:02d}T10:{i:02d}:05.123Z",
            "ref": str(uuid.UUID(int=i)),
            "owner": f"{i + 100:024x}",
            "tags": ["a", "b"][: i % 3],
            "meta": {"level": {"value": i % 7}, "list": [{"x": i}]},
            "ts": {"$timestamp": {"t": 1700000000 + i, "i": 1}},
            "other_vector": [1.0, 2.0],
        }
    client = QdrantClient(path=str(tmp_path / "t"))
    try:
        params = client.get_collection("copy").config.params.vectors
    finally:
        client.close()
    assert {name: (p.size, p.distance.value, p.datatype) for name, p in params.items()} == {
        "embedding": (4, "Cosine", None),
        "b": (3, "Dot", None),
        "bits": (12, "Manhattan", "uint8"),
    }


def test_fields_mongodb_indexes_get_payload_indexes_of_their_kind(typed: FerretServer) -> None:
    """Leading top-level index keys, typed by the sampled values; a dotted key, a type no
    Qdrant index holds, and the vector fields get none."""
    source = open_source("mongodb", {"uri": typed.uri, "database": "shop", **TYPED_SOURCE}, 8)
    try:
        indexes = source.describe().payload_indexes
    finally:
        source.close()
    assert indexes == {
        "title": "keyword",
        "tags": "keyword",
        "when": "datetime",
        "ok": "bool",
        "price": "float",
    }


def test_plan_names_the_vectors_ids_and_the_pushed_query(
    typed: FerretServer, tmp_path: Path
) -> None:
    document = job(
        typed,
        tmp_path / "t",
        source=TYPED_SOURCE,
        filter={"must": [{"key": "title", "match": {"value": "t3"}}]},
    )
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(document))
    plan = run_cli("plan", "job.yaml", cwd=tmp_path)
    assert plan.code == 0, plan.stderr
    assert "30 objectId _id values" in plan.stdout, plan.stdout
    assert "embedding -> embedding (4, Cosine)" in plan.stdout
    assert "does not list Atlas search indexes" in plan.stdout
    assert '{"title": {"$in": ["t3"]}}' in plan.stdout


def test_a_string_match_finds_object_ids_uuids_and_dates(typed: FerretServer) -> None:
    """Pushed down, a string selects the ObjectId, UUID or date that prints as it, as
    Qdrant's match selects the converted payload."""
    for key, value in (
        ("owner", f"{107:024x}"),
        ("ref", str(uuid.UUID(int=7))),
        ("when", "2024-01-08T10:07:05.123Z"),
    ):
        source = open_source("mongodb", {"uri": typed.uri, "database": "shop", **TYPED_SOURCE}, 8)
        try:
            residual = source.push_down({"must": [{"key": key, "match": {"value": value}}]})
            assert residual is None, key
            source.describe()
            assert [r.payload["n"] for r in read_all(source)] == [7], key
        finally:
            source.close()


def test_a_range_holds_for_one_element_of_an_array(ferretdb_server: FerretServer) -> None:
    """[1, 10] has an element >= 3 and one < 7, but none in 3..7: Qdrant leaves it out. On
    FerretDB (whose $elemMatch does not hold its tests for one element) the range stays
    client-side; the negation keeps it, and the document without the field."""
    values: list[Any] = [[1, 10], [3, 40], 5, 5.5, 9, "5", None, [], [2.0, 6]]
    documents: list[dict[str, Any]] = [{"_id": i, "v": [1.0], "x": x} for i, x in enumerate(values)]
    documents.append({"_id": len(values), "v": [1.0]})
    fill(ferretdb_server, "ranges", documents)
    config = {"uri": ferretdb_server.uri, "database": "shop", "collection": "ranges"}
    in_range = {"key": "x", "range": {"gte": 3, "lt": 7}}
    for flt, expected in (
        ({"must": [in_range]}, {1, 2, 3, 8}),
        ({"must_not": [in_range]}, {0, 4, 5, 6, 7, 9}),
        ({"must": [{"key": "x", "match": {"value": 5}}]}, {2}),
    ):
        source = open_source("mongodb", {**config, "vectors": {"v": {"distance": "dot"}}}, 4)
        try:
            assert source.push_down(flt) == flt, "numeric conditions stay client-side here"
            source.describe()
            kept = ClientFilter(flt)
            assert {r.id for r in read_all(source) if kept.matches(r)} == expected, flt
        finally:
            source.close()


def test_numeric_conditions_hold_element_by_element_on_mongodb() -> None:
    """The query documents a MongoDB server gets (not run here: FerretDB's $elemMatch
    differs): each numeric test inside one $elemMatch, or on a value that is not an array;
    an integer match also asks for an integer type."""
    dialect = mongodb.mongo_dialect({"_id"}, element_wise=True)
    assert dialect.condition({"key": "x", "range": {"gte": 3, "lt": 7}}) == {
        "$or": [
            {"x": {"$elemMatch": {"$gte": 3, "$lt": 7}}},
            {"x": {"$gte": 3, "$lt": 7, "$not": {"$type": "array"}}},
        ]
    }
    assert dialect.condition({"key": "x", "match": {"any": [4, 5]}}) == {
        "$or": [
            {"x": {"$elemMatch": {"$in": [4, 5], "$type": ["int", "long"]}}},
            {"x": {"$in": [4, 5], "$type": ["int", "long"], "$not": {"$type": "array"}}},
        ]
    }
    assert dialect.negation is not None
    assert dialect.negation({"key": "ok", "match": {"value": True}}) == {
        "$nor": [{"ok": {"$in": [True]}}]
    }
    for left_out in (
        {"key": "_id", "match": {"value": "a"}},
        {"key": "a.b", "match": {"value": "a"}},
    ):
        assert dialect.condition(left_out) is None
    ferret = mongodb.mongo_dialect({"_id"}, element_wise=False)
    assert ferret.condition({"key": "x", "range": {"gte": 3}}) is None
    assert ferret.condition({"key": "x", "match": {"value": 4}}) is None
    assert ferret.condition({"key": "x", "match": {"value": "4a"}}) == {"x": {"$in": ["4a"]}}


def test_mixed_id_kinds_are_read_each_in_its_range(ferretdb_server: FerretServer) -> None:
    """Numbers (int, long, double), strings, UUIDs and ObjectIds in one collection: every
    split covers each document once, and a read resumes exactly after any cursor."""
    ids: list[Any] = [
        *range(0, 40, 3), Int64(2**40), -5, 2.5, *(f"k{i:02d}" for i in range(12)),
        *(uuid.UUID(int=i * 7919) for i in range(1, 9)), *(ObjectId(f"{i:024x}") for i in range(1, 11)),
    ]  # fmt: skip
    fill(ferretdb_server, "mixed", [{"_id": k, "v": [float(i), 1.0]} for i, k in enumerate(ids)])
    config = {"uri": ferretdb_server.uri, "database": "shop", "collection": "mixed"}
    source = open_source("mongodb", {**config, "vectors": {"v": {"distance": "dot"}}}, 4)
    expected = sorted(str(mongodb.point_id(k)) for k in ids)
    try:
        info = source.describe()
        assert info.count == len(ids)
        for n in (1, 2, 5, 9):
            partitions = source.partitions(n)
            assert len(partitions) >= min(n, 4)
            read = [str(r.id) for r in read_all(source, n)]
            assert sorted(read) == expected, n
        for partition in source.partitions(5):
            pages = list(source.read(partition, None))
            records = [r.id for page in pages for r in page.records]
            done = 0
            for page in pages:
                done += len(page.records)
                cursor = json.loads(json.dumps(page.cursor))
                rest = [r.id for page in source.read(partition, cursor) for r in page.records]
                assert rest == records[done:], cursor
    finally:
        source.close()


def test_apply_moves_every_kind_of_id(ferretdb_server: FerretServer, tmp_path: Path) -> None:
    """Through the engine: integers stay, UUIDs stay UUIDs, the rest keep their original."""
    ids: list[Any] = [7, Int64(2**40), -5, 2.5, "sku-1", uuid.UUID(int=3), ObjectId(f"{9:024x}")]
    fill(ferretdb_server, "kinds", [{"_id": k, "v": [float(i), 1.0]} for i, k in enumerate(ids)])
    source = {"collection": "kinds", "vectors": {"v": {"distance": "dot"}}}
    summary = run_job(job(ferretdb_server, tmp_path / "t", source=source, parallelism=3), tmp_path)
    assert (summary.written, summary.count_check) == (len(ids), "ok")
    points = read_collection(tmp_path / "t", "copy")
    kept = {p.payload.get("original_id", str(point_id)) for point_id, p in points.items()}
    assert kept == {"7", str(2**40), "-5", "2.5", "sku-1", str(uuid.UUID(int=3)), f"{9:024x}"}
    assert {7, 2**40, str(uuid.UUID(int=3))} <= set(points)


def test_documents_written_during_a_read_are_neither_skipped_nor_repeated(
    ferretdb_server: FerretServer,
) -> None:
    """Keyset pages, unlike skip: a document inserted before the cursor and one deleted
    there shift nothing; one inserted ahead of it is read, once."""
    fill(ferretdb_server, "moving", [{"_id": i * 10, "v": [float(i)]} for i in range(20)])
    config = {"uri": ferretdb_server.uri, "database": "shop", "collection": "moving"}
    source = open_source("mongodb", {**config, "vectors": {"v": {"distance": "dot"}}}, 5)
    client = ferretdb_server.client()
    try:
        source.describe()
        pages = source.read(source.partitions(1)[0], None)
        ids = [r.id for r in next(pages).records]
        collection = client["shop"]["moving"]
        collection.insert_many([{"_id": 5, "v": [0.5]}, {"_id": 105, "v": [10.5]}])
        collection.delete_one({"_id": 0})
        ids += [r.id for page in pages for r in page.records]
    finally:
        client.close()
        source.close()
    assert ids == sorted([i * 10 for i in range(20)] + [105])


def test_point_ids_from_another_field_keep_id_in_the_payload(
    ferretdb_server: FerretServer, tmp_path: Path
) -> None:
    fill(
        ferretdb_server,
        "skus",
        [{"_id": ObjectId(f"{i:024x}"), "sku": {"n": i * 10}, "v": [i, 1.0]} for i in range(5)],
    )
    source = {"collection": "skus", "id": "sku.n", "vectors": {"v": {"distance": "euclid"}}}
    summary = run_job(job(ferretdb_server, tmp_path / "t", source=source), tmp_path)
    assert summary.written == 5
    points = read_collection(tmp_path / "t", "copy")
    assert {i: p.payload for i, p in points.items()} == {
        i * 10: {"_id": f"{i:024x}", "sku": {}} for i in range(5)
    }


def test_a_bad_value_in_a_vector_field_is_an_invalid_record(
    ferretdb_server: FerretServer, tmp_path: Path
) -> None:
    fill(ferretdb_server, "bad", [{"_id": 1, "v": [1.0, 2.0]}, {"_id": 2, "v": "oops"}])
    source = {"collection": "bad", "vectors": {"v": {"distance": "dot"}}}
    letters = tmp_path / "dead.jsonl"
    on_invalid = {"action": "dead_letter", "path": str(letters)}
    document = job(ferretdb_server, tmp_path / "t", source=source, on_invalid=on_invalid)
    summary = run_job(document, tmp_path)
    assert (summary.written, summary.invalid) == (1, 1)
    assert "v: a string is not a vector" in letters.read_text()


def test_verify_passes_after_apply(typed: FerretServer, tmp_path: Path) -> None:
    (tmp_path / "job.yaml").write_text(
        yaml.safe_dump(job(typed, tmp_path / "t", source=TYPED_SOURCE))
    )
    assert run_cli("apply", "job.yaml", cwd=tmp_path).code == 0
    verified = run_cli("verify", "job.yaml", "--sample", "all", cwd=tmp_path)
    assert verified.code == 0, verified.stdout + verified.stderr
    assert re.search(r"sample\s+pass", verified.stdout), verified.stdout
    assert re.search(r"search\s+skip", verified.stdout), verified.stdout


# --- kill -9 --------------------------------------------------------------------------


def test_resumes_after_kill_9_with_every_point_equal(
    ferretdb_server: FerretServer, tmp_path: Path
) -> None:
    count = 1500
    rng = np.random.default_rng(5)
    vectors = rng.uniform(-1, 1, (count, 16)).astype(np.float32)
    ids = [ObjectId(f"{i * 7 + 1:024x}") for i in range(count)]
    fill(
        ferretdb_server,
        "killed",
        [
            {"_id": ids[i], "v": vectors[i].tolist(), "n": i % 13, "meta": {"i": i}}
            for i in range(count)
        ],
    )
    checkpoint = tmp_path / "checkpoint.json"
    document = job(
        ferretdb_server,
        tmp_path / "t",
        source={"collection": "killed", "vectors": {"v": {"distance": "euclid"}}},
        batch_size=50,
        parallelism=2,
        checkpoint={"store": "file", "path": str(checkpoint)},
    )
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(document))
    kill_mid_apply(path, checkpoint, after_points=400, count=count)
    apply_resumed(path, count)
    points = {p.payload["original_id"]: p for p in read_collection(tmp_path / "t", "copy").values()}
    assert sorted(points) == sorted(str(i) for i in ids)
    for i in range(count):
        point = points[str(ids[i])]
        assert point.vector["v"] == vectors[i].tolist(), i
        assert point.payload == {"original_id": str(ids[i]), "n": i % 13, "meta": {"i": i}}, i


# --- errors, one line each, before data moves -----------------------------------------


def plan_error(tmp_path: Path, document: dict[str, Any]) -> str:
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(document))
    result = run_cli("plan", "job.yaml", cwd=tmp_path)
    assert result.code != 0
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    return result.stderr


def test_an_unknown_collection_lists_the_existing_ones(typed: FerretServer, tmp_path: Path) -> None:
    message = plan_error(tmp_path, job(typed, tmp_path / "t", source={"collection": "nope"}))
    assert "collection nope does not exist in database shop" in message
    assert "typed" in message


def test_an_unreachable_server_fails_in_one_line_without_the_password(tmp_path: Path) -> None:
    from tests.servers.process import free_port

    uri = f"mongodb://reader:s3cret-mongo-pw@127.0.0.1:{free_port()}/shop"
    document = job(FerretServer(0), tmp_path / "t", source={"collection": "c", "timeout": 1})
    document["source"]["uri"] = uri
    message = plan_error(tmp_path, document)
    assert "cannot reach the server" in message and "Connection refused" in message, message
    assert "s3cret-mongo-pw" not in message


def test_credentials_the_server_refuses_fail_in_one_line(
    typed: FerretServer, tmp_path: Path
) -> None:
    """FerretDB over SQLite has no users: any credentials are refused (its message names the
    mechanism), which is what a wrong password meets on MongoDB too: an OperationFailure."""
    document = job(typed, tmp_path / "t", source={"collection": "typed"})
    document["source"]["uri"] = typed.uri.replace("//", "//reader:s3cret-mongo-pw@")
    message = plan_error(tmp_path, document)
    assert "authentication" in message.lower(), message
    assert "s3cret-mongo-pw" not in message


def test_no_vectors_named_and_no_index_is_one_line(typed: FerretServer, tmp_path: Path) -> None:
    source = {"collection": "typed", "vectors": None}
    document = job(typed, tmp_path / "t", source=source)
    del document["source"]["vectors"]
    message = plan_error(tmp_path, document)
    assert "no vector fields" in message and "`vectors`" in message


def test_an_id_of_another_kind_is_refused_with_its_count(
    ferretdb_server: FerretServer, tmp_path: Path
) -> None:
    fill(
        ferretdb_server,
        "dated",
        [{"_id": 1, "v": [1.0]}, {"_id": datetime(2024, 1, 1, tzinfo=UTC), "v": [2.0]}],
    )
    source = {"collection": "dated", "vectors": {"v": {"distance": "dot"}}}
    message = plan_error(tmp_path, job(ferretdb_server, tmp_path / "t", source=source))
    assert "1 documents have an _id that is not a number, string, UUID or ObjectId" in message


def test_a_lost_connection_mid_read_is_transient(tmp_path: Path) -> None:
    with running_ferretdb(tmp_path / "own") as server:
        fill(server, "c", [{"_id": i, "v": [float(i)]} for i in range(20)])
        config = {"uri": server.uri, "database": "shop", "collection": "c", "timeout": 2}
        source = open_source("mongodb", {**config, "vectors": {"v": {"distance": "dot"}}}, 4)
        source.describe()
        pages = source.read(source.partitions(1)[0], None)
        next(pages)
    with pytest.raises(Exception) as caught:
        next(pages)
    source.close()
    assert is_transient(caught.value), caught.value


def test_the_password_stays_out_of_label_and_fingerprint(tmp_path: Path) -> None:
    from qmigrate import spec

    fingerprints = []
    for password in ("s3cret-mongo-pw", "another-password"):
        document = job(FerretServer(27017), tmp_path / "t", source={"collection": "c"})
        document["source"]["uri"] = f"mongodb://reader:{password}@db.example.com/shop"
        (tmp_path / "job.yaml").write_text(yaml.safe_dump(document))
        fingerprints.append(spec.load(tmp_path / "job.yaml", {}).fingerprint())
    assert fingerprints[0] == fingerprints[1]
    source = open_source("mongodb", {"uri": document["source"]["uri"], "collection": "c"}, 4)
    assert "another-password" not in source.label and "reader" not in source.label


def test_describe_without_a_database_anywhere_is_a_source_error() -> None:
    source = open_source("mongodb", {"uri": "mongodb://127.0.0.1:9/", "collection": "c"}, 4)
    with pytest.raises(SourceError, match="no database"):
        source.describe()
