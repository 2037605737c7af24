"""A stand-in Qdrant gRPC endpoint beside the REST one (`qdrant_rest`), on the same store:
for transport tests of the gRPC path (no Qdrant server runs here), and, as
`python -m tests.servers.qdrant_grpc`, a server of local-mode data for bench/.

It answers the gRPC calls qmigrate's target and checkpoint store make. Kept collections
are qdrant-client local mode, so points written through it are real and can be compared;
the benchmark sink (`bench/sink.py`) serves it over a store that keeps only IDs.
"""

from __future__ import annotations

import argparse
import contextlib
import threading
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
from qdrant_client import grpc as pb
from qdrant_client import models
from qdrant_client.conversions.conversion import GrpcToRest, RestToGrpc

from tests.servers.qdrant_rest import (
    VERSION,
    AlreadyExists,
    RateLimited,
    Store,
    StrictRefused,
    _dump,
    serve_rest,
)

MAX_MESSAGE_BYTES = 64 * 1024 * 1024


def _completed() -> pb.UpdateResult:
    return pb.UpdateResult(operation_id=0, status=pb.UpdateStatus.Completed)


def _aliases(response: Any) -> Any:
    return pb.ListAliasesResponse(
        aliases=[
            pb.AliasDescription(alias_name=a.alias_name, collection_name=a.collection_name)
            for a in response.aliases
        ]
    )


def _strict_mode(config: Any) -> dict[str, Any]:
    return _dump(GrpcToRest.convert_strict_mode_config(config))


class Collections(pb.CollectionsServicer):
    def __init__(self, sink: Store) -> None:
        self.sink = sink

    def List(self, request: Any, context: Any) -> Any:
        with self.sink.lock:
            names = [c.name for c in self.sink.local.get_collections().collections]
        return pb.ListCollectionsResponse(
            collections=[pb.CollectionDescription(name=n) for n in names]
        )

    def CollectionExists(self, request: Any, context: Any) -> Any:
        exists = self.sink.exists(request.collection_name)
        return pb.CollectionExistsResponse(result=pb.CollectionExists(exists=exists))

    def Get(self, request: Any, context: Any) -> Any:
        if not self.sink.exists(request.collection_name):
            context.abort(grpc.StatusCode.NOT_FOUND, f"Collection {request.collection_name}")
        info = RestToGrpc.convert_collection_info(self.sink.info(request.collection_name))
        return pb.GetCollectionInfoResponse(result=info)

    def Create(self, request: Any, context: Any) -> Any:
        body: dict[str, Any] = {}
        if request.HasField("vectors_config"):
            body["vectors"] = _dump(GrpcToRest.convert_vectors_config(request.vectors_config))
        if request.HasField("sparse_vectors_config"):
            sparse = GrpcToRest.convert_sparse_vector_config(request.sparse_vectors_config)
            body["sparse_vectors"] = _dump(sparse)
        for name in ("shard_number", "replication_factor"):
            if request.HasField(name):
                body[name] = getattr(request, name)
        if request.HasField("sharding_method"):  # CreateCollection.sharding_method, field 15
            custom = request.sharding_method == pb.ShardingMethod.Custom
            body["sharding_method"] = "custom" if custom else "auto"
        if request.HasField("strict_mode_config"):  # CreateCollection field 17
            body["strict_mode_config"] = _strict_mode(request.strict_mode_config)
        try:
            self.sink.create(request.collection_name, body)
        except AlreadyExists as exc:
            context.abort(grpc.StatusCode.ALREADY_EXISTS, str(exc))
        return pb.CollectionOperationResponse(result=True)

    def CreateShardKey(self, request: Any, context: Any) -> Any:
        key = GrpcToRest.convert_shard_key(request.request.shard_key)
        try:
            self.sink.create_shard_key(request.collection_name, {"shard_key": key})
        except KeyError as exc:
            context.abort(grpc.StatusCode.NOT_FOUND, f"Collection {exc}")
        except ValueError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        return pb.CreateShardKeyResponse(result=True)

    def ListShardKeys(self, request: Any, context: Any) -> Any:
        keys = self.sink.list_shard_keys(request.collection_name) or []
        return pb.ListShardKeysResponse(
            shard_keys=[pb.ShardKeyDescription(key=RestToGrpc.convert_shard_key(k)) for k in keys]
        )

    def Update(self, request: Any, context: Any) -> Any:
        body: dict[str, Any] = {}
        if request.HasField("hnsw_config"):
            body["hnsw_config"] = _dump(GrpcToRest.convert_hnsw_config_diff(request.hnsw_config))
        if request.HasField("strict_mode_config"):  # UpdateCollection field 9
            body["strict_mode_config"] = _strict_mode(request.strict_mode_config)
        self.sink.update(request.collection_name, body)
        return pb.CollectionOperationResponse(result=True)

    def Delete(self, request: Any, context: Any) -> Any:
        self.sink.delete(request.collection_name)
        return pb.CollectionOperationResponse(result=True)

    def UpdateAliases(self, request: Any, context: Any) -> Any:
        """ChangeAliases: every action applied, or none (as Qdrant does)."""
        actions = [GrpcToRest.convert_alias_operations(a) for a in request.actions]
        try:
            self.sink.call("update_collection_aliases", actions)
        except ValueError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        return pb.CollectionOperationResponse(result=True)

    def ListAliases(self, request: Any, context: Any) -> Any:
        return _aliases(self.sink.call("get_aliases"))

    def ListCollectionAliases(self, request: Any, context: Any) -> Any:
        return _aliases(self.sink.call("get_collection_aliases", request.collection_name))


