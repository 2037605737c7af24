"""A Pinecone stand-in over HTTP, for tests that drive the real `pinecone` SDK (10.x).

No Pinecone emulator installs here, so this fakes the REST surface qmigrate uses, in the
2026-07 API shapes the SDK sends and parses:

- control plane: GET /indexes, GET /indexes/{name} (host, `schema.fields._values` with
  dimension and metric, `_sparse_values`, deployment managed or pod);
- data plane, one port per index as every index has its own host: GET /vectors/list
  (IDs in bytewise order, `prefix`, `limit` default and maximum 100, an opaque stateless
  `paginationToken` like the real base64 `skip_past`), GET /vectors/fetch, POST
  /vectors/fetch_by_metadata (Pinecone filter operators), POST /describe_index_stats,
  POST /query (exact top-k, for verify's search agreement).

Like the real service it rejects a wrong `Api-Key` with 401, and a pod-based index answers
list and fetch_by_metadata with an error (404 here; the status of the real one is not
documented, so qmigrate must not depend on it). Tests can add latency and make the next
requests fail with 429 (with Retry-After) or 5xx. Data is loaded through `FakeIndex.upsert`,
never through the code under test.
"""

from __future__ import annotations

import base64
import bisect
import json
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

DEFAULT_NAMESPACE = "__default__"
LIST_LIMIT = 100
FETCH_MAX_IDS = 1000
FETCH_BY_METADATA_MAX = 10_000
GRPC_CODES = {400: 3, 401: 16, 404: 5, 429: 8, 500: 13, 503: 14}


