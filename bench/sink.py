"""A Qdrant stand-in on loopback, for benchmarks only: an infinitely fast server.

No Qdrant server runs on this machine, so client-side cost on the server path (REST and
gRPC) is measured against this sink. It answers the calls the qmigrate target and its
checkpoint store make (collections: list, exists, get, create, update, delete, payload
indexes; points: upsert, count, retrieve, scroll, delete, query) and, for data
collections, keeps only the IDs of the points it accepts. The checkpoint collection
(`_migration_offsets`) is kept whole, in a qdrant-client local-mode instance, so resume
works. It is a measuring instrument: never use it to check correctness.

    python bench/sink.py --rest-port 6333 --grpc-port 6334
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import threading
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import grpc
import orjson
from qdrant_client import QdrantClient, models
from qdrant_client import grpc as pb
from qdrant_client.conversions.conversion import GrpcToRest, RestToGrpc

FULL_COLLECTIONS = {"_migration_offsets"}  # kept whole; data collections keep IDs only
VERSION = importlib.metadata.version("qdrant-client")  # no version warning


class Sink:
    """The server's state: collection configs and checkpoint points in local mode, IDs of
    data points in sets."""

    def __init__(self) -> None:
        self.local = QdrantClient(location=":memory:")
        self.ids: dict[str, set[Any]] = {}
        self.lock = threading.Lock()
        self.accepted = 0  # points upserted into data collections, duplicates included

    def full(self, name: str) -> bool:
        return name in FULL_COLLECTIONS

    def exists(self, name: str) -> bool:
        with self.lock:
            return self.local.collection_exists(name)

    def info(self, name: str) -> models.CollectionInfo:
        with self.lock:
            info = self.local.get_collection(name)
            if not self.full(name):
                count = len(self.ids.get(name, ()))
                info.points_count = info.indexed_vectors_count = count
        return info

    def create(self, name: str, body: dict[str, Any]) -> None:
        request = models.CreateCollection.model_validate(body)
        with self.lock:
            self.local.create_collection(
                name,
                vectors_config=request.vectors,
                sparse_vectors_config=request.sparse_vectors,
                hnsw_config=request.hnsw_config,
            )
            self.ids[name] = set()

    def update(self, name: str, body: dict[str, Any]) -> None:
        request = models.UpdateCollection.model_validate(body)
        with self.lock:
            self.local.update_collection(name, hnsw_config=request.hnsw_config)

    def delete(self, name: str) -> None:
        with self.lock:
            self.local.delete_collection(name)
            self.ids.pop(name, None)

    def upsert_ids(self, name: str, ids: list[Any]) -> None:
        with self.lock:
            self.ids.setdefault(name, set()).update(ids)
            self.accepted += len(ids)

    def count(self, name: str) -> int:
        with self.lock:
            if self.full(name):
                return self.local.count(name, exact=True).count
            return len(self.ids.get(name, ()))

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """A local-mode call on a checkpoint collection."""
        with self.lock:
            return getattr(self.local, method)(*args, **kwargs)


# --- REST -------------------------------------------------------------------------------


def _dump(value: Any) -> Any:
    if isinstance(value, list):
        return [_dump(v) for v in value]
    if isinstance(value, dict):
        return {k: _dump(v) for k, v in value.items()}
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json", exclude_none=True)
    return value


class RestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    sink: Sink

    def log_message(self, *args: Any) -> None:
        pass

    def _reply(self, result: Any, status: int = 200) -> None:
        body = orjson.dumps({"result": _dump(result), "status": "ok", "time": 0.0})
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _handle(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        url = urlsplit(self.path)
        parts = [p for p in url.path.split("/") if p]
        query = parse_qs(url.query)
        if not parts:  # the version check reads the root, which is not wrapped in `result`
            body = orjson.dumps({"title": "qmigrate benchmark sink", "version": VERSION})
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        try:
            result = self._route(self.command, parts, raw, query)
        except KeyError as exc:
            self._reply({"error": f"Not found: {exc}"}, 404)
            return
        except (ValueError, TypeError) as exc:
            self._reply({"error": str(exc)}, 400)
            return
        self._reply(result)

    do_GET = do_PUT = do_POST = do_PATCH = do_DELETE = _handle

    def _route(self, method: str, parts: list[str], raw: bytes, query: dict) -> Any:
        sink = self.sink
        if not parts:
            return {
                "title": "qdrant - vector search engine (qmigrate benchmark sink)",
                "version": VERSION,
            }
        if parts == ["collections"]:
            with sink.lock:
                return sink.local.get_collections()
        name = parts[1]
        rest = parts[2:]
        body = orjson.loads(raw) if raw else {}
        if not rest:
            if method == "GET":
                if not sink.exists(name):
                    raise KeyError(name)
                return sink.info(name)
            if method == "PUT":
                sink.create(name, body)
            elif method == "PATCH":
                sink.update(name, body)
            elif method == "DELETE":
                sink.delete(name)
            return True
        if rest == ["exists"]:
            return {"exists": sink.exists(name)}
        if rest == ["index"]:
            return {"operation_id": 0, "status": "completed"}
        if rest == ["points"] and method == "PUT":
            if sink.full(name):
                points = models.PointsList.model_validate(body).points
                sink.call("upsert", name, points)
            else:
                sink.upsert_ids(name, [p["id"] for p in body["points"]])
            return {"operation_id": 0, "status": "completed"}
        if rest == ["points", "count"]:
            return {"count": sink.count(name)}
        if rest == ["points"] and method == "POST":
            if not sink.full(name):
                with sink.lock:
                    present = sink.ids.get(name, set())
                    return [{"id": i, "payload": {}} for i in body["ids"] if i in present]
            return sink.call("retrieve", name, body["ids"], with_payload=True)
        if rest == ["points", "scroll"]:
            request = models.ScrollRequest.model_validate(body)
            points, offset = sink.call(
                "scroll",
                name,
                scroll_filter=request.filter,
                limit=request.limit or 10,
                offset=request.offset,
                with_payload=True,
            )
            return {"points": points, "next_page_offset": offset}
        if rest == ["points", "delete"]:
            selector = models.FilterSelector.model_validate(body)
            sink.call("delete", name, points_selector=selector)
            return {"operation_id": 0, "status": "completed"}
        raise KeyError("/".join(parts))


# --- gRPC -------------------------------------------------------------------------------


def _completed() -> pb.UpdateResult:
    return pb.UpdateResult(operation_id=0, status=pb.UpdateStatus.Completed)


class Collections(pb.CollectionsServicer):
    def __init__(self, sink: Sink) -> None:
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
    def __init__(self, sink: Sink) -> None:
        self.sink = sink

    def Upsert(self, request: Any, context: Any) -> Any:
        name = request.collection_name
        if self.sink.full(name):
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
        if self.sink.full(name):
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


def serve(rest_port: int, grpc_port: int) -> tuple[ThreadingHTTPServer, grpc.Server, Sink]:
    """Start both servers; the caller stops them (`shutdown`, `stop`)."""
    sink = Sink()
    handler = type("Handler", (RestHandler,), {"sink": sink})
    rest = ThreadingHTTPServer(("127.0.0.1", rest_port), handler)
    rest.daemon_threads = True
    threading.Thread(target=rest.serve_forever, daemon=True).start()
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
