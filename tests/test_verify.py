"""`qmigrate verify`: a clean migration passes; each kind of damage to the target is caught.

Sources join through `MIGRATIONS`: each builds its data, migrates it into a local Qdrant
directory with `apply`, and returns the job file. Damage is done to a copy of the target.
"""

from __future__ import annotations

import random
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from qdrant_client import QdrantClient, models

from tests.conftest import CliResult, make_qdrant_collection, run_cli

Damage = Callable[[QdrantClient, str], None]


def qdrant_migration(tmp_path: Path, **extra: Any) -> Path:
    make_qdrant_collection(tmp_path / "source", count=300)
    job = {
        "version": 1,
        "name": "verify-qdrant",
        "source": {"type": "qdrant", "path": str(tmp_path / "source"), "collection": "docs"},
        "target": {"path": str(tmp_path / "target"), "collection": "copy"},
        "batch_size": 64,
        **extra,
    }
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(job))
    applied = run_cli("apply", str(path))
    assert applied.code == 0, applied.stderr
    return path


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


def test_a_clean_migration_passes(tmp_path: Path) -> None:
    job = qdrant_migration(tmp_path)
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
    assert found["sample"]["figures"] == {"compared": 300, "different": 0}
    assert found["search"]["figures"]["mean_overlap_exact"] == 1.0
    assert found["counts"]["figures"]["source_selected"] == 300


@pytest.mark.parametrize(
    ("damage", "named"),
    [
        (delete_point, "missing in the target"),
        (alter_vector, "vector 'dense': ["),
        (drop_payload_field, "payload 'category' missing in the target"),
        (truncate_sparse, "vector 'text': sparse indices differ"),
    ],
    ids=["deleted-point", "altered-vector", "dropped-payload", "truncated-sparse"],
)
def test_each_damage_is_caught_and_named(tmp_path: Path, damage: Damage, named: str) -> None:
    job = qdrant_migration(tmp_path)
    result = verify(job, "--sample", "all", target=damaged(job, damage))
    assert result.code == 3, result.stdout + result.stderr
    sample = checks(result)["sample"]
    assert sample["status"] == "fail" and sample["figures"]["different"] == 1
    assert any(named in difference for difference in sample["differences"]), sample


def test_random_vectors_are_caught_by_search_agreement_at_default_sampling(
    tmp_path: Path,
) -> None:
    job = qdrant_migration(tmp_path)
    result = verify(job, target=damaged(job, replace_forty_percent))
    assert result.code == 3
    search = checks(result)["search"]
    assert search["status"] == "fail", search
    assert search["figures"]["mean_overlap_exact"] < 0.8
    assert "the data differs" in search["differences"][0]


def test_a_filtered_job_verifies_against_its_subset(tmp_path: Path) -> None:
    shoes = {"must": [{"key": "category", "match": {"value": "shoes"}}]}
    job = qdrant_migration(tmp_path, filter=shoes)
    result = verify(job, "--sample", "all")
    assert result.code == 0, result.stdout + result.stderr
    found = checks(result)
    assert found["counts"]["figures"]["source_selected"] == 100
    assert found["sample"]["figures"]["compared"] == 100
    assert found["search"]["status"] == "pass"


def test_a_mapping_with_renames_verifies_through_the_mapping(tmp_path: Path) -> None:
    mapping = {
        "vectors": {"dense": "main"},
        "payload": {"rename": {"category": "kind"}, "exclude": ["tags"], "set": {"origin": "x"}},
    }
    job = qdrant_migration(tmp_path, mapping=mapping)
    result = verify(job)
    assert result.code == 0, result.stdout + result.stderr
    assert checks(result)["search"]["figures"]["mean_overlap"] == 1.0


def test_the_markdown_report_and_text_output(tmp_path: Path) -> None:
    job = qdrant_migration(tmp_path)
    report = tmp_path / "report.md"
    result = run_cli("verify", str(job), "--report", str(report), "--queries", "5")
    assert result.code == 0, result.stderr
    assert result.stdout.startswith("verify verify-qdrant: pass (4 checks, 0 failed)")
    text = report.read_text()
    assert "### qmigrate verify `verify-qdrant`: ✅ pass" in text
    assert "| sample | ✅ pass |" in text


def test_apply_verify_and_bad_options(tmp_path: Path) -> None:
    job = qdrant_migration(tmp_path)
    again = run_cli("apply", str(job), "--verify", "--output", "json")
    assert again.code == 0, again.stderr
    assert again.json()["jobs"][0]["verify"]["ok"] is True
    bad = run_cli("verify", str(job), "--sample", "some")
    assert bad.code == 2 and "--sample some: expected a positive number or all" in bad.stderr


def test_verify_writes_nothing(tmp_path: Path) -> None:
    job = qdrant_migration(tmp_path)
    target = Path(yaml.safe_load(job.read_text())["target"]["path"])
    before = {p: p.stat().st_mtime_ns for p in target.rglob("*") if p.is_file()}
    assert verify(job).code == 0
    after = {p: p.stat().st_mtime_ns for p in target.rglob("*") if p.is_file()}
    assert {p: t for p, t in after.items() if p.name != ".lock"} == {
        p: t for p, t in before.items() if p.name != ".lock"
    }
