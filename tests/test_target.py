"""The Qdrant target: layout, compatibility, and what it asks a server for.

Local mode ignores shards, replication, payload indexes and HNSW settings, so those
requests are checked by recording what the target asks the (real, local-mode) client.
"""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from qdrant_client import QdrantClient, models

from qmigrate import engine, spec
from qmigrate.collection_layout import target_layout
from qmigrate.errors import QmigrateError
from qmigrate.records import SourceInfo, VectorField
from qmigrate.spec import MappingSpec, TargetSpec
from qmigrate.target import QdrantTarget
from tests.servers.process import free_port
from tests.servers.qdrant_grpc import running_both
from tests.servers.qdrant_rest import running

INFO = SourceInfo(
    count=3,
    vectors=[
        VectorField("dense", "dense", 4, "Cosine", {"on_disk": False}),
        VectorField("text", "sparse", options={"modifier": "idf"}),
        VectorField("late", "multi", 2, "Dot"),
    ],
    collection_settings={
        "hnsw_config": {"m": 32, "ef_construct": 200},
        "quantization_config": {"scalar": {"type": "int8", "always_ram": True}},
        "shard_number": 3,
        "replication_factor": 2,
    },
)


class Recorder:
    """Passes calls through to a real client and remembers the ones that change settings."""

    RECORDED = ("create_collection", "update_collection", "create_payload_index", "upsert")

    def __init__(self, client: QdrantClient, fail_upserts: bool = False) -> None:
        self.client = client
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.fail_upserts = fail_upserts
        self.hnsw_m: int | None = None  # what a server would now report; local mode keeps none

    def get_collection(self, name: str) -> models.CollectionInfo:
        info = self.client.get_collection(name)
        if self.hnsw_m is not None:
            info.config.hnsw_config.m = self.hnsw_m
        return info

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.client, name)
        if name not in self.RECORDED:
            return method

        def record(*args: Any, **kwargs: Any) -> Any:
            self.calls.append((name, {"args": args, **kwargs}))
            if name == "update_collection":
                self.hnsw_m = kwargs["hnsw_config"].m
            if name == "upsert" and self.fail_upserts and args and args[0] != "_migration_offsets":
                raise ValueError("disk full")
            return method(*args, **kwargs)

        return record

    @property
    def _client(self) -> Recorder:
        """The local engine, which the target hands its data upserts: recorded too."""
        engine = Recorder(self.client._client, self.fail_upserts)
        engine.calls = self.calls
        return engine

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]


def as_server(target: QdrantTarget, fail_upserts: bool = False) -> Recorder:
    """Make a local-mode target behave as if it were talking to a server, and record it."""
    recorder = Recorder(target.client, fail_upserts)
    target.client = recorder  # type: ignore[assignment]
    target.connection.local = False
    return recorder


def test_layout_renames_and_applies_overrides() -> None:
    target = TargetSpec(
        collection="c",
        path=":memory:",
        vectors={"main": {"size": 4, "distance": "dot", "on_disk": True, "datatype": "float16"}},
        sparse_vectors={"text": {"modifier": "none"}},
    )
    layout = target_layout(INFO, MappingSpec(vectors={"dense": "main"}), target)
    assert set(layout) == {"main", "text", "late"}
    assert layout["main"].distance == "Dot"
    assert layout["main"].options == {"on_disk": True, "datatype": "float16"}
    assert layout["text"].options == {"modifier": "none"}


@pytest.mark.parametrize(
    ("mapping", "target", "message"),
    [
        (
            MappingSpec(vectors={"nope": "x"}),
            {},
            "mapping.vectors.nope: the source has no vector 'nope'",
        ),
        (MappingSpec(vectors={"dense": "late"}), {}, "two source vectors map to 'late'"),
        (MappingSpec(), {"vectors": {"text": {"size": 3}}}, "target.vectors.text: no such vector"),
        (MappingSpec(vectors={"dense": ""}), {}, "the unnamed vector cannot sit beside named"),
    ],
)
def test_layout_errors_name_the_key(mapping: MappingSpec, target: dict, message: str) -> None:
    with pytest.raises(QmigrateError, match=message):
        target_layout(INFO, mapping, TargetSpec(collection="c", path=":memory:", **target))


def test_missing_size_asks_for_an_override() -> None:
    info = SourceInfo(count=0, vectors=[VectorField("", "dense", None, "Cosine")])
    with pytest.raises(QmigrateError, match=r'set target.vectors."".size'):
        target_layout(info, MappingSpec(), TargetSpec(collection="c", path=":memory:"))


