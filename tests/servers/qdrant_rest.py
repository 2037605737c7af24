"""A stand-in Qdrant REST endpoint, for transport and fault tests (no Qdrant server runs here).

It answers the REST calls qmigrate's target, checkpoint store and verify make, backed by
qdrant-client's local mode, so the data written through it is real and can be compared.
Faults can be injected: 429 with Retry-After, 503, 413 above a byte limit, a connection
reset after an upsert was applied (the acknowledgement is lost), and a stall.

Strict mode is kept per collection (`strict_mode_config` on create and update, in the
collection info) and enforced on data upserts as Qdrant does (its verification and rate
limiter, read from its code): more points than `upsert_max_batchsize`, or a collection at
`max_points_count` or `max_collection_vector_size_bytes`, is a 400 "Bad request: ..."
(gRPC INVALID_ARGUMENT); `write_rate_limit` is a token bucket of that many points a minute
that starts full, and answers 429 "Rate limiting exceeded: ..." with Retry-After in whole
seconds (gRPC RESOURCE_EXHAUSTED, `retry-after` in the trailing metadata), or without it
for a request larger than the bucket. `max_request_bytes` is Qdrant's
service.max_request_size_mb: a larger REST body is a 400 "JSON payload (N bytes) is larger
than allowed (limit: L bytes)." Payload storage size is not emulated.

    python -m tests.servers.qdrant_rest --port P --path DIR     # faults off

The benchmark sink (`bench/sink.py`) shares this code with `keep_points=False`: data
collections then keep only point IDs, so the server costs nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import math
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import orjson
from qdrant_client import QdrantClient, models

VERSION = importlib.metadata.version("qdrant-client")  # no version-mismatch warning
ALWAYS_KEPT = {"_migration_offsets"}  # checkpoints are kept whole even by the sink


class AlreadyExists(Exception):
    """A create of a collection that exists: Qdrant answers 409 (gRPC ALREADY_EXISTS)."""


class StrictRefused(ValueError):
    """A strict-mode limit a request breaks: Qdrant's 400 (gRPC INVALID_ARGUMENT)."""