class HttpError(Exception):
    def __init__(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        super().__init__(status)
        self.status = status
        self.body = body
        self.headers = headers or {}


def data_plane_error(status: int, message: str, headers: dict[str, str] | None = None) -> HttpError:
    """The data plane's error body: a gRPC status as JSON."""
    return HttpError(
        status, {"code": GRPC_CODES.get(status, 2), "message": message, "details": []}, headers
    )


def control_plane_error(status: int, code: str, message: str) -> HttpError:
    return HttpError(status, {"error": {"code": code, "message": message}, "status": status})


def _namespace(name: str | None) -> str:
    """Requests name the default namespace "" (or `__default__`); stats call it `__default__`."""
    return name or DEFAULT_NAMESPACE


def _token(last_id: str) -> str:
    return base64.b64encode(json.dumps({"skip_past": last_id}).encode()).decode()


def _skip_past(token: str) -> str:
    try:
        return json.loads(base64.b64decode(token, validate=True))["skip_past"]
    except (ValueError, KeyError, TypeError):
        raise data_plane_error(400, "Invalid pagination token") from None


@dataclass
class Fault:
    status: int
    remaining: int
    retry_after: float | None
    path: str
    spared: int  # matching requests still let through before the failures start


class FakeIndex:
    """One index: its description, its records by namespace, and the server of its host."""

    def __init__(
        self, name: str, dimension: int | None, metric: str, sparse: bool, pod: bool
    ) -> None:
        self.name = name
        self.dimension = dimension
        self.metric = metric
        self.sparse = sparse
        self.pod = pod
        self.host = ""
        self.namespaces: dict[str, dict[str, dict[str, Any]]] = {}
        self._sorted: dict[str, list[str]] = {}
        self.lock = threading.Lock()

    def upsert(self, vectors: Iterable[dict[str, Any]], namespace: str = "") -> None:
        """Store records as the service keeps them: metadata numbers become floats."""
        records = self.namespaces.setdefault(_namespace(namespace), {})
        with self.lock:
            for vector in vectors:
                record: dict[str, Any] = {
                    "id": vector["id"],
                    "values": list(vector.get("values", [])),
                }
                if vector.get("sparse_values") is not None:
                    sparse = vector["sparse_values"]
                    record["sparseValues"] = {
                        "indices": list(sparse["indices"]),
                        "values": list(sparse["values"]),
                    }
                if vector.get("metadata"):
                    record["metadata"] = {
                        k: float(v) if isinstance(v, int) and not isinstance(v, bool) else v
                        for k, v in vector["metadata"].items()
                    }
                records[vector["id"]] = record
            self._sorted.pop(_namespace(namespace), None)

    def sorted_ids(self, namespace: str) -> list[str]:
        """IDs in bytewise ("C" collation) order, as /vectors/list returns them."""
        with self.lock:
            ids = self._sorted.get(namespace)
            if ids is None:
                ids = self._sorted[namespace] = sorted(self.namespaces.get(namespace, {}))
            return ids

    def describe(self) -> dict[str, Any]:
        fields: dict[str, Any] = {}
        if self.dimension is not None:
            fields["_values"] = {
                "type": "dense_vector",
                "dimension": self.dimension,
                "metric": self.metric,
                "description": None,
            }
        if self.sparse:
            fields["_sparse_values"] = {"type": "sparse_vector", "description": None}
        deployment: dict[str, Any] = (
            {
                "deployment_type": "pod",
                "environment": "us-east1-gcp",
                "pod_type": "p1.x1",
                "replicas": 1,
                "shards": 1,
            }
            if self.pod
            else {"deployment_type": "managed", "cloud": "aws", "region": "us-east-1"}
        )
        return {
            "name": self.name,
            "host": self.host,
            "status": {"ready": True, "state": "Ready"},
            "schema": {"fields": fields},
            "deployment": deployment,
            "deletion_protection": "disabled",
            "tags": None,
        }

    # --- data plane -----------------------------------------------------------------

    def list_ids(self, query: dict[str, list[str]]) -> dict[str, Any]:
        if self.pod:
            raise data_plane_error(404, "list is not supported for pod-based indexes")
        namespace = _namespace(query.get("namespace", [""])[0])
        prefix = query.get("prefix", [""])[0]
        limit = _limit(query.get("limit", [None])[0], LIST_LIMIT, LIST_LIMIT)
        ids = self.sorted_ids(namespace)
        start = bisect.bisect_left(ids, prefix)
        token = query.get("paginationToken", [None])[0]
        if token:
            start = max(start, bisect.bisect_right(ids, _skip_past(token)))
        page: list[str] = []
        for vector_id in ids[start:]:
            if not vector_id.startswith(prefix) or len(page) == limit:
                break
            page.append(vector_id)
        body: dict[str, Any] = {
            "vectors": [{"id": i} for i in page],
            "namespace": query.get("namespace", [""])[0],
            "usage": {"readUnits": 1},
        }
        if len(page) == limit:  # a full page always carries a token, even if nothing follows
            body["pagination"] = {"next": _token(page[-1])}
        return body

    def fetch(self, query: dict[str, list[str]]) -> dict[str, Any]:
        ids = query.get("ids", [])
        if not ids or len(ids) > FETCH_MAX_IDS:
            raise data_plane_error(400, f"ids must hold 1 to {FETCH_MAX_IDS} IDs")
        namespace = _namespace(query.get("namespace", [""])[0])
        records = self.namespaces.get(namespace, {})
        return {
            "vectors": {i: records[i] for i in ids if i in records},
            "namespace": query.get("namespace", [""])[0],
            "usage": {"readUnits": 1},
        }

    def fetch_by_metadata(self, body: dict[str, Any]) -> dict[str, Any]:
        if self.pod:
            raise data_plane_error(404, "fetch_by_metadata is not supported for pod-based indexes")
        flt = body.get("filter")
        if not isinstance(flt, dict) or not flt:
            raise data_plane_error(400, "Empty filter provided for fetch by metadata request")
        namespace = _namespace(body.get("namespace"))
        limit = _limit(body.get("limit"), LIST_LIMIT, FETCH_BY_METADATA_MAX)
        records = self.namespaces.get(namespace, {})
        ids = self.sorted_ids(namespace)
        start = 0
        if body.get("paginationToken"):
            start = bisect.bisect_right(ids, _skip_past(body["paginationToken"]))
        page: dict[str, Any] = {}
        for vector_id in ids[start:]:
            if len(page) == limit:
                break
            if matches(flt, records[vector_id].get("metadata", {})):
                page[vector_id] = records[vector_id]
        out: dict[str, Any] = {
            "vectors": page,
            "namespace": body.get("namespace", ""),
            "usage": {"readUnits": 1},
        }
        if len(page) == limit:
            out["pagination"] = {"next": _token(next(reversed(page)))}
        return out

    def query(self, body: dict[str, Any]) -> dict[str, Any]:
        """Exact top-k over the dense values, most similar first; euclidean scores are
        squared distances, smaller being closer, as Pinecone reports them."""
        query = body.get("vector")
        if not query or len(query) != self.dimension:
            raise data_plane_error(400, f"vector must have {self.dimension} dimensions")
        namespace = _namespace(body.get("namespace"))
        flt = body.get("filter")
        scored = []
        for vector_id, record in self.namespaces.get(namespace, {}).items():
            values = record.get("values")
            if not values or (flt and not matches(flt, record.get("metadata", {}))):
                continue
            scored.append((_score(self.metric, query, values), vector_id))
        scored.sort(reverse=self.metric != "euclidean")
        top = scored[: int(body.get("topK", 10))]
        return {
            "matches": [{"id": i, "score": score} for score, i in top],
            "namespace": body.get("namespace", ""),
            "usage": {"readUnits": 1},
        }

    def stats(self, body: dict[str, Any]) -> dict[str, Any]:
        if body.get("filter"):
            raise data_plane_error(400, "describe_index_stats does not accept a filter")
        counts = {ns: len(records) for ns, records in self.namespaces.items() if records}
        out: dict[str, Any] = {
            "namespaces": {ns: {"vectorCount": n} for ns, n in counts.items()},
            "indexFullness": 0.0,
            "totalVectorCount": sum(counts.values()),
            "metric": self.metric,
            "vectorType": "dense" if self.dimension is not None else "sparse",
        }
        if self.dimension is not None:
            out["dimension"] = self.dimension
        return out


def _score(metric: str, query: list[float], values: list[float]) -> float:
    dot = sum(a * b for a, b in zip(query, values, strict=True))
    if metric == "dotproduct":
        return dot
    if metric == "euclidean":
        return sum((a - b) ** 2 for a, b in zip(query, values, strict=True))
    norms = (sum(a * a for a in query) * sum(b * b for b in values)) ** 0.5
    return dot / norms if norms else 0.0


def _limit(raw: Any, default: int, maximum: int) -> int:
    if raw is None:
        return default
    try:
        limit = int(raw)
    except (TypeError, ValueError):
        raise data_plane_error(400, f"limit must be an integer, got {raw!r}") from None
    if not 1 <= limit <= maximum:
        raise data_plane_error(400, f"limit must be between 1 and {maximum}")
    return limit


def matches(flt: dict[str, Any], metadata: dict[str, Any]) -> bool:
    """Pinecone's metadata filter: a list value matches $eq/$in when any element does."""
    for key, condition in flt.items():
        if key == "$and":
            if not all(matches(f, metadata) for f in condition):
                return False
        elif key == "$or":
            if not any(matches(f, metadata) for f in condition):
                return False
        else:
            operators = condition if isinstance(condition, dict) else {"$eq": condition}
            if not all(_compare(op, metadata.get(key), arg) for op, arg in operators.items()):
                return False
    return True


def _compare(op: str, value: Any, arg: Any) -> bool:
    values = value if isinstance(value, list) else [] if value is None else [value]
    numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if op == "$eq":
        return arg in values
    if op == "$ne":
        return arg not in values
    if op == "$in":
        return any(v in arg for v in values)
    if op == "$nin":
        return not any(v in arg for v in values)
    if op == "$exists":
        return (value is not None) == arg
    if op in ("$gt", "$gte", "$lt", "$lte"):
        check = {
            "$gt": lambda v: v > arg,
            "$gte": lambda v: v >= arg,
            "$lt": lambda v: v < arg,
            "$lte": lambda v: v <= arg,
        }[op]
        return any(check(v) for v in numbers)
    raise data_plane_error(400, f"unsupported filter operator {op}")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        # Headers and body leave in two writes: without this, Nagle's algorithm and delayed
        # ACKs add 40 ms to every response.
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def _serve(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        fake = self.server.fake
        try:
            status, body, headers = (
                200,
                fake.handle(self.server, method, self.path, self.headers, raw),
                {},
            )
        except HttpError as exc:
            status, body, headers = exc.status, exc.body, exc.headers
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients dropping kept-alive connections (a killed qmigrate) are not errors."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)

    def __init__(self, fake: PineconeFake, index: FakeIndex | None) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.fake = fake
        self.index = index
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        self.thread = threading.Thread(target=self.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()


class PineconeFake:
    """The control plane on one port, each index's data plane on a port of its own."""

    def __init__(self, api_key: str = "pc-test-key") -> None:
        self.api_key = api_key
        self.latency = 0.0
        self.indexes: dict[str, FakeIndex] = {}
        self.requests: Counter[str] = Counter()
        self.api_versions: set[str] = set()
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self._servers = [_Server(self, None)]
        self.url = self._servers[0].url

    def create_index(
        self,
        name: str,
        dimension: int | None = None,
        metric: str = "cosine",
        sparse: bool = False,
        pod: bool = False,
    ) -> FakeIndex:
        """A dense index (`dimension`), a sparse-only one (`sparse` alone), or both (hybrid)."""
        index = FakeIndex(
            name, dimension, "dotproduct" if dimension is None else metric, sparse, pod
        )
        server = _Server(self, index)
        index.host = server.url
        self._servers.append(server)
        self.indexes[name] = index
        return index

    def fail_next(
        self,
        count: int,
        status: int = 429,
        retry_after: float | None = None,
        path: str = "/vectors",
        after: int = 0,
    ) -> None:
        """`count` data-plane requests whose path starts with `path` fail, after `after` pass."""
        with self._lock:
            self._faults.append(Fault(status, count, retry_after, path, after))

    def count(self, path: str) -> int:
        """Data-plane requests served so far (injected failures included) for this path."""
        return self.requests[path]

    def close(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()

    # --- dispatch -------------------------------------------------------------------

    def handle(self, server: _Server, method: str, target: str, headers: Any, raw: bytes) -> Any:
        if self.latency:
            time.sleep(self.latency)
        path, _, query_string = target.partition("?")
        self.api_versions.add(headers.get("X-Pinecone-Api-Version", ""))
        index = server.index
        if index is None:
            return self._control_plane(method, path, headers)
        with self._lock:
            self.requests[path] += 1
        if headers.get("Api-Key") != self.api_key:
            raise data_plane_error(401, "Invalid API key")
        self._inject(path)
        query = parse_qs(query_string, keep_blank_values=True)
        body = json.loads(raw) if raw else {}
        routes = {
            ("GET", "/vectors/list"): lambda: index.list_ids(query),
            ("GET", "/vectors/fetch"): lambda: index.fetch(query),
            ("POST", "/vectors/fetch_by_metadata"): lambda: index.fetch_by_metadata(body),
            ("POST", "/describe_index_stats"): lambda: index.stats(body),
            ("POST", "/query"): lambda: index.query(body),
        }
        route = routes.get((method, path))
        if route is None:
            raise data_plane_error(404, f"no route {method} {path}")
        return route()

    def _inject(self, path: str) -> None:
        with self._lock:
            fault = next(
                (f for f in self._faults if f.remaining > 0 and path.startswith(f.path)), None
            )
            if fault is None:
                return
            if fault.spared:
                fault.spared -= 1
                return
            fault.remaining -= 1
        headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
        message = "Too many requests" if fault.status == 429 else "Service unavailable"
        raise data_plane_error(fault.status, message, headers)

    def _control_plane(self, method: str, path: str, headers: Any) -> Any:
        if headers.get("Api-Key") != self.api_key:
            raise control_plane_error(401, "UNAUTHENTICATED", "Invalid API key.")
        parts = urlsplit(path).path.strip("/").split("/")
        if method == "GET" and parts == ["indexes"]:
            return {"indexes": [i.describe() for i in self.indexes.values()]}
        if method == "GET" and len(parts) == 2 and parts[0] == "indexes":
            index = self.indexes.get(unquote(parts[1]))
            if index is None:
                raise control_plane_error(404, "NOT_FOUND", f"Resource {parts[1]} not found")
            return index.describe()
        raise control_plane_error(404, "NOT_FOUND", f"no route {method} {path}")


@pytest.fixture
def pinecone_fake() -> Iterator[PineconeFake]:
    """A fresh fake per test, its servers stopped at the end."""
    fake = PineconeFake()
    try:
        yield fake
    finally:
        fake.close()