def test_server_create_carries_source_settings_and_job_overrides() -> None:
    spec_ = TargetSpec(
        collection="c",
        path=":memory:",
        shards=6,
        on_disk_payload=True,
        hnsw={"ef_construct": 400},
        vectors={"dense": {"on_disk": True}},
    )
    target = QdrantTarget(spec_)
    recorder = as_server(target)
    layout = target_layout(INFO, MappingSpec(), spec_)
    target.create(layout, INFO)
    ((name, call),) = recorder.calls
    assert name == "create_collection"
    assert call["shard_number"] == 6, "the job's shards win over the source's 3"
    assert call["replication_factor"] == 2
    assert call["on_disk_payload"] is True
    assert call["hnsw_config"] == models.HnswConfigDiff(ef_construct=400)
    assert call["quantization_config"] == models.ScalarQuantization(
        scalar=models.ScalarQuantizationConfig(type=models.ScalarType.INT8, always_ram=True)
    )
    dense = call["vectors_config"]["dense"]
    assert (dense.size, dense.distance, dense.on_disk) == (4, models.Distance.COSINE, True)
    late = call["vectors_config"]["late"]
    assert late.multivector_config.comparator == models.MultiVectorComparator.MAX_SIM
    assert call["sparse_vectors_config"]["text"].modifier == models.Modifier.IDF
    target.close()


def test_local_create_leaves_out_shards_and_replicas() -> None:
    target = QdrantTarget(TargetSpec(collection="c", path=":memory:"))
    arguments = target.create_arguments(target_layout(INFO, MappingSpec(), target.spec), INFO)
    assert "shard_number" not in arguments and "replication_factor" not in arguments
    target.create(target_layout(INFO, MappingSpec(), target.spec), INFO)
    info = target.existing()
    assert info is not None
    assert target.mismatches(info, target_layout(INFO, MappingSpec(), target.spec)) == []
    target.close()


def test_mismatches_name_each_problem() -> None:
    target = QdrantTarget(TargetSpec(collection="c", path=":memory:"))
    target.client.create_collection(
        "c",
        vectors_config={
            "dense": models.VectorParams(size=4, distance=models.Distance.COSINE),
            "late": models.VectorParams(size=2, distance=models.Distance.DOT),
        },
        sparse_vectors_config={"text": models.SparseVectorParams()},
    )
    problems = target.mismatches(target.existing(), target_layout(INFO, MappingSpec(), target.spec))
    assert problems == [
        "sparse vector 'text' has modifier none, the job wants idf",
        "vector 'late' is a single vector, the source has a multi-vector",
    ]
    target.close()


# --- requests made during apply -------------------------------------------------------


def file_job(tmp_path: Path, **target: Any) -> spec.Job:
    rows = [{"id": i, "v": [1.0, float(i)], "category": "a"} for i in range(30)]
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    document = {
        "version": 1,
        "name": "requests",
        "source": {
            "type": "file",
            "path": str(tmp_path / "rows.jsonl"),
            "vectors": {"v": {"distance": "euclid"}},
        },
        "target": {"path": ":memory:", "collection": "c", **target},
        "batch_size": 10,
    }
    path = tmp_path / "job.yaml"
    path.write_text(json.dumps(document))
    return spec.load(path, {})


@pytest.mark.filterwarnings("ignore:Payload indexes have no effect")
def test_payload_indexes_come_before_data_and_bulk_load_restores_m(tmp_path: Path) -> None:
    job = file_job(tmp_path, bulk_load=True, payload_indexes={"category": "keyword"})
    resolved = engine.resolve(job)
    recorder = as_server(resolved.target)
    summary = engine.apply(resolved)
    assert summary.written == 30
    names = [n for n, c in recorder.calls if not c["args"] or c["args"][0] != "_migration_offsets"]
    first_data = names.index("upsert")
    assert names[:first_data] == ["create_collection", "create_payload_index", "update_collection"]
    index_call = recorder.calls[names.index("create_payload_index")][1]
    assert index_call["field_name"] == "category"
    assert index_call["field_schema"] == models.PayloadSchemaType.KEYWORD
    updates = [c for n, c in recorder.calls if n == "update_collection"]
    assert [u["hnsw_config"].m for u in updates] == [0, 16]
    assert names[-1] == "update_collection", "indexing comes back after the last write"
    resolved.close()


