"""A Qdrant stand-in on loopback, for benchmarks only: an infinitely fast server.

No Qdrant server runs on this machine, so client-side cost on the server path (REST and
gRPC) is measured against this sink. It answers the calls the qmigrate target and its
checkpoint store make (collections: list, exists, get, create, update, delete, payload
indexes; points: upsert, count, retrieve, scroll, delete, query) and, for data
collections, keeps only the IDs of the points it accepts. The checkpoint collection
(`_migration_offsets`) is kept whole, in a qdrant-client local-mode instance, so resume
works. Its REST side is the tests' stand-in (`tests/servers/qdrant_rest.py`) with data
points reduced to IDs. It is a measuring instrument: never use it to check correctness.

    python bench/sink.py --rest-port 6333 --grpc-port 6334
"""

from __future__ import annotations

import argparse
import json
import sys
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
from qdrant_client import grpc as pb
from qdrant_client import models
from qdrant_client.conversions.conversion import GrpcToRest, RestToGrpc

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.servers.qdrant_rest import VERSION, Store, _dump, serve_rest  # noqa: E402

# --- gRPC -------------------------------------------------------------------------------


def _completed() -> pb.UpdateResult:
    return pb.UpdateResult(operation_id=0, status=pb.UpdateStatus.Completed)


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
        self.sink.create(request.collection_name, body)
        return pb.CollectionOperationResponse(result=True)

    def Update(self, request: Any, context: Any) -> Any:
        body: dict[str, Any] = {}
        if request.HasField("hnsw_config"):
            body["hnsw_config"] = _dump(GrpcToRest.convert_hnsw_config_diff(request.hnsw_config))
        self.sink.update(request.collection_name, body)
        return pb.CollectionOperationResponse(result=True)

    def Delete(self, request: Any, context: Any) -> Any:
        self.sink.delete(request.collection_name)
        return pb.CollectionOperationResponse(result=True)


class Points(pb.PointsServicer):
    def __init__(self, sink: Store) -> None:
        self.sink = sink

    def Upsert(self, request: Any, context: Any) -> Any:
        name = request.collection_name
        if self.sink.keeps(name):
            points = [GrpcToRest.convert_point_struct(p) for p in request.points]
            self.sink.call("upsert", name, points)
        else:
            ids = [p.id.num if p.id.HasField("num") else p.id.uuid for p in request.points]
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
            found = self.sink.call("retrieve", name, ids, with_payload=True)
            return pb.GetResponse(result=[RestToGrpc.convert_record(r) for r in found])
        with self.sink.lock:
            present = self.sink.ids.get(name, set())
            found = [models.Record(id=i, payload={}) for i in ids if i in present]
        return pb.GetResponse(result=[RestToGrpc.convert_record(r) for r in found])

    def Scroll(self, request: Any, context: Any) -> Any:
        flt = GrpcToRest.convert_filter(request.filter) if request.HasField("filter") else None
        offset = GrpcToRest.convert_point_id(request.offset) if request.HasField("offset") else None
        points, next_offset = self.sink.call(
            "scroll",
            request.collection_name,
            scroll_filter=flt,
            limit=request.limit or 10,
            offset=offset,
            with_payload=True,
        )
        response = pb.ScrollResponse(result=[RestToGrpc.convert_record(p) for p in points])
        if next_offset is not None:
            response.next_page_offset.CopyFrom(RestToGrpc.convert_extended_point_id(next_offset))
        return response

    def Delete(self, request: Any, context: Any) -> Any:
        selector = GrpcToRest.convert_points_selector(request.points)
        self.sink.call("delete", request.collection_name, points_selector=selector)
        return pb.PointsOperationResponse(result=_completed())


class Health(pb.QdrantServicer):
    def HealthCheck(self, request: Any, context: Any) -> Any:
        return pb.HealthCheckReply(title="qmigrate benchmark sink", version=VERSION)


def serve(rest_port: int, grpc_port: int) -> tuple[Any, grpc.Server, Store]:
    """Start both servers; the caller stops them (`shutdown`, `stop`)."""
    sink = Store(keep_points=False)
    rest = serve_rest(sink, rest_port)
    limit = 64 * 1024 * 1024
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=8),
        options=[("grpc.max_receive_message_length", limit)],
    )
    pb.add_CollectionsServicer_to_server(Collections(sink), server)
    pb.add_PointsServicer_to_server(Points(sink), server)
    pb.add_QdrantServicer_to_server(Health(), server)
    server.add_insecure_port(f"127.0.0.1:{grpc_port}")
    server.start()
    return rest, server, sink


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rest-port", type=int, default=6333)
    parser.add_argument("--grpc-port", type=int, default=6334)
    args = parser.parse_args()
    rest, server, sink = serve(args.rest_port, args.grpc_port)
    print(json.dumps({"rest_port": args.rest_port, "grpc_port": args.grpc_port}), flush=True)
    try:
        server.wait_for_termination()
    except KeyboardInterrupt:
        pass
    finally:
        rest.shutdown()
        server.stop(0)
        print(json.dumps({"accepted": sink.accepted}), flush=True)


if __name__ == "__main__":
    main()