class Points(pb.PointsServicer):
    def __init__(self, sink: Store) -> None:
        self.sink = sink

    def Upsert(self, request: Any, context: Any) -> Any:
        name = request.collection_name
        ids = [p.id.num if p.id.HasField("num") else p.id.uuid for p in request.points]
        self.sink.note_upsert(name, "grpc", request.wait, ids)
        selector = (  # UpsertPoints.shard_key_selector, field 5
            GrpcToRest.convert_shard_key_selector(request.shard_key_selector)
            if request.HasField("shard_key_selector")
            else None
        )
        try:
            self.sink.check_shard_key(name, selector, ids)
            self.sink.enforce_strict_mode(name, len(ids))
        except StrictRefused as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except RateLimited as exc:
            if exc.retry_after is not None:
                context.set_trailing_metadata((("retry-after", str(exc.retry_after)),))
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc))
        except ValueError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        if self.sink.keeps(name):
            points = [GrpcToRest.convert_point_struct(p) for p in request.points]
            mode = (  # UpsertPoints.update_mode, field 8 (Qdrant 1.17+)
                GrpcToRest.convert_update_mode(request.update_mode)
                if request.HasField("update_mode")
                else None
            )
            self.sink.call("upsert", name, points, update_mode=mode)
            with self.sink.lock:
                self.sink.writes[name] = self.sink.writes.get(name, 0) + len(points)
        else:
            self.sink.upsert_ids(name, ids)
        return pb.PointsOperationResponse(result=_completed())

    def Count(self, request: Any, context: Any) -> Any:
        count = self.sink.count(request.collection_name)
        return pb.CountResponse(result=pb.CountResult(count=count))

    def CreateFieldIndex(self, request: Any, context: Any) -> Any:
        return pb.PointsOperationResponse(result=_completed())

    def Get(self, request: Any, context: Any) -> Any:
        name = request.collection_name
        ids = [GrpcToRest.convert_point_id(i) for i in request.ids]
        if self.sink.keeps(name):
            vectors = (  # WithVectorsSelector: unset means none, as in Qdrant
                GrpcToRest.convert_with_vectors_selector(request.with_vectors)
                if request.HasField("with_vectors")
                else False
            )
            found = self.sink.call("retrieve", name, ids, with_payload=True, with_vectors=vectors)
            return pb.GetResponse(result=[RestToGrpc.convert_record(r) for r in found])
        with self.sink.lock:
            present = self.sink.ids.get(name, set())
            found = [models.Record(id=i, payload={}) for i in ids if i in present]
        return pb.GetResponse(result=[RestToGrpc.convert_record(r) for r in found])

    def Scroll(self, request: Any, context: Any) -> Any:
        self.sink.note_scroll("grpc")
        flt = GrpcToRest.convert_filter(request.filter) if request.HasField("filter") else None
        offset = GrpcToRest.convert_point_id(request.offset) if request.HasField("offset") else None
        selector = (  # ScrollPoints.shard_key_selector, field 8
            GrpcToRest.convert_shard_key_selector(request.shard_key_selector)
            if request.HasField("shard_key_selector")
            else None
        )
        try:
            flt = self.sink.keyed_filter(request.collection_name, selector, flt)
        except ValueError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        points, next_offset = self.sink.call(
            "scroll",
            request.collection_name,
            scroll_filter=flt,
            limit=request.limit or 10,
            offset=offset,
            with_payload=True,
            with_vectors=(
                GrpcToRest.convert_with_vectors_selector(request.with_vectors)
                if request.HasField("with_vectors")
                else False
            ),
        )
        response = pb.ScrollResponse(result=[RestToGrpc.convert_record(p) for p in points])
        if next_offset is not None:
            response.next_page_offset.CopyFrom(RestToGrpc.convert_extended_point_id(next_offset))
        return response

    def Delete(self, request: Any, context: Any) -> Any:
        selector = GrpcToRest.convert_points_selector(request.points)
        self.sink.note_delete(request.collection_name, request.wait, selector)
        self.sink.call("delete", request.collection_name, points_selector=selector)
        return pb.PointsOperationResponse(result=_completed())


class Health(pb.QdrantServicer):
    def HealthCheck(self, request: Any, context: Any) -> Any:
        return pb.HealthCheckReply(title="qmigrate stand-in", version=VERSION)


def serve_grpc(store: Store, port: int = 0) -> tuple[grpc.Server, int]:
    """Serve `store` over gRPC on loopback; (server, port). `stop(0)` ends it."""
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=8),
        options=[("grpc.max_receive_message_length", MAX_MESSAGE_BYTES)],
    )
    pb.add_CollectionsServicer_to_server(Collections(store), server)
    pb.add_PointsServicer_to_server(Points(store), server)
    pb.add_QdrantServicer_to_server(Health(), server)
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    return server, bound


@contextlib.contextmanager
def running_both(path: str = ":memory:") -> Iterator[tuple[str, int, Store]]:
    """(REST url, gRPC port, store) of a stand-in speaking both, until the block ends; its
    collections are those of the local-mode directory `path`."""
    store = Store(path)
    rest = serve_rest(store)
    server, port = serve_grpc(store)
    try:
        yield f"http://127.0.0.1:{rest.server_address[1]}", port, store
    finally:
        server.stop(0)
        rest.shutdown()
        rest.server_close()
        store.local.close()


def main() -> None:
    """Both protocols over a local-mode directory, until killed (for bench/)."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--path", required=True, help="local-mode directory")
    parser.add_argument("--rest-port", type=int, required=True)
    parser.add_argument("--grpc-port", type=int, required=True)
    args = parser.parse_args()
    store = Store(args.path)
    rest = serve_rest(store, args.rest_port)
    grpc_server, _ = serve_grpc(store, args.grpc_port)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        grpc_server.stop(0)
        rest.shutdown()


if __name__ == "__main__":
    main()
