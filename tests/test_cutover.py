"""`qmigrate cutover` and `rollback`: the alias moves only after verify passes, in one
request; rollback points it back (or deletes an alias cutover created); the refusals.

One small JSONL job is applied into a local Qdrant directory once; each test works on its
own copy of that directory (data, checkpoints and all).
"""

from __future__ import annotations

import contextlib
import json
import random
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from qdrant_client import QdrantClient, models

from qmigrate import cli, engine, spec
from qmigrate.checkpoint import FileStore, Lease
from tests.servers.qdrant_grpc import running_both

ROWS = 30


def _job(directory: Path, target: Path, **target_keys: Any) -> Path:
    job = {
        "version": 1,
        "name": "zero-downtime",
        "source": {
            "type": "file",
            "path": str(directory / "data.jsonl"),
            "id_field": "id",
            "vectors": {"embedding": {"distance": "cosine"}},
        },
        "target": {"path": str(target), "collection": "products_v2", **target_keys},
        "mapping": {"vectors": {"embedding": ""}},
        "batch_size": 16,
    }
    path = target.parent / "job.yaml"
    path.write_text(yaml.safe_dump(job))
    return path


@pytest.fixture(scope="module")
def applied(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A local target directory the job was applied into (alias: products)."""
    directory = tmp_path_factory.mktemp("applied")
    rng = random.Random(1)
    with open(directory / "data.jsonl", "w") as handle:
        for i in range(ROWS):
            row = {"id": i, "embedding": [rng.uniform(-1, 1) for _ in range(4)], "n": i}
            handle.write(json.dumps(row) + "\n")
    job = _job(directory, directory / "qdrant", alias="products")
    assert cli.main(["apply", str(job)]) == 0
    return directory


@pytest.fixture
def job(applied: Path, tmp_path: Path) -> Path:
    """A job file of this test's own copy of the applied target."""
    shutil.copytree(applied / "qdrant", tmp_path / "qdrant")
    return _job(applied, tmp_path / "qdrant", alias="products")


@contextlib.contextmanager
def local(job: Path) -> Iterator[QdrantClient]:
    client = QdrantClient(path=str(job.parent / "qdrant"))
    try:
        yield client
    finally:
        client.close()


def alias_now(job: Path, name: str = "products") -> str | None:
    with local(job) as client:
        found = client.get_aliases().aliases
    return next((a.collection_name for a in found if a.alias_name == name), None)


def point_alias_at_v1(job: Path) -> None:
    """The state before a migration: readers use `products`, which names the old collection."""
    with local(job) as client:
        client.create_collection("products_v1", vectors_config={})
        client.update_collection_aliases(
            change_aliases_operations=[
                models.CreateAliasOperation(
                    create_alias=models.CreateAlias(
                        collection_name="products_v1", alias_name="products"
                    )
                )
            ]
        )


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = cli.main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_cutover_moves_the_alias_and_rollback_restores_it(
    job: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    point_alias_at_v1(job)
    code, out, err = run(capsys, "cutover", str(job))
    assert (code, err) == (0, "")
    assert "verify passed" in out and "now points at 'products_v2' (before: 'products_v1')" in out
    assert alias_now(job) == "products_v2"
    code, out, _ = run(capsys, "status", str(job))
    assert "last cutover: named 'products_v1' before" in out
    with local(job) as client:  # the old collection, gone: refused, the alias kept
        client.delete_collection("products_v1")
    code, _, err = run(capsys, "rollback", str(job))
    assert code == 1 and "that collection is gone: not rolling back" in err
    assert alias_now(job) == "products_v2"
    with local(job) as client:
        client.create_collection("products_v1", vectors_config={})
    code, out, err = run(capsys, "rollback", str(job))
    assert (code, err) == (0, "")
    assert "points at 'products_v1' again" in out
    assert alias_now(job) == "products_v1"


def test_an_alias_cutover_created_is_deleted_by_rollback(
    job: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert alias_now(job) is None
    code, out, _ = run(capsys, "cutover", str(job), "--output", "json")
    assert code == 0
    result = json.loads(out)
    assert (result["ok"], result["previous"], result["changed"]) == (True, None, True)
    assert result["verify"]["ok"] is True
    assert alias_now(job) == "products_v2"
    code, out, _ = run(capsys, "rollback", str(job))
    assert code == 0 and "is deleted" in out
    assert alias_now(job) is None
    # Nothing recorded any more: one line, exit 1.
    code, out, err = run(capsys, "rollback", str(job))
    assert code == 1 and out == ""
    assert err == "qmigrate: error: job 'zero-downtime' has no recorded cutover to roll back\n"


def test_a_failing_verify_leaves_the_alias_alone(
    job: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    point_alias_at_v1(job)
    with local(job) as client:  # the target changed after apply
        client.set_payload("products_v2", {"n": -1}, points=[5])
    code, out, err = run(capsys, "cutover", str(job))
    assert code == 3
    assert "sample  fail" in out and "point 5: payload 'n'" in out
    assert err.splitlines() == [
        "qmigrate: error: cutover of job 'zero-downtime': verify failed: "
        "alias 'products' left as it was (names 'products_v1')"
    ]
    assert alias_now(job) == "products_v1"
    assert run(capsys, "rollback", str(job))[0] == 1  # no cutover was recorded
    # --no-verify moves it all the same, and says verify did not run.
    code, out, _ = run(capsys, "cutover", str(job), "--no-verify")
    assert code == 0 and "verify skipped (--no-verify)" in out
    assert alias_now(job) == "products_v2"


def test_plan_and_status_show_where_the_alias_points(
    job: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    point_alias_at_v1(job)
    expected = "alias: 'products' names 'products_v1' now; cutover points it at 'products_v2'"
    code, out, _ = run(capsys, "plan", str(job))
    assert code == 0 and expected in out
    code, out, _ = run(capsys, "status", str(job))
    assert code == 0 and expected in out
    code, out, _ = run(capsys, "status", str(job), "--output", "json")
    assert json.loads(out)["jobs"][0]["alias"]["now"] == "products_v1"


def test_an_alias_that_is_a_collection_is_refused(
    job: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    taken = _job(job.parent.parent / "x", job.parent / "qdrant", alias="products_v2")
    code, out, err = run(capsys, "cutover", str(taken), "--no-verify")
    assert (code, out) == (1, "")
    assert err == (
        "qmigrate: error: cutover of job 'zero-downtime': target.alias 'products_v2' is the "
        "name of a collection, not of an alias\n"
    )


def test_a_cutover_while_the_job_is_applied_is_refused(
    job: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    point_alias_at_v1(job)
    loaded = spec.load(job, {})
    with engine.checkpoint_store(loaded) as store:  # an apply on another machine holds it
        store.save_lease(loaded.name, Lease("other pid 7 (ab12)", time.time() + 600, "other", 7))
    code, _, err = run(capsys, "cutover", str(job), "--no-verify")
    assert code == 1 and len(err.splitlines()) == 1
    assert err.startswith(
        "qmigrate: error: cutover refused: job 'zero-downtime' is in use by other pid 7 (ab12)"
    )
    assert "run it again once that run has finished" in err
    assert alias_now(job) == "products_v1"


def test_a_job_without_an_alias_is_refused(job: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plain = _job(job.parent.parent / "x", job.parent / "qdrant")
    code, _, err = run(capsys, "cutover", str(plain))
    assert code == 2 and "has no target.alias to cut over" in err


def test_the_record_outlives_a_reset_of_the_checkpoints(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "checkpoints.json")
    record = {"alias": "a", "previous": None, "collection": "c", "at": 1.0, "version": 1}
    store.save_cutover("job", record)
    store.delete("job")
    assert store.load_cutover("job") == record
    assert store.load_job("job") is None


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, int]]:
    with running_both() as (url, grpc_port, _store):
        yield url, grpc_port


@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_cutover_and_rollback_on_a_server(
    transport: str,
    applied: Path,
    tmp_path: Path,
    server: tuple[str, int],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The alias requests over REST (POST /collections/aliases, GET /aliases) and gRPC
    (UpdateAliases, ListAliases), against the stand-in that serves them as Qdrant does."""
    url, grpc_port = server
    alias, old, new = f"products_{transport}", f"v1_{transport}", f"v2_{transport}"
    client = QdrantClient(url=url, prefer_grpc=False)
    client.create_collection(old, vectors_config={})
    create = models.CreateAlias(collection_name=old, alias_name=alias)
    client.update_collection_aliases(
        change_aliases_operations=[models.CreateAliasOperation(create_alias=create)]
    )

    def now() -> str | None:
        found = client.get_aliases().aliases
        return next((a.collection_name for a in found if a.alias_name == alias), None)

    target = {"url": url, "grpc_port": grpc_port, "prefer_grpc": transport == "grpc"}
    job = _job(applied, tmp_path / "unused", alias=alias)
    document = yaml.safe_load(job.read_text())
    document["name"] = f"server-{transport}"
    document["target"] = {**target, "collection": new, "alias": alias}
    job.write_text(yaml.safe_dump(document))
    assert cli.main(["apply", str(job)]) == 0
    code, out, _ = run(capsys, "cutover", str(job))
    assert code == 0 and f"now points at '{new}' (before: '{old}')" in out, out
    assert now() == new
    code, out, _ = run(capsys, "rollback", str(job))
    assert code == 0 and now() == old
    client.close()
