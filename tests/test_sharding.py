"""`target.shard_key`: custom sharding on the Qdrant target.

Local mode has no shards (its `create_shard_key` raises NotImplementedError), so the requests
a server would get are recorded on a local-mode target made to act as a server
(`as_server`), and the REST and gRPC stand-ins, which keep the shard keys created and answer
an upsert to any other key as Qdrant does (400 / INVALID_ARGUMENT), take the real wire.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from qdrant_client import QdrantClient, models
from qdrant_client import grpc as pb

from qmigrate import cli, engine, spec, wire
from qmigrate.errors import QmigrateError
from qmigrate.target import QdrantTarget
from tests.servers.qdrant_grpc import running_both
from tests.servers.qdrant_rest import Store
from tests.test_target import Recorder

REGIONS = ["eu", "us", "eu", "ap"]  # of row i: REGIONS[i % 4]


class ShardRecorder(Recorder):
    """A Recorder that also records `create_shard_key`, answering as a server would: a key
    it was given before is "already exists" (Qdrant's 400)."""

    def __init__(self, client: QdrantClient, existing: tuple[Any, ...] = ()) -> None:
        super().__init__(client)
        self.keys = set(existing)

    def __getattr__(self, name: str) -> Any:
        if name != "create_shard_key":
            return super().__getattr__(name)

        def create(collection: str, key: Any) -> bool:
            self.calls.append((name, {"args": (collection, key)}))
            if key in self.keys:
                raise ValueError(f"Unexpected Response: 400 Shard key {key} already exists")
            self.keys.add(key)
            return True

        return create


def as_sharded_server(target: QdrantTarget, existing: tuple[Any, ...] = ()) -> ShardRecorder:
    recorder = ShardRecorder(target.client, existing)
    target.client = recorder  # type: ignore[assignment]
    target.connection.local = False
    return recorder


def rows_file(tmp_path: Path, count: int = 12, without_region: tuple[int, ...] = ()) -> Path:
    path = tmp_path / "rows.jsonl"
    rows = []
    for i in range(count):
        row: dict[str, Any] = {"id": i, "v": [1.0, float(i)]}
        if i not in without_region:
            row["region"] = REGIONS[i % 4]
        rows.append(row)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def job_document(rows: Path, shard_key: dict[str, Any] | None, **extra: Any) -> dict[str, Any]:
    target: dict[str, Any] = {"path": ":memory:", "collection": "c"}
    if shard_key is not None:
        target["shard_key"] = shard_key
    return {
        "version": 1,
        "name": "sharded",
        "source": {"type": "file", "path": str(rows), "vectors": {"v": {"distance": "dot"}}},
        "target": target,
        "batch_size": 8,
        **extra,
    }


def load(tmp_path: Path, document: dict[str, Any]) -> spec.Job:
    path = tmp_path / "job.yaml"
    path.write_text(json.dumps(document))
    return spec.load(path, {})


def data_calls(recorder: Recorder) -> list[tuple[str, dict[str, Any]]]:
    return [
        (n, c) for n, c in recorder.calls if not c["args"] or c["args"][0] != "_migration_offsets"
    ]


def upserts(recorder: Recorder) -> list[tuple[Any, list[Any]]]:
    """(shard key selector, IDs) of each data upsert, in order."""
    return [
        (c.get("shard_key_selector"), sorted(p.id for p in c["args"][1]))
        for n, c in data_calls(recorder)
        if n == "upsert"
    ]


# --- the requests sent --------------------------------------------------------------------


def test_a_fixed_key_creates_the_collection_and_the_key_before_any_point(tmp_path: Path) -> None:
    resolved = engine.resolve(load(tmp_path, job_document(rows_file(tmp_path), {"value": "eu"})))
    recorder = as_sharded_server(resolved.target)
    assert engine.apply(resolved).written == 12
    names = [n for n, _ in data_calls(recorder)]
    assert names[:2] == ["create_collection", "create_shard_key"]
    assert names.count("create_shard_key") == 1, "a key is created once per target"
    create = data_calls(recorder)[0][1]
    assert create["sharding_method"] == models.ShardingMethod.CUSTOM
    assert data_calls(recorder)[1][1]["args"] == ("c", "eu")
    sent = upserts(recorder)
    assert [key for key, _ in sent] == ["eu", "eu"]
    assert sorted(i for _, ids in sent for i in ids) == list(range(12))
    assert resolved.target.acknowledge_only is False, "several shards: every upsert waits"
    resolved.close()


def test_a_payload_field_routes_each_point_one_request_per_key(tmp_path: Path) -> None:
    document = job_document(rows_file(tmp_path), {"field": "region"}, batch_size=12)
    resolved = engine.resolve(load(tmp_path, document))
    recorder = as_sharded_server(resolved.target, existing=("us",))
    assert engine.apply(resolved).written == 12
    calls = data_calls(recorder)
    created = [c["args"][1] for n, c in calls if n == "create_shard_key"]
    assert created == ["eu", "us", "ap"], "'us' existed: asked for, and taken as done"
    first_upsert = [n for n, _ in calls].index("upsert")
    assert [n for n, _ in calls][first_upsert:].count("create_shard_key") == 0
    assert upserts(recorder) == [
        ("eu", [0, 2, 4, 6, 8, 10]),
        ("us", [1, 5, 9]),
        ("ap", [3, 7, 11]),
    ]
    resolved.close()


@pytest.mark.parametrize("action", ["dead_letter", "fail"])
def test_a_point_without_the_field_is_an_invalid_record(tmp_path: Path, action: str) -> None:
    dead = tmp_path / "dead.jsonl"
    document = job_document(
        rows_file(tmp_path, without_region=(5,)),
        {"field": "region"},
        on_invalid={"action": action, "path": str(dead)},
    )
    resolved = engine.resolve(load(tmp_path, document))
    recorder = as_sharded_server(resolved.target)
    if action == "fail":
        with pytest.raises(QmigrateError, match="payload field 'region' .* is missing"):
            engine.apply(resolved)
    else:
        summary = engine.apply(resolved)
        assert (summary.written, summary.invalid) == (11, 1)
        (line,) = dead.read_text().splitlines()
        assert "payload field 'region' (target.shard_key) is missing" in line
        assert 5 not in [i for _, ids in upserts(recorder) for i in ids]
    resolved.close()


# --- the refusal --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stand_in() -> Iterator[tuple[str, int, Store]]:
    with running_both() as both:
        yield both


@pytest.fixture
def server(stand_in: tuple[str, int, Store]) -> tuple[str, int]:
    return stand_in[0], stand_in[1]


def server_job(
    tmp_path: Path,
    server: tuple[str, int],
    grpc: bool,
    shard_key: dict[str, Any] | None,
    collection: str | None = None,
) -> Path:
    url, grpc_port = server
    rows = tmp_path / "rows.jsonl"
    document = job_document(rows if rows.exists() else rows_file(tmp_path), shard_key)
    collection = collection or f"s_{tmp_path.name[-24:]}"
    document["name"] = collection + ("_keyed" if shard_key else "")  # checkpoints of its own
    document["target"] = {
        "url": url,
        "grpc_port": grpc_port,
        "prefer_grpc": grpc,
        "collection": collection,
        **({"shard_key": shard_key} if shard_key else {}),
    }
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def refusals(path: Path, capsys: pytest.CaptureFixture[str]) -> list[str]:
    capsys.readouterr()
    cli.main(["plan", str(path), "--output", "json"])
    return list(json.loads(capsys.readouterr().out)["jobs"][0]["refusals"])


@pytest.mark.parametrize("grpc", [False, True], ids=["rest", "grpc"])
def test_through_the_stand_ins_every_upsert_names_its_created_key(
    tmp_path: Path,
    stand_in: tuple[str, int, Store],
    grpc: bool,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url, grpc_port, store = stand_in
    path = server_job(tmp_path, (url, grpc_port), grpc, {"field": "region"})
    before = len(store.data_upserts)
    assert cli.main(["apply", str(path)]) == 0
    waits = [wait for wait, _ in store.data_upserts[before:]]
    assert waits and all(waits), "custom sharding: every upsert waits (no acknowledge_only)"
    collection = f"s_{tmp_path.name[-24:]}"
    assert store.shard_keys[collection] == ["eu", "us", "ap"]
    keyed = [(key, ids) for name, key, ids in store.keyed_upserts if name == collection]
    assert keyed and all(key in ("eu", "us", "ap") for key, _ in keyed)
    assert sorted(i for _, ids in keyed for i in ids) == list(range(12))
    assert store.count(collection) == 12
    # Run again from the start: every key exists already (Qdrant's 400), which is no failure.
    document = yaml.safe_load(path.read_text())
    path.write_text(yaml.safe_dump({**document, "restart": "restart"}))
    assert cli.main(["apply", str(path)]) == 0
    assert store.shard_keys[collection] == ["eu", "us", "ap"]
    assert store.count(collection) == 12
    # plan says it; the job fits the collection it made
    capsys.readouterr()
    assert cli.main(["plan", str(path), "--output", "json"]) == 0
    plan = json.loads(capsys.readouterr().out)["jobs"][0]
    assert plan["target"]["sharding"].startswith("custom, shard key from payload field 'region'")
    assert plan["refusals"] == []


@pytest.mark.parametrize("grpc", [False, True], ids=["rest", "grpc"])
def test_a_shard_key_job_into_an_auto_sharded_collection_is_refused_and_the_reverse(
    tmp_path: Path, server: tuple[str, int], grpc: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    auto = server_job(tmp_path, server, grpc, None)
    assert cli.main(["apply", str(auto)]) == 0
    keyed = server_job(tmp_path, server, grpc, {"value": "eu"})
    (refused,) = refusals(keyed, capsys)
    assert refused.endswith(
        "is incompatible: it has auto sharding, and target.shard_key needs custom sharding "
        "(sharding_method: custom)"
    )
    assert cli.main(["apply", str(keyed)]) != 0

    custom_dir = tmp_path / "custom"
    custom_dir.mkdir()
    other = f"c_{tmp_path.name[-24:]}"
    custom = server_job(custom_dir, server, grpc, {"value": "eu"}, other)
    assert cli.main(["apply", str(custom)]) == 0
    plain = server_job(custom_dir, server, grpc, None, other)
    (refused,) = refusals(plain, capsys)
    assert refused.endswith(
        "is incompatible: it has custom sharding: set target.shard_key to say which key "
        "points go to"
    )


def test_an_upsert_to_a_key_not_created_is_answered_with_an_error(
    server: tuple[str, int],
) -> None:
    """The stand-in answers as Qdrant does, so a missing key creation would show."""
    url, _ = server
    client = QdrantClient(url=url, prefer_grpc=False)
    client.create_collection(
        "nokey",
        vectors_config=models.VectorParams(size=2, distance=models.Distance.DOT),
        sharding_method=models.ShardingMethod.CUSTOM,
    )
    point = models.PointStruct(id=1, vector=[1.0, 0.0])
    with pytest.raises(Exception, match="Shard key eu not found"):
        client.upsert("nokey", [point], shard_key_selector="eu")
    with pytest.raises(Exception, match="Shard key not specified"):
        client.upsert("nokey", [point])
    client.create_shard_key("nokey", "eu")
    with pytest.raises(Exception, match="already exists"):
        client.create_shard_key("nokey", "eu")
    client.upsert("nokey", [point], shard_key_selector="eu")
    client.close()


# --- the wire -----------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["eu", 7])
def test_both_encoders_carry_the_shard_key_selector(key: Any) -> None:
    points = [models.PointStruct(id=1, vector=[0.5, 0.25], payload={"region": "eu"})]
    request = pb.UpsertPoints.FromString(wire.grpc_upsert_request("c", points, True, shard_key=key))
    expected = pb.ShardKey(keyword=key) if isinstance(key, str) else pb.ShardKey(number=key)
    assert request.HasField("shard_key_selector")
    assert list(request.shard_key_selector.shard_keys) == [expected]
    assert len(request.points) == 1
    plain = pb.UpsertPoints.FromString(wire.grpc_upsert_request("c", points, True))
    assert not plain.HasField("shard_key_selector")
    body = json.loads(wire.rest_upsert_body(points, shard_key=key))
    assert models.PointsList.model_validate(body).shard_key == key
    assert "shard_key" not in json.loads(wire.rest_upsert_body(points))


# --- the job file -------------------------------------------------------------------------


def test_the_shard_key_is_one_of_value_or_field(tmp_path: Path) -> None:
    rows = rows_file(tmp_path)
    assert load(tmp_path, job_document(rows, {"value": 3})).target.shard_key == {"value": 3}
    for wrong in ({"value": "eu", "field": "region"}, {}, {"value": -1}, {"field": "a[]"}):
        with pytest.raises(QmigrateError, match="target.shard_key"):
            load(tmp_path, job_document(rows, wrong))


def test_a_changed_shard_key_is_a_changed_job(tmp_path: Path) -> None:
    rows = rows_file(tmp_path)
    plain = load(tmp_path, job_document(rows, None))
    eu = load(tmp_path, job_document(rows, {"value": "eu"}))
    us = load(tmp_path, job_document(rows, {"value": "us"}))
    assert "target.shard_key" not in plain.fingerprint_parts(), "other jobs keep theirs"
    assert eu.fingerprint_parts()["target.shard_key"] != us.fingerprint_parts()["target.shard_key"]