@pytest.mark.filterwarnings("ignore:Payload indexes have no effect")
def test_tenant_and_principal_indexes_are_created_with_their_flags(tmp_path: Path) -> None:
    indexes = {
        "category": "keyword",
        "tenant": {"type": "keyword", "is_tenant": True},
        "created": {"type": "datetime", "is_principal": True},
    }
    resolved = engine.resolve(file_job(tmp_path, payload_indexes=indexes))
    recorder = as_server(resolved.target)
    engine.apply(resolved)
    sent = {
        c["field_name"]: c["field_schema"] for n, c in recorder.calls if n == "create_payload_index"
    }
    assert sent == {
        "category": models.PayloadSchemaType.KEYWORD,
        "tenant": models.KeywordIndexParams(type="keyword", is_tenant=True),
        "created": models.DatetimeIndexParams(type="datetime", is_principal=True),
    }
    resolved.close()


def test_a_flag_the_index_type_does_not_take_is_refused(tmp_path: Path) -> None:
    with pytest.raises(QmigrateError, match="payload_indexes.n"):
        file_job(tmp_path, payload_indexes={"n": {"type": "float", "is_tenant": True}})


def test_memory_tiers_are_passed_to_create_as_written(tmp_path: Path) -> None:
    job = file_job(
        tmp_path,
        vectors={"v": {"memory": "cached"}},
        payload_storage={"memory": "cold"},
        id_tracker={"memory": "pinned"},
    )
    resolved = engine.resolve(job, read_only=True)
    arguments = resolved.target.create_arguments(resolved.layout, resolved.info)
    assert arguments["vectors_config"]["v"].memory == models.Memory.CACHED
    assert arguments["payload"] == {"memory": "cold"}
    assert arguments["id_tracker"] == {"memory": "pinned"}
    resolved.close()
    summary = engine.apply(engine.resolve(job))  # local mode takes them, and ignores them
    assert summary.written == 30


def test_bulk_load_restores_indexing_even_when_the_job_fails(tmp_path: Path) -> None:
    resolved = engine.resolve(file_job(tmp_path, bulk_load=True))
    recorder = as_server(resolved.target, fail_upserts=True)
    with pytest.raises(QmigrateError, match="writing to the target failed"):
        engine.apply(resolved)
    updates = [c["hnsw_config"].m for n, c in recorder.calls if n == "update_collection"]
    assert updates == [0, 16]
    resolved.close()


def test_a_bulk_load_killed_before_restoring_is_restored_on_the_next_run(tmp_path: Path) -> None:
    job = file_job(tmp_path, bulk_load=True, path=str(tmp_path / "target"))
    resolved = engine.resolve(job)
    recorder = as_server(resolved.target)
    engine.apply(resolved)
    recorder.hnsw_m = 0  # as if killed after the last page, before m came back
    resolved.close()

    resolved = engine.resolve(job)
    recorder = as_server(resolved.target)
    recorder.hnsw_m = 0
    assert engine.apply(resolved).status == "already done"
    assert [c["hnsw_config"].m for n, c in recorder.calls if n == "update_collection"] == [16]
    resolved.close()


def test_a_bulk_load_started_on_m_0_restores_the_default_not_0(tmp_path: Path) -> None:
    resolved = engine.resolve(file_job(tmp_path, bulk_load=True))
    recorder = as_server(resolved.target)
    recorder.hnsw_m = 0  # left behind by a run whose checkpoints were reset
    engine.apply(resolved)
    assert [c["hnsw_config"].m for n, c in recorder.calls if n == "update_collection"] == [0, 16]
    resolved.close()


