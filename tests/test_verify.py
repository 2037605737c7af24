"""`qmigrate verify`: a clean migration passes; each kind of damage to the target is caught.

Sources join through `MIGRATIONS`: each builds its data, migrates it into a local Qdrant
directory with `apply`, and returns the job file. Damage is done to a copy of the target.
"""

from __future__ import annotations

import random
import shutil
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from qdrant_client import QdrantClient, models

from tests.conftest import CliResult, make_qdrant_collection, run_cli

Damage = Callable[[QdrantClient, str], None]


COUNT = 300  # records per source; a third of them have category "shoes"


def migrate(tmp_path: Path, source: dict[str, Any], **extra: Any) -> Path:
    """Apply a job from `source` into a local target; returns the job file."""
    job = {
        "version": 1,
        "name": f"verify-{source['type']}",
        "source": source,
        "target": {"path": str(tmp_path / "target"), "collection": "copy"},
        "batch_size": 64,
        **extra,
    }
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(job))
    applied = run_cli("apply", str(path))
    assert applied.code == 0, applied.stderr
    return path


def qdrant_migration(tmp_path: Path, request: pytest.FixtureRequest, **extra: Any) -> Path:
    make_qdrant_collection(tmp_path / "source", count=COUNT)
    source = {"type": "qdrant", "path": str(tmp_path / "source"), "collection": "docs"}
    return migrate(tmp_path, source, **extra)


def vector_rows(seed: int = 0) -> list[tuple[str, list[float], dict[str, Any]]]:
    rng = random.Random(seed)
    categories = ["shoes", "hats", "bags"]
    return [
        (
            f"doc-{i}",
            [rng.uniform(-1, 1) for _ in range(8)],
            {"category": categories[i % 3], "i": i},
        )
        for i in range(COUNT)
    ]


def chroma_migration(tmp_path: Path, request: pytest.FixtureRequest, **extra: Any) -> Path:
    server = request.getfixturevalue("chroma_server")
    name = f"verify-{tmp_path.name[-20:]}".replace("_", "-")
    collection = server.client().create_collection(
        name, embedding_function=None, metadata={"hnsw:space": "cosine"}
    )
    rows = vector_rows()
    collection.add(
        ids=[r[0] for r in rows], embeddings=[r[1] for r in rows], metadatas=[r[2] for r in rows]
    )
    mapping = {"vectors": {"": "dense"}, **extra.pop("mapping", {})}
    source = {"type": "chroma", "url": server.url, "collection": name}
    return migrate(tmp_path, source, mapping=mapping, **extra)


def pinecone_migration(tmp_path: Path, request: pytest.FixtureRequest, **extra: Any) -> Path:
    fake = request.getfixturevalue("pinecone_fake")
    index = fake.create_index(f"verify-{len(fake.indexes)}", dimension=8, metric="euclidean")
    index.upsert([{"id": i, "values": v, "metadata": m} for i, v, m in vector_rows()])
    mapping = {"vectors": {"values": "dense"}, **extra.pop("mapping", {})}
    source = {
        "type": "pinecone",
        "api_key": fake.api_key,
        "controller_host": fake.url,
        "index": index.name,
    }
    return migrate(tmp_path, source, mapping=mapping, **extra)


def redis_migration(tmp_path: Path, request: pytest.FixtureRequest, **extra: Any) -> Path:
    server = request.getfixturevalue("redis_server")
    client = server.client()
    index = f"verify{len(client.execute_command('FT._LIST'))}"
    client.execute_command(
        "FT.CREATE", index, "ON", "HASH", "PREFIX", "1", f"{index}:", "SCHEMA",
        "dense", "VECTOR", "FLAT", "6", "TYPE", "FLOAT32", "DIM", "8", "DISTANCE_METRIC", "COSINE",
        "category", "TAG", "CASESENSITIVE", "i", "NUMERIC",
    )  # fmt: skip
    pipeline = client.pipeline(transaction=False)
    for record_id, vector, metadata in vector_rows():
        blob = struct.pack("<8f", *vector)
        pipeline.hset(f"{index}:{record_id}", mapping={"dense": blob, **metadata})
    pipeline.execute()
    source = {"type": "redis", "url": server.url, "index": index}
    return migrate(tmp_path, source, **extra)


def milvus_migration(tmp_path: Path, request: pytest.FixtureRequest, **extra: Any) -> Path:
    from pymilvus import DataType, MilvusClient

    server = request.getfixturevalue("milvus_lite_server")
    client = server.client()
    name = f"verify_{len(client.list_collections())}"
    schema = MilvusClient.create_schema(auto_id=False)
    schema.add_field("pk", DataType.VARCHAR, is_primary=True, max_length=32)
    schema.add_field("dense", DataType.FLOAT_VECTOR, dim=8)
    schema.add_field("category", DataType.VARCHAR, max_length=16)
    schema.add_field("i", DataType.INT64)
    index = client.prepare_index_params()
    index.add_index("dense", index_type="FLAT", metric_type="COSINE")
    client.create_collection(name, schema=schema, index_params=index)
    rows = [{"pk": pk, "dense": v, **m} for pk, v, m in vector_rows()]
    client.insert(name, rows)
    source = {"type": "milvus", "uri": server.uri, "collection": name}
    return migrate(tmp_path, source, **extra)


