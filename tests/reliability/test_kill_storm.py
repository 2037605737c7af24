"""Kill storm: SIGKILL `apply` at random moments, resume each time, and end with exactly
the data of a clean run. Points written twice (a page written but not yet checkpointed when
the kill came) are counted and bounded by the pages in flight: per kill and partition, at
most what a writer holds unsaved (`engine.PageWriter`), in pages of `batch_size` points
(Redis: of what its SCANs returned, which the test reads once to know).

The CI variant is short; `QMIGRATE_LONG_TESTS=1` runs the long one (50k points, 20 kills,
parallelism 1 and 4), whose figures are in docs/RELIABILITY.md.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from qmigrate.source_factory import create_source
from qmigrate.spec import TargetSpec
from tests.conftest import apply_and_kill_when, make_qdrant_collection, run_cli
from tests.servers.qdrant_rest import Faults, Store

LONG = os.environ.get("QMIGRATE_LONG_TESTS") == "1"
POINTS, KILLS = (50_000, 20) if LONG else (3_000, 5)
BATCH = 20
# A Redis page is a SCAN reply (~1,000 keys): 3,000 points are 3 pages, which requests in
# flight would join into one or two, leaving no moment to kill. Redis moves more points,
# one upsert at a time (still joining up to two pages).
REDIS_POINTS = 4 * POINTS


def file_source(tmp_path: Path, request: pytest.FixtureRequest) -> tuple[dict, dict]:
    rng = random.Random(1)
    rows = [{"id": i, "v": [rng.uniform(-1, 1) for _ in range(4)], "n": i} for i in range(POINTS)]
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    source = {
        "type": "file",
        "path": str(tmp_path / "rows.jsonl"),
        "vectors": {"v": {"distance": "dot"}},
    }
    expected = {r["id"]: ({"": r["v"]}, {"n": r["n"]}) for r in rows}
    return source, expected


def qdrant_source(tmp_path: Path, request: pytest.FixtureRequest) -> tuple[dict, dict]:
    points = make_qdrant_collection(tmp_path / "source", count=POINTS, size=4, named=False)
    source = {"type": "qdrant", "path": str(tmp_path / "source"), "collection": "docs"}
    expected = {p.id: ({"": p.vector}, p.payload) for p in points}
    return source, expected


def unique_name(tmp_path: Path) -> str:
    """A collection or index name of letters, digits and underscores, one per test."""
    return "storm_" + "".join(c if c.isalnum() else "_" for c in tmp_path.name[-24:])


def chroma_source(tmp_path: Path, request: pytest.FixtureRequest) -> tuple[dict, dict]:
    server = request.getfixturevalue("chroma_server")
    name = f"storm-{tmp_path.name[-24:]}".replace("_", "-")
    collection = server.client().create_collection(name, embedding_function=None)
    rng = random.Random(2)
    ids = [f"doc-{i}" for i in range(POINTS)]
    vectors = [[rng.uniform(-1, 1) for _ in range(4)] for _ in ids]
    for start in range(0, POINTS, 1000):
        collection.add(
            ids=ids[start : start + 1000],
            embeddings=vectors[start : start + 1000],
            metadatas=[{"n": i} for i in range(start, min(start + 1000, POINTS))],
        )
    expected = {}
    for start in range(0, POINTS, 5000):  # Chroma caps the SQL variables of one get
        stored = collection.get(include=["embeddings", "metadatas"], offset=start, limit=5000)
        for record_id, vector, metadata in zip(
            stored["ids"], stored["embeddings"], stored["metadatas"], strict=True
        ):
            expected[record_id] = (
                {"": list(map(float, vector))},
                {**metadata, "original_id": record_id},
            )
    return {"type": "chroma", "url": server.url, "collection": name}, expected


def redis_source(tmp_path: Path, request: pytest.FixtureRequest) -> tuple[dict, dict]:
    """HASH documents under a RediSearch index on the session's valkey-server."""
    np = pytest.importorskip("numpy")
    server = request.getfixturevalue("redis_server")
    name = unique_name(tmp_path)
    client = server.client()
    client.execute_command(
        "FT.CREATE", name, "ON", "HASH", "PREFIX", "1", f"{name}:", "SCHEMA",
        "v", "VECTOR", "FLAT", "6", "TYPE", "FLOAT32", "DIM", "4", "DISTANCE_METRIC", "IP",
        "n", "NUMERIC",
    )  # fmt: skip
    rng = random.Random(3)
    expected = {}
    pipeline = client.pipeline(transaction=False)
    for i in range(REDIS_POINTS):
        vector = np.array([rng.uniform(-1, 1) for _ in range(4)], dtype="<f4")
        pipeline.hset(f"{name}:{i}", mapping={"v": vector.tobytes(), "n": i})
        expected[str(i)] = ({"": vector.tolist()}, {"n": i, "original_id": str(i)})
    pipeline.execute()
    client.close()
    return {"type": "redis", "url": server.url, "index": name}, expected


