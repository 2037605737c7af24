"""A Qdrant source with custom sharding: each point keeps its shard key in the target.

Local mode has no shard keys, so the source and the target are collections of the REST and
gRPC stand-ins, which keep the key each point was written under, list a collection's keys
(`GET /collections/{name}/shards`, gRPC `ListShardKeys`) and read one key's points when a
scroll names it, as Qdrant does.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from qdrant_client import QdrantClient, models

from qmigrate import cli
from tests.conftest import apply_and_kill, assert_same_points, scroll_all
from tests.servers.qdrant_grpc import serve_grpc
from tests.servers.qdrant_rest import Faults, Store, serve_rest

KEYS = ["eu", "us", 7]  # a shard key is a string or an unsigned integer
COUNT = 240


@pytest.fixture
def stand_in() -> Iterator[tuple[str, int, Store, Faults]]:
    store, faults = Store(), Faults()
    rest = serve_rest(store, 0, faults)
    server, grpc_port = serve_grpc(store)
    try:
        yield f"http://127.0.0.1:{rest.server_address[1]}", grpc_port, store, faults
    finally:
        server.stop(0)
        rest.shutdown()
        rest.server_close()
        store.local.close()


def sharded_source(url: str) -> dict[Any, Any]:
    """Collection "src": COUNT points, point i under KEYS[i % 3]; returns {id: key}."""
    client = QdrantClient(url=url, prefer_grpc=False)
    client.create_collection(
        "src",
        vectors_config=models.VectorParams(size=4, distance=models.Distance.DOT),
        sharding_method=models.ShardingMethod.CUSTOM,
    )
    for key in KEYS:
        client.create_shard_key("src", key)
    keys = {}
    for key_index, key in enumerate(KEYS):
        ids = range(key_index, COUNT, len(KEYS))
        points = [
            models.PointStruct(id=i, vector=[1.0, i / COUNT, 0.5, -0.25], payload={"n": i})
            for i in ids
        ]
        client.upsert("src", points, shard_key_selector=key)
        keys.update((i, key) for i in ids)
    client.close()
    return keys


def job(tmp_path: Path, url: str, grpc_port: int, grpc: bool, **extra: Any) -> Path:
    connection = {"url": url, "grpc_port": grpc_port, "prefer_grpc": grpc}
    document = {
        "version": 1,
        "name": "sharded",
        "source": {"type": "qdrant", "collection": "src", **connection},
        "target": {"collection": "dst", **connection},
        "batch_size": 16,
        "partitions": 4,
        **extra,
    }
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def points_by_key(store: Store, name: str) -> dict[Any, Any]:
    return dict(store.point_keys[name])


@pytest.mark.parametrize("grpc", [False, True], ids=["rest", "grpc"])
def test_each_point_keeps_its_source_shard_key(
    tmp_path: Path,
    stand_in: tuple[str, int, Store, Faults],
    grpc: bool,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url, grpc_port, store, _ = stand_in
    keys = sharded_source(url)
    path = job(tmp_path, url, grpc_port, grpc)
    capsys.readouterr()
    assert cli.main(["plan", str(path), "--output", "json"]) == 0
    plan = json.loads(capsys.readouterr().out)["jobs"][0]
    assert plan["refusals"] == []
    assert plan["target"]["sharding"] == (
        "custom, each point keeps its source shard key (the source holds 'eu', 'us', 7), "
        "each key created before its first point"
    )
    assert cli.main(["apply", str(path)]) == 0
    assert store.shard_keys["dst"] == KEYS
    assert points_by_key(store, "dst") == keys
    client = QdrantClient(url=url, prefer_grpc=False)
    source, target = scroll_all(client, "src"), scroll_all(client, "dst")
    client.close()
    assert_same_points(source, target)


def test_kill_then_resume_keeps_every_key_exact(
    tmp_path: Path, stand_in: tuple[str, int, Store, Faults]
) -> None:
    url, grpc_port, store, faults = stand_in
    keys = sharded_source(url)
    faults.latency = 0.05  # every write, so that the kill lands mid-run
    checkpoints = tmp_path / "checkpoints.json"
    path = job(
        tmp_path, url, grpc_port, False, checkpoint={"store": "file", "path": str(checkpoints)}
    )
    assert apply_and_kill(path, checkpoints, after_points=48), "apply finished before the kill"
    assert len(store.point_keys.get("dst", {})) < COUNT
    faults.latency = 0.0
    assert cli.main(["apply", str(path)]) == 0
    assert points_by_key(store, "dst") == keys
    assert store.count("dst") == COUNT


def test_keeping_the_keys_of_a_source_without_any_is_refused(
    tmp_path: Path, stand_in: tuple[str, int, Store, Faults], capsys: pytest.CaptureFixture[str]
) -> None:
    url, grpc_port, _, _ = stand_in
    client = QdrantClient(url=url, prefer_grpc=False)
    client.create_collection(
        "src", vectors_config=models.VectorParams(size=4, distance=models.Distance.COSINE)
    )
    client.upsert("src", [models.PointStruct(id=1, vector=[1.0, 0.0, 0.0, 0.0])])
    client.close()
    document = yaml.safe_load(job(tmp_path, url, grpc_port, False).read_text())
    document["target"]["shard_key"] = {"from_source": True}
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(document))
    capsys.readouterr()
    cli.main(["plan", str(path), "--output", "json"])
    assert json.loads(capsys.readouterr().out)["jobs"][0]["refusals"] == [
        "target.shard_key.from_source needs a source collection with custom sharding "
        "(a Qdrant server's); this source has none: set {value: KEY} or {field: PATH}"
    ]
    assert cli.main(["apply", str(path)]) != 0