Migration = Callable[..., Path]
# A source joins verify's tests with a function that migrates its data (dense vector
# "dense", payload "category" with a third "shoes") into a local target.
MIGRATIONS: dict[str, Migration] = {
    "qdrant": qdrant_migration,
    "chroma": chroma_migration,
    "pinecone": pinecone_migration,
    "redis": redis_migration,
    "milvus": milvus_migration,
}


def verify(job: Path, *options: str, target: Path | None = None) -> CliResult:
    """`qmigrate verify --output json`, on the job's own target or on a damaged copy."""
    if target is not None:
        document = yaml.safe_load(job.read_text())
        document["target"]["path"] = str(target)
        document["checkpoint"] = {"store": "file", "path": str(job.parent / "none.json")}
        job = job.with_name("damaged.yaml")
        job.write_text(yaml.safe_dump(document))
    return run_cli("verify", str(job), "--output", "json", *options)


def checks(result: CliResult) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in result.json()["jobs"][0]["checks"]}


def damaged(job: Path, damage: Damage) -> Path:
    original = Path(yaml.safe_load(job.read_text())["target"]["path"])
    copy = original.with_name(original.name + "-damaged")
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(original, copy)
    client = QdrantClient(path=str(copy))
    try:
        damage(client, yaml.safe_load(job.read_text())["target"]["collection"])
    finally:
        client.close()
    return copy


def assert_caught(job: Path, damage: Damage, named: str) -> None:
    """`verify --sample all` on a damaged copy: exit 3, one point different, named."""
    result = verify(job, "--sample", "all", target=damaged(job, damage))
    assert result.code == 3, result.stdout + result.stderr
    sample = checks(result)["sample"]
    assert sample["status"] == "fail" and sample["figures"]["different"] == 1
    assert any(named in difference for difference in sample["differences"]), sample


def first_ids(client: QdrantClient, collection: str, n: int) -> list[Any]:
    points, _ = client.scroll(collection, limit=n, with_payload=False)
    return [p.id for p in points]


def delete_point(client: QdrantClient, collection: str) -> None:
    client.delete(collection, models.PointIdsList(points=first_ids(client, collection, 8)[7:]))


def alter_vector(client: QdrantClient, collection: str) -> None:
    (point_id,) = first_ids(client, collection, 1)
    point = client.retrieve(collection, [point_id], with_vectors=True)[0]
    dense = list(point.vector["dense"])
    dense[3] += 0.5
    client.update_vectors(collection, [models.PointVectors(id=point_id, vector={"dense": dense})])


def drop_payload_field(client: QdrantClient, collection: str) -> None:
    ids = first_ids(client, collection, 3)[2:]
    client.delete_payload(collection, keys=["category"], points=ids)


def truncate_sparse(client: QdrantClient, collection: str) -> None:
    point_id = first_ids(client, collection, 5)[4]
    point = client.retrieve(collection, [point_id], with_vectors=True)[0]
    sparse = point.vector["text"]
    shorter = models.SparseVector(indices=sparse.indices[:-1], values=sparse.values[:-1])
    client.update_vectors(collection, [models.PointVectors(id=point_id, vector={"text": shorter})])


def replace_forty_percent(client: QdrantClient, collection: str) -> None:
    rng = random.Random(7)
    ids = first_ids(client, collection, 1000)
    chosen = rng.sample(ids, int(len(ids) * 0.4))
    vectors = [
        models.PointVectors(id=i, vector={"dense": [rng.uniform(-1, 1) for _ in range(8)]})
        for i in chosen
    ]
    client.update_vectors(collection, vectors)