class _UpsertRecorder(BaseHTTPRequestHandler):
    """A stand-in Qdrant REST endpoint (transport test): answers the connection check and
    records the size and points of every upsert."""

    protocol_version = "HTTP/1.1"
    upserts: list[tuple[int, int]] = []

    def _reply(self, result: Any) -> None:
        body = json.dumps(
            {"result": result, "status": "ok", "time": 0} if self.path != "/" else result
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path == "/":
            self._reply({"title": "stand-in", "version": qdrant_client_version()})
        elif self.path.endswith("/exists"):  # the first write reads strict mode: none here
            self._reply({"exists": False})
        else:
            self._reply({"collections": []})

    def do_PUT(self) -> None:
        raw = self.rfile.read(int(self.headers["Content-Length"]))
        self.upserts.append((len(raw), len(json.loads(raw)["points"])))
        self._reply({"operation_id": 0, "status": "completed"})

    def log_message(self, *args: Any) -> None:
        pass


def qdrant_client_version() -> str:
    from importlib.metadata import version

    return version("qdrant-client")


def test_a_batch_too_large_for_one_request_is_split(monkeypatch: pytest.MonkeyPatch) -> None:
    import threading
    from http.server import ThreadingHTTPServer

    monkeypatch.setattr("qmigrate.target.MAX_REQUEST_BYTES", 1_000_000)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _UpsertRecorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        target = QdrantTarget(TargetSpec(collection="wide", url=url))
        points = [
            models.PointStruct.model_construct(id=i, vector=[0.123456] * 3072, payload={"i": i})
            for i in range(64)
        ]
        target.upsert(points)  # about 2.7 MB as JSON
        target.close()
    finally:
        server.shutdown()
        server.server_close()
    sizes = [size for size, _ in _UpsertRecorder.upserts]
    assert len(sizes) > 1 and max(sizes) <= 1_000_000, sizes
    assert sum(count for _, count in _UpsertRecorder.upserts) == 64


def mapped_points() -> list[models.PointStruct]:
    """Points as the mapper hands them on (float32 arrays), of every kind of vector."""
    from qmigrate.mapping import Mapper
    from qmigrate.records import Record, SparseVector

    layout = target_layout(INFO, MappingSpec(), TargetSpec(collection="c"))
    mapper = Mapper(MappingSpec(), layout)
    rng = np.random.default_rng(3)
    return [
        mapper.to_point(
            Record(
                i,
                {
                    "dense": rng.standard_normal(4).astype(np.float32),
                    "text": SparseVector([i, i + 7], [0.5, 1.5]),
                    "late": rng.standard_normal((2, 2)).tolist(),
                },
                {"i": i, "tags": ["a", "b"], "nested": {"x": 1.5}},
            )
        )
        for i in range(20)
    ]


def assert_stored(store: Any, collection: str, sent: list[models.PointStruct]) -> None:
    found = {
        p.id: p for p in store.call("retrieve", collection, [p.id for p in sent], with_vectors=True)
    }
    assert sorted(found) == sorted(p.id for p in sent)
    for point in sent:
        got = found[point.id]
        assert got.payload == point.payload
        want = point.vector
        dense = np.asarray(want["dense"], dtype=np.float64)
        assert got.vector["dense"] == pytest.approx(
            (dense / np.linalg.norm(dense)).tolist(), abs=1e-6
        )
        assert np.asarray(got.vector["late"]).tolist() == np.asarray(want["late"]).tolist()
        assert got.vector["text"].indices == want["text"].indices
        assert got.vector["text"].values == want["text"].values


def write_through(spec: TargetSpec, store: Any) -> tuple[str, str]:
    """Create the collection, upsert `mapped_points` once and check they arrived whole;
    (the transport the target named, the protocol the one upsert took)."""
    target = QdrantTarget(spec)
    transport = target.connection.transport
    target.create(target_layout(INFO, MappingSpec(), TargetSpec(collection="c")), INFO)
    sent = mapped_points()
    target.upsert(sent)
    target.close()
    assert_stored(store, "c", sent)
    (protocol,) = [name for name, count in store.upserts.items() if count == 1]
    assert sum(store.upserts.values()) == 1
    return transport, protocol


def test_grpc_is_chosen_where_the_server_offers_it() -> None:
    """The default: the hand-encoded gRPC upsert reaches a gRPC server whole."""
    with running_both() as (url, grpc_port, store):
        spec = TargetSpec(collection="c", url=url, grpc_port=grpc_port)
        assert write_through(spec, store) == ("gRPC", "grpc")


def test_rest_when_the_server_offers_no_grpc() -> None:
    with running() as (url, store, _faults):
        port = free_port()
        spec = TargetSpec(collection="c", url=url, grpc_port=port)
        fallback = f"REST (no gRPC on port {port}: UNAVAILABLE)"
        assert write_through(spec, store) == (fallback, "rest")


def test_prefer_grpc_false_forces_rest() -> None:
    with running_both() as (url, grpc_port, store):
        spec = TargetSpec(collection="c", url=url, grpc_port=grpc_port, prefer_grpc=False)
        assert write_through(spec, store) == ("REST", "rest")