def milvus_source(tmp_path: Path, request: pytest.FixtureRequest) -> tuple[dict, dict]:
    """A collection on the session's real Milvus 2.3 standalone server."""
    pytest.importorskip("pymilvus")
    from pymilvus import DataType, MilvusClient

    server = request.getfixturevalue("milvus_server")
    name = unique_name(tmp_path)
    client = server.client()
    schema = MilvusClient.create_schema(auto_id=False)
    schema.add_field("pk", DataType.INT64, is_primary=True)
    schema.add_field("v", DataType.FLOAT_VECTOR, dim=4)
    schema.add_field("n", DataType.INT64)
    index = client.prepare_index_params()
    index.add_index("v", index_type="FLAT", metric_type="L2")  # L2 keeps vectors as inserted
    client.create_collection(name, schema=schema, index_params=index)
    rng = random.Random(4)
    rows = [
        {"pk": i * 5 + 2, "v": [rng.uniform(-1, 1) for _ in range(4)], "n": i}
        for i in range(POINTS)
    ]
    for start in range(0, POINTS, 1000):
        client.insert(name, rows[start : start + 1000])
    client.close()
    expected = {r["pk"]: ({"": r["v"]}, {"n": r["n"]}) for r in rows}
    source = {"type": "milvus", "uri": server.uri, "token": server.token, "collection": name}
    return source, expected


def pinecone_source(tmp_path: Path, request: pytest.FixtureRequest) -> tuple[dict, dict]:
    """A serverless index on the Pinecone HTTP fake, read through the real SDK."""
    fake = request.getfixturevalue("pinecone_fake")
    index = fake.create_index("storm", dimension=4, metric="euclidean")  # kept as written
    rng = random.Random(5)
    records = [
        {"id": f"doc-{i}", "values": [rng.uniform(-1, 1) for _ in range(4)], "metadata": {"n": i}}
        for i in range(POINTS)
    ]
    index.upsert(records)
    expected = {
        r["id"]: ({"": r["values"]}, {"n": r["metadata"]["n"], "original_id": r["id"]})
        for r in records
    }
    source = {"type": "pinecone", "index": "storm", "api_key": fake.api_key}
    return {**source, "controller_host": fake.url}, expected


SOURCES: dict[str, Callable[..., tuple[dict, dict]]] = {
    "file": file_source,
    "qdrant": qdrant_source,
    "chroma": chroma_source,
    "redis": redis_source,
    "milvus": milvus_source,
    "pinecone": pinecone_source,
}


def largest_page(source: dict, parallelism: int) -> int:
    """The most points one page of the job can carry: `BATCH`, except for Redis, whose pages
    end with the SCAN reply that brought them to `BATCH` keys (at least 1,000 keys scanned
    per call): read its partitions once, here, to know. The server process is the job's,
    so its SCANs return the same keys in the same order."""
    if source["type"] != "redis":
        return BATCH
    reader = create_source(source, BATCH)
    try:
        return max(
            len(page.records)
            for partition in reader.partitions(parallelism)
            for page in reader.read(partition, None)
        )
    finally:
        reader.close()


@pytest.mark.parametrize("parallelism", [1, 4])
@pytest.mark.parametrize("kind", list(SOURCES))
def test_kill_storm_ends_exact(
    tmp_path: Path,
    request: pytest.FixtureRequest,
    stand_in: tuple[str, Store, Faults],
    kind: str,
    parallelism: int,
) -> None:
    url, store, _ = stand_in
    source, expected = SOURCES[kind](tmp_path, request)
    job = {
        "version": 1,
        "name": "storm",
        "source": source,
        "target": {
            "url": url,
            "collection": "copy",
            **({"in_flight": 1} if kind == "redis" else {}),
        },
        "batch_size": BATCH,
        "parallelism": parallelism,
    }
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(job))
    rng = random.Random(kind + str(parallelism))
    total = len(expected)
    moments = sorted(rng.sample(range(1, total), KILLS))
    landed = 0
    for moment in moments:
        if not apply_and_kill_when(
            tmp_path / "job.yaml",
            lambda moment=moment: store.exists("copy") and store.count("copy") >= moment,
        ):
            break  # it finished before this moment: the remaining kills cannot land
        landed += store.count("copy") < total  # mid-run: not everything was there
    assert landed >= KILLS // 2, f"only {landed} of {KILLS} kills landed mid-run"
    final = run_cli("apply", "job.yaml", "--output", "json", cwd=tmp_path)
    assert final.code == 0, final.stderr
    assert final.json()["jobs"][0]["count_check"] == "ok"
    points, _ = store.call("scroll", "copy", limit=total + 10, with_payload=True, with_vectors=True)
    actual = {p.id: p for p in points}
    from qmigrate.mapping import point_id

    assert len(actual) == len(expected)
    for raw_id, (vectors, payload) in expected.items():
        point = actual[point_id(raw_id)[0]]
        assert point.payload == payload, raw_id
        stored = point.vector  # the one vector, named after the source's or not
        if isinstance(stored, dict):
            (stored,) = stored.values()
        assert stored == pytest.approx(vectors[""], rel=1e-6), raw_id
    rewritten = store.writes["copy"] - total
    # Per kill and partition: the pages a writer holds unsaved (engine.PageWriter).
    held = (3 * TargetSpec.in_flight + 1) * (TargetSpec.in_flight + 1)
    bound = landed * parallelism * held * largest_page(source, parallelism)
    assert 0 <= rewritten <= bound, (rewritten, bound)
    record_figures(kind, parallelism, total, landed, rewritten, bound)


def record_figures(
    kind: str, parallelism: int, points: int, kills: int, rewritten: int, bound: int
) -> None:
    """Print the figures, for docs/RELIABILITY.md (`pytest -s`)."""
    print(
        f"\nkill storm {kind} p={parallelism}: {points:,} points, {kills} kills mid-run, "
        f"{rewritten} points written twice (bound {bound})"
    )