@pytest.fixture(params=list(MIGRATIONS))
def migration(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[..., Path]:
    return lambda **extra: MIGRATIONS[request.param](tmp_path, request, **extra)


def test_a_clean_migration_passes(migration: Migration) -> None:
    job = migration()
    result = verify(job, "--sample", "all")
    assert result.code == 0, result.stdout + result.stderr
    assert "Warning" not in result.stderr
    found = checks(result)
    assert {name: c["status"] for name, c in found.items()} == {
        "counts": "pass",
        "sample": "pass",
        "search": "pass",
        "health": "pass",
    }
    assert found["sample"]["figures"] == {"compared": COUNT, "different": 0}
    assert found["search"]["figures"]["mean_overlap_exact"] == 1.0
    assert found["counts"]["figures"]["source_selected"] == COUNT


@pytest.mark.parametrize(
    ("damage", "named"),
    [
        (delete_point, "missing in the target"),
        (alter_vector, "vector 'dense': ["),
        (drop_payload_field, "payload 'category' missing in the target"),
    ],
    ids=["deleted-point", "altered-vector", "dropped-payload"],
)
def test_each_damage_is_caught_and_named(migration: Migration, damage: Damage, named: str) -> None:
    job = migration()
    assert_caught(job, damage, named)


def test_a_truncated_sparse_vector_is_caught(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    job = qdrant_migration(tmp_path, request)
    assert_caught(job, truncate_sparse, "vector 'text': sparse indices differ")


def test_random_vectors_are_caught_by_search_agreement_at_default_sampling(
    migration: Migration,
) -> None:
    job = migration()
    result = verify(job, target=damaged(job, replace_forty_percent))
    assert result.code == 3
    search = checks(result)["search"]
    assert search["status"] == "fail", search
    assert search["figures"]["mean_overlap_exact"] < 0.8
    assert "the data differs" in search["differences"][0]


def test_a_filtered_job_verifies_against_its_subset(migration: Migration) -> None:
    shoes = {"must": [{"key": "category", "match": {"value": "shoes"}}]}
    job = migration(filter=shoes)
    result = verify(job, "--sample", "all")
    assert result.code == 0, result.stdout + result.stderr
    found = checks(result)
    assert found["counts"]["figures"]["source_selected"] == COUNT // 3
    assert found["sample"]["figures"]["compared"] == COUNT // 3
    assert found["search"]["status"] == "pass"


def test_a_mapping_with_renames_verifies_through_the_mapping(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    mapping = {
        "vectors": {"dense": "main"},
        "payload": {"rename": {"category": "kind"}, "exclude": ["tags"], "set": {"origin": "x"}},
    }
    job = qdrant_migration(tmp_path, request, mapping=mapping)
    result = verify(job)
    assert result.code == 0, result.stdout + result.stderr
    assert checks(result)["search"]["figures"]["mean_overlap"] == 1.0


def test_the_markdown_report_and_text_output(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    job = qdrant_migration(tmp_path, request)
    report = tmp_path / "report.md"
    result = run_cli("verify", str(job), "--report", str(report), "--queries", "5")
    assert result.code == 0, result.stderr
    assert result.stdout.startswith("verify verify-qdrant: pass (4 checks, 0 failed)")
    text = report.read_text()
    assert "### qmigrate verify `verify-qdrant`: ✅ pass" in text
    assert "| sample | ✅ pass |" in text


def test_apply_verify_and_bad_options(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    job = qdrant_migration(tmp_path, request)
    again = run_cli("apply", str(job), "--verify", "--output", "json")
    assert again.code == 0, again.stderr
    assert again.json()["jobs"][0]["verify"]["ok"] is True
    bad = run_cli("verify", str(job), "--sample", "some")
    assert bad.code == 2 and "--sample some: expected a positive number or all" in bad.stderr


def test_verify_writes_nothing(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    job = qdrant_migration(tmp_path, request)
    target = Path(yaml.safe_load(job.read_text())["target"]["path"])
    before = {p: p.stat().st_mtime_ns for p in target.rglob("*") if p.is_file()}
    assert verify(job).code == 0
    after = {p: p.stat().st_mtime_ns for p in target.rglob("*") if p.is_file()}
    assert {p: t for p, t in after.items() if p.name != ".lock"} == {
        p: t for p, t in before.items() if p.name != ".lock"
    }


EXTRA_ID = 10**12  # an ID no source record of the suite maps to


def add_extra_point(client: QdrantClient, collection: str) -> None:
    (point_id,) = first_ids(client, collection, 1)
    point = client.retrieve(collection, [point_id], with_vectors=True, with_payload=True)[0]
    client.upsert(
        collection, [models.PointStruct(id=EXTRA_ID, vector=point.vector, payload=point.payload)]
    )


def add_extra_and_delete_one(client: QdrantClient, collection: str) -> None:
    add_extra_point(client, collection)
    delete_point(client, collection)


@pytest.mark.parametrize("damage", [add_extra_point, add_extra_and_delete_one])
def test_extra_target_points_are_named(
    tmp_path: Path, request: pytest.FixtureRequest, damage: Damage
) -> None:
    job = qdrant_migration(tmp_path, request)
    copy = damaged(job, damage)
    for sample in ("all", str(COUNT * 2)):  # a sample as large as the target checks it all
        result = verify(job, "--sample", sample, target=copy)
        assert result.code == 3, result.stdout + result.stderr
        counts = checks(result)["counts"]
        assert counts["status"] == "fail"
        assert counts["figures"]["extra"] == 1
        assert counts["differences"][-1].startswith(
            f"the target holds 1 point that no record the job selects in the source maps to "
            f"(e.g. {EXTRA_ID})"
        ), counts
        assert "every target point checked" in counts["figure"]
    if damage is add_extra_and_delete_one:
        assert counts["differences"] == [counts["differences"][-1]], "the numbers agree"
        assert "missing in the target" in checks(result)["sample"]["differences"][0]


def test_a_small_sample_says_how_many_target_points_it_checked(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    job = qdrant_migration(tmp_path, request)
    result = verify(job, "--sample", "10", target=damaged(job, add_extra_point))
    counts = checks(result)["counts"]
    assert counts["figures"]["extra_checked"] == 10
    assert f"10 of {COUNT + 1} target points checked for a source record" in counts["figure"]
    assert counts["status"] == "fail", "the counts differ, whether or not the sample hit it"