class RateLimited(Exception):
    """The write rate limiter's answer: 429 (gRPC RESOURCE_EXHAUSTED), Retry-After if any."""

    def __init__(self, message: str, retry_after: int | None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class WriteBucket:
    """Qdrant's write rate limiter: `per_minute` tokens, full at the start, refilled evenly;
    an upsert costs one token per point."""

    def __init__(self, per_minute: int, clock: Callable[[], float]) -> None:
        self.capacity, self.per_second, self.clock = per_minute, per_minute / 60, clock
        self.tokens, self.since = float(per_minute), clock()

    def consume(self, cost: int) -> None:
        if cost > self.capacity:
            raise RateLimited(
                "Rate limiting exceeded: Write rate limit exceeded, request larger than rate "
                "limiter capacity, please try to split your request",
                None,
            )
        now = self.clock()
        self.tokens = min(self.capacity, self.tokens + (now - self.since) * self.per_second)
        self.since = now
        if self.tokens >= cost:
            self.tokens -= cost
            return
        wait = math.ceil((cost - self.tokens) / self.per_second)
        raise RateLimited(
            f"Rate limiting exceeded: Write rate limit exceeded: Operation requires {cost} "
            f"tokens but only {self.tokens:.1f} were available. Retry after {wait}s",
            wait,
        )


class Store:
    """Collections in local mode; with `keep_points=False`, data points are kept as IDs."""

    def __init__(self, path: str = ":memory:", keep_points: bool = True) -> None:
        self.local = (
            QdrantClient(location=":memory:") if path == ":memory:" else QdrantClient(path=path)
        )
        self.keep_points = keep_points
        self.ids: dict[str, set[Any]] = {}
        self.hnsw_m: dict[str, int] = {}  # local mode ignores HNSW updates; a server keeps them
        self.lock = threading.Lock()
        self.accepted = 0  # points upserted into data collections, duplicates included
        self.writes: dict[str, int] = {}  # points upserted per kept collection, rewrites too
        self.upserts = {"rest": 0, "grpc": 0}  # upsert requests, by protocol
        self.scrolls = {"rest": 0, "grpc": 0}  # scroll requests, by protocol
        self.data_upserts: list[tuple[bool, list[Any]]] = []  # (wait, IDs) of each, as they came
        # Point deletes from data collections: (data upserts before it, wait, IDs or None).
        self.data_deletes: list[tuple[int, bool, list[Any] | None]] = []
        self.shards: dict[str, tuple[int, int]] = {}  # (shard_number, replication_factor)
        # Custom sharding (local mode has none): the keys created per collection, in order,
        # and each data upsert's (collection, shard key selector, IDs) as it came.
        self.shard_keys: dict[str, list[Any]] = {}
        self.keyed_upserts: list[tuple[str, Any, list[Any]]] = []
        self.point_keys: dict[str, dict[Any, Any]] = {}  # the shard key each point is under
        self.writing = 0  # data upserts being answered now
        self.most_writing = 0  # the most at once
        self.saving = 0  # checkpoint upserts being answered now
        self.during_saves = 0  # data upserts that came while one was
        # Called with the name before a create is answered: a test creates the collection
        # there, as another job would between qmigrate's existence check and its create.
        self.before_create: Callable[[str], None] | None = None
        # Strict mode: each collection's config (StrictModeConfig fields as set), its write
        # bucket on the `clock` (a test may give a virtual one), and the refusals answered.
        self.strict: dict[str, dict[str, Any]] = {}
        self.buckets: dict[str, WriteBucket] = {}
        self.clock: Callable[[], float] = time.monotonic
        self.refused: list[tuple[int, str]] = []  # (HTTP status, message), in order
        self.max_request_bytes: int | None = None  # None: no limit (Qdrant: 32 MiB)
        # storage.collection.strict_mode: what a new data collection gets (the checkpoint
        # collection none, so that a test's small limits bind the data alone).
        self.default_strict_mode: dict[str, Any] | None = None

    @contextlib.contextmanager
    def answering(self, name: str) -> Iterator[None]:
        """Around a request's whole answer, latency included: how many upserts are in flight,
        of data and of checkpoints."""
        counter = "saving" if name in ALWAYS_KEPT else "writing"
        with self.lock:
            setattr(self, counter, getattr(self, counter) + 1)
            self.most_writing = max(self.most_writing, self.writing)
        try:
            yield
        finally:
            with self.lock:
                setattr(self, counter, getattr(self, counter) - 1)

    def note_upsert(self, name: str, protocol: str, wait: bool, ids: list[Any]) -> None:
        with self.lock:
            self.upserts[protocol] += 1
            if name not in ALWAYS_KEPT:
                self.data_upserts.append((wait, ids))
                self.during_saves += self.saving > 0

    def note_scroll(self, protocol: str) -> None:
        with self.lock:
            self.scrolls[protocol] += 1

    def note_delete(self, name: str, wait: bool, selector: Any) -> None:
        ids = selector.points if isinstance(selector, models.PointIdsList) else None
        with self.lock:
            if name not in ALWAYS_KEPT:
                self.data_deletes.append((len(self.data_upserts), wait, ids))

    def keeps(self, name: str) -> bool:
        return self.keep_points or name in ALWAYS_KEPT

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """A call on the local-mode client (not thread-safe, so one at a time)."""
        with self.lock:
            return getattr(self.local, method)(*args, **kwargs)

    def exists(self, name: str) -> bool:
        return self.call("collection_exists", name)

    def info(self, name: str) -> models.CollectionInfo:
        info = self.call("get_collection", name)
        if name in self.hnsw_m:
            info.config.hnsw_config.m = self.hnsw_m[name]
        params = info.config.params
        params.shard_number, params.replication_factor = self.shards.get(name, (1, 1))
        if name in self.shard_keys:
            params.sharding_method = models.ShardingMethod.CUSTOM
        if name in self.strict:
            info.config.strict_mode_config = models.StrictModeConfigOutput(**self.strict[name])
        if not self.keeps(name):
            info.points_count = info.indexed_vectors_count = len(self.ids.get(name, ()))
        return info

    def create(self, name: str, body: dict[str, Any]) -> None:
        request = models.CreateCollection.model_validate(body)
        if self.before_create is not None:
            self.before_create(name)
        if self.exists(name):
            raise AlreadyExists(f"Wrong input: Collection `{name}` already exists!")
        self.call(
            "create_collection",
            name,
            vectors_config=request.vectors,
            sparse_vectors_config=request.sparse_vectors,
            hnsw_config=request.hnsw_config,
        )
        self.ids[name] = set()
        self.shards[name] = (request.shard_number or 1, request.replication_factor or 1)
        if request.sharding_method == models.ShardingMethod.CUSTOM:
            self.shard_keys[name] = []
        if request.hnsw_config is not None and request.hnsw_config.m is not None:
            self.hnsw_m[name] = request.hnsw_config.m
        given = request.strict_mode_config
        default = self.default_strict_mode if name not in ALWAYS_KEPT else None
        if given is not None or default:  # Qdrant: the given fields over the server default
            fields = {**(default or {}), **(given.model_dump(exclude_none=True) if given else {})}
            self.set_strict_mode(name, models.StrictModeConfig(**fields))

    def set_strict_mode(self, name: str, config: models.StrictModeConfig) -> None:
        """As Qdrant updates it: the fields given replace those set; the rate limiter starts
        again, full."""
        given = config.model_dump(exclude_none=True)
        with self.lock:
            merged = {**self.strict.get(name, {}), **given}
            self.strict[name] = merged
            self.buckets.pop(name, None)
            if merged.get("enabled") and merged.get("write_rate_limit"):
                self.buckets[name] = WriteBucket(merged["write_rate_limit"], self.clock)

    def enforce_strict_mode(self, name: str, count: int) -> None:
        """An upsert of `count` points into `name`, checked in Qdrant's order: the request
        (batch size, then the collection's size), then the shard's write rate limiter."""
        config = self.strict.get(name, {})
        if not config.get("enabled"):
            return
        try:
            self._check_strict_mode(name, config, count)
            with self.lock:
                bucket = self.buckets.get(name)
                if bucket is not None:
                    bucket.consume(count)
        except StrictRefused as exc:
            self.refused.append((400, str(exc)))
            raise
        except RateLimited as exc:
            self.refused.append((429, str(exc)))
            raise

    def _check_strict_mode(self, name: str, config: dict[str, Any], count: int) -> None:
        batch = config.get("upsert_max_batchsize")
        if batch is not None and count > batch:
            raise StrictRefused(
                f'Bad request: Limit exceeded {count} > {batch} for "upsert limit". '
                f'Help: Reduce the "upsert limit" parameter to or below {batch}.'
            )
        held = self.count(name)
        most = config.get("max_points_count")
        if most is not None and held >= most:
            raise StrictRefused(f"Bad request: Max points count limit of {most} reached!")
        vector_bytes = config.get("max_collection_vector_size_bytes")
        if vector_bytes is not None and held * self._dense_bytes(name) >= vector_bytes:
            megabytes = f"{vector_bytes / (1024 * 1024):.8g}"
            raise StrictRefused(
                f"Bad request: Max vector storage size limit of {megabytes}MB reached!"
            )

    def _dense_bytes(self, name: str) -> int:
        """A point's dense vector bytes (float32: local mode keeps no other datatype)."""
        vectors = self.call("get_collection", name).config.params.vectors
        named = [vectors] if isinstance(vectors, models.VectorParams) else (vectors or {}).values()
        return sum(4 * params.size for params in named)

    def update(self, name: str, body: dict[str, Any]) -> None:
        request = models.UpdateCollection.model_validate(body)
        self.call("update_collection", name, hnsw_config=request.hnsw_config)
        if request.hnsw_config is not None and request.hnsw_config.m is not None:
            self.hnsw_m[name] = request.hnsw_config.m
        if request.strict_mode_config is not None:
            self.set_strict_mode(name, request.strict_mode_config)

    def delete(self, name: str) -> None:
        self.call("delete_collection", name)
        self.ids.pop(name, None)
        self.shards.pop(name, None)
        self.shard_keys.pop(name, None)
        self.strict.pop(name, None)
        self.buckets.pop(name, None)

    def create_shard_key(self, name: str, body: dict[str, Any]) -> None:
        """PUT /collections/{name}/shards (CreateShardingKey), answered as Qdrant does: 400
        for a key that exists, or on a collection with auto sharding."""
        key = models.CreateShardingKey.model_validate(body).shard_key
        if not self.exists(name):
            raise KeyError(name)
        with self.lock:
            keys = self.shard_keys.get(name)
            if keys is None:
                raise ValueError(f"Shard Key {key} cannot be created with Auto sharding method")
            if key in keys:
                raise ValueError(f"Shard key {key} already exists")
            keys.append(key)

    def check_shard_key(self, name: str, selector: Any, ids: list[Any]) -> None:
        """An upsert's shard key selector against the keys created (Qdrant answers 400 for a
        key not created, and for none on a collection with custom sharding)."""
        with self.lock:
            keys = self.shard_keys.get(name)
            if name not in ALWAYS_KEPT:
                self.keyed_upserts.append((name, selector, ids))
        if selector is None:
            if keys is not None:
                raise ValueError("Shard key not specified")
            return
        for key in selector if isinstance(selector, list) else [selector]:
            if key not in (keys or []):
                raise ValueError(f"Shard key {key} not found")
        if not isinstance(selector, list):
            with self.lock:
                self.point_keys.setdefault(name, {}).update((i, selector) for i in ids)

    def list_shard_keys(self, name: str) -> list[Any] | None:
        """GET /collections/{name}/shards (ShardKeysResponse): the keys, or None when the
        collection has auto sharding."""
        if not self.exists(name):
            raise KeyError(name)
        with self.lock:
            keys = self.shard_keys.get(name)
            return None if keys is None else list(keys)

    def keyed_filter(self, name: str, selector: Any, flt: Any) -> Any:
        """A read's filter narrowed to the points under the shard key `selector` (Qdrant
        reads only that key's shards; without a selector, every shard)."""
        if selector is None:
            return flt
        with self.lock:
            if selector not in self.shard_keys.get(name, []):
                raise ValueError(f"Shard key {selector} not found")
            held = [i for i, key in self.point_keys.get(name, {}).items() if key == selector]
        under_key = models.HasIdCondition(has_id=held)
        if flt is None:
            return models.Filter(must=[under_key])
        return models.Filter(must=[flt, under_key])

    def upsert(self, name: str, body: dict[str, Any], wait: bool) -> None:
        self.note_upsert(name, "rest", wait, [p["id"] for p in body["points"]])
        self.check_shard_key(name, body.get("shard_key"), [p["id"] for p in body["points"]])
        self.enforce_strict_mode(name, len(body["points"]))
        if self.keeps(name):
            request = models.PointsList.model_validate(body)  # update_mode too (Qdrant 1.17+)
            self.call("upsert", name, request.points, update_mode=request.update_mode)
            with self.lock:
                self.writes[name] = self.writes.get(name, 0) + len(body["points"])
            return
        with self.lock:
            self.ids.setdefault(name, set()).update(p["id"] for p in body["points"])
            self.accepted += len(body["points"])

    def upsert_ids(self, name: str, ids: list[Any]) -> None:
        with self.lock:
            self.ids.setdefault(name, set()).update(ids)
            self.accepted += len(ids)

    def count(self, name: str) -> int:
        if self.keeps(name):
            return self.call("count", name, exact=True).count
        return len(self.ids.get(name, ()))

    def retrieve(self, name: str, body: dict[str, Any]) -> list[Any]:
        if self.keeps(name):
            return self.call(
                "retrieve",
                name,
                body["ids"],
                with_payload=body.get("with_payload", True),
                with_vectors=body.get("with_vector", False),
            )
        present = self.ids.get(name, set())
        return [models.Record(id=i, payload={}) for i in body["ids"] if i in present]


@dataclass
class Faults:
    """What the endpoint does wrong, and how often. Each fault counts down on the requests
    whose path contains `path` (upserts by default)."""

    status: list[tuple[int, float | None, str]] = field(default_factory=list)
    max_bytes: int | None = None  # 413 above this request body size
    resets: int = 0  # upserts applied, then the connection dropped without an answer
    stalls: int = 0  # requests held for `stall_seconds` before any answer
    stall_seconds: float = 0.0
    latency: float = 0.0  # seconds added to every write
    path: str = "/points"
    seen: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def fail_next(self, count: int, status: int, retry_after: float | None = None) -> None:
        self.status += [(status, retry_after, self.path)] * count

    def take(self, kind: str) -> bool:
        with self.lock:
            remaining = getattr(self, kind)
            if remaining <= 0:
                return False
            setattr(self, kind, remaining - 1)
            self.seen[kind] = self.seen.get(kind, 0) + 1
            return True


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
    store: Store
    faults: Faults

    def log_message(self, *args: Any) -> None:
        pass

    def _send(self, status: int, document: Any, headers: dict[str, str] | None = None) -> None:
        body = orjson.dumps(document)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        self._send(status, {"status": {"error": message}, "time": 0.0}, headers)

    def _handle(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        url = urlsplit(self.path)
        parts = [p for p in url.path.split("/") if p]
        if not parts:  # the version check reads the root, which is not wrapped in `result`
            self._send(200, {"title": "qdrant stand-in", "version": VERSION})
            return
        with self.store.answering(parts[1] if len(parts) > 1 else ""):
            self._answer(url.path, url.query, parts, raw)

    def _answer(self, path: str, query: str, parts: list[str], raw: bytes) -> None:
        if self._inject(path, raw):
            return
        limit = self.store.max_request_bytes
        if limit is not None and len(raw) > limit:  # Qdrant's JSON body limit (actix): a 400
            self._error(
                400,
                f"JSON payload ({len(raw)} bytes) is larger than allowed (limit: {limit} bytes).",
            )
            return
        try:
            result = self._route(self.command, parts, raw, wait="wait=true" in query)
        except RateLimited as exc:
            after = {"Retry-After": str(exc.retry_after)} if exc.retry_after is not None else None
            self._error(429, str(exc), after)
            return
        except KeyError as exc:
            self._error(404, f"Not found: {exc}")
            return
        except AlreadyExists as exc:
            self._error(409, str(exc))
            return
        except (ValueError, TypeError) as exc:
            self._error(400, str(exc))
            return
        if self.faults.path in path and self.command == "PUT" and self.faults.take("resets"):
            self.close_connection = True  # applied, but the answer never arrives
            self.connection.shutdown(2)
            return
        self._send(200, {"result": _dump(result), "status": "ok", "time": 0.0})

    do_GET = do_PUT = do_POST = do_PATCH = do_DELETE = _handle

    def _inject(self, path: str, raw: bytes) -> bool:
        """Answer with a fault instead of the real thing; True when one was sent."""
        faults = self.faults
        is_write = faults.path in path and self.command == "PUT"
        if faults.max_bytes is not None and len(raw) > faults.max_bytes:
            self._error(413, f"Payload too large: {len(raw)} bytes")
            return True
        if not is_write:
            return False
        time.sleep(faults.latency)
        if faults.take("stalls"):
            time.sleep(faults.stall_seconds)
        with faults.lock:
            fault = faults.status.pop(0) if faults.status else None
        if fault is None:
            return False
        status, retry_after, _ = fault
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
        self._error(status, "injected fault", headers)
        return True

    def _route(self, method: str, parts: list[str], raw: bytes, wait: bool) -> Any:
        store = self.store
        body = orjson.loads(raw) if raw else {}
        if parts == ["collections"]:
            return store.call("get_collections")
        if parts == ["aliases"] and method == "GET":  # CollectionsAliasesResponse
            return store.call("get_aliases")
        if parts == ["collections", "aliases"] and method == "POST":
            # ChangeAliasesOperation: every action applied, or none (as Qdrant does)
            request = models.ChangeAliasesOperation.model_validate(body)
            return store.call("update_collection_aliases", request.actions)
        name, rest = parts[1], parts[2:]
        if rest == ["aliases"] and method == "GET":
            return store.call("get_collection_aliases", name)
        if not rest:
            if method == "GET":
                if not store.exists(name):
                    raise KeyError(name)
                return store.info(name)
            if method == "PUT":
                store.create(name, body)
            elif method == "PATCH":
                store.update(name, body)
            elif method == "DELETE":
                store.delete(name)
            return True
        if rest == ["exists"]:
            return {"exists": store.exists(name)}
        if rest == ["shards"] and method == "PUT":
            store.create_shard_key(name, body)
            return True
        if rest == ["shards"] and method == "GET":
            keys = store.list_shard_keys(name)
            return {"shard_keys": None if keys is None else [{"key": key} for key in keys]}
        if rest == ["index"]:
            return {"operation_id": 0, "status": "completed"}
        if rest == ["points"] and method == "PUT":
            store.upsert(name, body, wait)
            return {"operation_id": 0, "status": "completed" if wait else "acknowledged"}
        if rest == ["points", "count"]:
            return {"count": store.count(name)}
        if rest == ["points"] and method == "POST":
            return store.retrieve(name, body)
        if rest == ["points", "scroll"]:
            store.note_scroll("rest")
            request = models.ScrollRequest.model_validate(body)
            points, offset = store.call(
                "scroll",
                name,
                scroll_filter=store.keyed_filter(name, request.shard_key, request.filter),
                limit=request.limit or 10,
                offset=request.offset,
                with_payload=True,
                with_vectors=bool(request.with_vector),
            )
            return {"points": points, "next_page_offset": offset}
        if rest == ["points", "delete"]:
            selector: Any = (
                models.PointIdsList.model_validate(body)
                if "points" in body
                else models.FilterSelector.model_validate(body)
            )
            store.note_delete(name, wait, selector)
            store.call("delete", name, points_selector=selector)
            return {"operation_id": 0, "status": "completed"}
        if rest == ["points", "query"]:
            request = models.QueryRequest.model_validate(body)
            return store.call(
                "query_points",
                name,
                query=request.query,
                using=request.using,
                limit=request.limit or 10,
                with_payload=False,
            )
        raise KeyError("/".join(parts))


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's backlog is 5: the connections of parallel partitions with several upserts
    # in flight each overflowed it, and the dropped connects timed out.
    request_queue_size = 128

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client killed mid-request (the kill tests do that) is no server error."""
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


def serve_rest(store: Store, port: int = 0, faults: Faults | None = None) -> ThreadingHTTPServer:
    """Serve `store` on loopback from a daemon thread; `shutdown()` stops it."""
    handler = type("Handler", (RestHandler,), {"store": store, "faults": faults or Faults()})
    server = _Server(("127.0.0.1", port), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="qdrant-rest", daemon=True).start()
    return server


@contextlib.contextmanager
def running(path: str = ":memory:") -> Iterator[tuple[str, Store, Faults]]:
    """(url, store, faults) of a stand-in in this process, until the block ends."""
    store, faults = Store(path), Faults()
    server = serve_rest(store, 0, faults)
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", store, faults
    finally:
        server.shutdown()
        server.server_close()
        store.local.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default=":memory:", help="local-mode directory (or :memory:)")
    args = parser.parse_args()
    server = serve_rest(Store(args.path), args.port)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.shutdown()


if __name__ == "__main__":
    main()
