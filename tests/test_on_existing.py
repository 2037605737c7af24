"""`target.on_existing: keep`: a point the application wrote into the target before the
backfill reached it survives the backfill unchanged, in local mode and through the REST and
gRPC stand-ins (which honour Qdrant's `update_mode: insert_only` as Qdrant 1.17+ does)."""

from __future__ import annotations

import contextlib
import json
import random
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from qdrant_client import QdrantClient, models
from qdrant_client import grpc as pb

from qmigrate import cli, on_existing, wire
from qmigrate import target as target_module
from tests.conftest import make_qdrant_collection
from tests.servers.qdrant_grpc import running_both

ROWS = 40
APPLICATION = {"n": -1, "written_by": "application"}  # newer than the source's point 7


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("source") / "data.jsonl"
    rng = random.Random(2)
    with open(path, "w") as handle:
        for i in range(ROWS):
            row = {"id": i, "embedding": [rng.uniform(-1, 1) for _ in range(4)], "n": i}
            handle.write(json.dumps(row) + "\n")
    return path


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, int]]:
    with running_both() as (url, grpc_port, _store):
        yield url, grpc_port


@contextlib.contextmanager
def client_of(target: dict[str, Any]) -> Iterator[QdrantClient]:
    if "path" in target:
        client = QdrantClient(path=target["path"])
    else:
        client = QdrantClient(url=target["url"], prefer_grpc=False)
    try:
        yield client
    finally:
        client.close()


def target_of(kind: str, tmp_path: Path, server: tuple[str, int]) -> dict[str, Any]:
    if kind == "local":
        return {"path": str(tmp_path / "qdrant")}
    url, grpc_port = server
    return {"url": url, "grpc_port": grpc_port, "prefer_grpc": kind == "grpc"}


def backfill(source: Path, tmp_path: Path, target: dict[str, Any], keep: bool) -> dict[Any, Any]:
    """The application wrote point 7 into the new collection; then the job backfills it.
    Returns every point's payload afterwards."""
    collection = f"keep_{tmp_path.name[-24:]}"
    with client_of(target) as client:
        client.create_collection(
            collection, vectors_config=models.VectorParams(size=4, distance=models.Distance.COSINE)
        )
        client.upsert(
            collection, [models.PointStruct(id=7, vector=[1, 0, 0, 0], payload=APPLICATION)]
        )
    job = {
        "version": 1,
        "name": collection,
        "source": {
            "type": "file",
            "path": str(source),
            "id_field": "id",
            "vectors": {"embedding": {"distance": "cosine"}},
        },
        "target": {"collection": collection, **target, **({"on_existing": "keep"} if keep else {})},
        "mapping": {"vectors": {"embedding": ""}, "id": {"keep_original_as": None}},
        "batch_size": 16,
    }
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(job))
    assert cli.main(["apply", str(path)]) == 0
    with client_of(target) as client:
        points, _ = client.scroll(collection, limit=ROWS + 10, with_payload=True)
    return {p.id: p.payload for p in points}


@pytest.mark.parametrize("kind", ["local", "rest", "grpc"])
def test_a_point_the_application_wrote_survives_the_backfill(
    kind: str, source: Path, tmp_path: Path, server: tuple[str, int]
) -> None:
    payloads = backfill(source, tmp_path, target_of(kind, tmp_path, server), keep=True)
    assert len(payloads) == ROWS
    assert payloads[7] == APPLICATION
    assert payloads[8] == {"n": 8}


def test_local_mode_without_update_mode_leaves_held_ids_out(
    source: Path, tmp_path: Path, server: tuple[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An older qdrant-client's local mode has no update_mode: the IDs it holds are left out."""
    monkeypatch.setattr(target_module, "LOCAL_UPDATE_MODE", False)
    payloads = backfill(source, tmp_path, target_of("local", tmp_path, server), keep=True)
    assert len(payloads) == ROWS and payloads[7] == APPLICATION


def test_overwrite_replaces_it(source: Path, tmp_path: Path, server: tuple[str, int]) -> None:
    payloads = backfill(source, tmp_path, target_of("local", tmp_path, server), keep=False)
    assert payloads[7] == {"n": 7}


def test_plan_says_how_existing_points_are_kept(
    source: Path, tmp_path: Path, server: tuple[str, int], capsys: pytest.CaptureFixture[str]
) -> None:
    backfill(source, tmp_path, target_of("grpc", tmp_path, server), keep=True)
    capsys.readouterr()
    assert cli.main(["plan", str(tmp_path / "job.yaml"), "--output", "json"]) == 0
    target = json.loads(capsys.readouterr().out)["jobs"][0]["target"]
    assert target["on_existing"].startswith("keep: a point the collection holds is left")
    assert "update_mode insert_only on every write (Qdrant 1.17+)" in target["on_existing"]


def test_the_encoders_ask_for_insert_only() -> None:
    points = [models.PointStruct(id=1, vector=[0.5, 0.25], payload={"a": 1})]
    request = pb.UpsertPoints.FromString(wire.grpc_upsert_request("c", points, True, True))
    assert request.HasField("update_mode") and request.update_mode == pb.UpdateMode.InsertOnly
    plain = pb.UpsertPoints.FromString(wire.grpc_upsert_request("c", points, True))
    assert not plain.HasField("update_mode")
    body = json.loads(wire.rest_upsert_body(points, insert_only=True))
    assert models.PointsList.model_validate(body).update_mode == models.UpdateMode.INSERT_ONLY
    assert "update_mode" not in json.loads(wire.rest_upsert_body(points))


def test_a_server_before_insert_only_is_refused() -> None:
    def target(version: str) -> Any:
        info = SimpleNamespace(version=version)
        return SimpleNamespace(
            insert_only=True,
            connection=SimpleNamespace(local=False, lock=contextlib.nullcontext()),
            client=SimpleNamespace(info=lambda: info),
        )

    assert on_existing.refusal(target("1.17.0")) is None
    assert on_existing.refusal(target("1.16.3")) == (
        "target.on_existing: keep needs Qdrant 1.17 or later (insert-only writes); "
        "the server runs 1.16.3: upgrade it, or use overwrite"
    )


def test_the_count_check_allows_what_the_application_added(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The application added a point to both ends after the backfill: the target holds one
    point more than the job wrote, the source one record more than it read. With keep that
    is a note (sync catches up), not a failed count check."""
    make_qdrant_collection(tmp_path / "source", count=20, named=False, size=4)
    job = {
        "version": 1,
        "name": "added",
        "source": {"type": "qdrant", "path": str(tmp_path / "source"), "collection": "docs"},
        "target": {"path": str(tmp_path / "target"), "collection": "added", "on_existing": "keep"},
    }
    job_file = tmp_path / "job.yaml"
    job_file.write_text(yaml.safe_dump(job))
    assert cli.main(["apply", str(job_file)]) == 0
    added = models.PointStruct(id=10**6, vector=[0.0, 1.0, 0.0, 0.0])
    for path, collection in ((tmp_path / "source", "docs"), (tmp_path / "target", "added")):
        with client_of({"path": str(path)}) as client:
            client.upsert(collection, [added])
    capsys.readouterr()
    assert cli.main(["apply", str(job_file)]) == 0
    out = capsys.readouterr().out
    assert "the source holds 21 records now, the job read 20" in out
    assert "`qmigrate sync` writes what changed since" in out
