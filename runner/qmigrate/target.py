"""The Qdrant target: what the collection must look like, checking or creating it, writing to it."""

from __future__ import annotations

import inspect
import os
import threading
import uuid
from typing import Any
from urllib.parse import urlsplit

from qdrant_client import models
from qdrant_client.local.qdrant_local import QdrantLocal

from qmigrate import wire
from qmigrate.collection_layout import (
    Layout,
    index_schema,
    names,
    quantization,
    sparse_params,
    vector_params,
)
from qmigrate.errors import QmigrateError
from qmigrate.qdrant_connection import QdrantConnection, connect
from qmigrate.records import IndexSpec, SourceInfo
from qmigrate.redaction import without_credentials
from qmigrate.retry import retried
from qmigrate.shard_keys import ShardKey, ShardKeys
from qmigrate.spec import TargetSpec
from qmigrate.strict_mode import StrictMode, StrictWrites, too_large

DEFAULT_HNSW_M = 16
# Requests aim at a few MiB (Qdrant's bulk-load advice); the engine joins pages up to this.
REQUEST_BYTES = 4 * 1024 * 1024
# Qdrant refuses requests over 32 MiB by default; a request is split well below that.
MAX_REQUEST_BYTES = 16 * 1024 * 1024
# Whether this qdrant-client's local mode takes upsert's update_mode (insert_only).
LOCAL_UPDATE_MODE = "update_mode" in inspect.signature(QdrantLocal.upsert).parameters


class QdrantTarget:
    """The collection the job writes into; calls go through the connection's lock."""

    def __init__(self, spec: TargetSpec, read_only: bool = False) -> None:
        self.spec = spec
        self.collection = spec.collection
        self.connection: QdrantConnection = connect(
            path=spec.path,
            url=spec.url,
            api_key=spec.api_key,
            prefer_grpc=spec.prefer_grpc,
            grpc_port=spec.grpc_port,
            timeout=spec.timeout,
            role="target",
            create=not read_only,
        )
        self.client = self.connection.client
        self._acknowledge_only: bool | None = None
        # on_existing: keep writes insert-only: a point the collection holds is left alone.
        self.insert_only = spec.on_existing == "keep"
        # target.shard_key: custom sharding (local mode has no shards, and ignores it).
        self.shard_keys = ShardKeys(spec)
        self._strict: StrictWrites | None = None  # read at the first write
        self._strict_lock = threading.Lock()
        self.rate_share = 1  # processes that write at once, sharing the write rate limit
        if self.connection.local:
            self._write = self._write_models
        elif self.connection.grpc:
            self._grpc_upsert = wire.encoded_upsert_call(self.client)
            self._write = self._write_grpc
        else:
            self._write = self._write_rest

    @property
    def identity(self) -> dict[str, str]:
        """Where the points go, as checkpoints record it: a real path, or the server URL
        without any credentials in it (checkpoints are data, and outlive a key)."""
        where = self.connection.where
        if self.spec.path and where != ":memory:":
            where = os.path.realpath(where)
        elif self.spec.url:
            where = without_credentials(urlsplit(where).geturl())
        return {"location": where, "collection": self.collection}

    def close(self) -> None:
        self.connection.close()

    def existing(self) -> models.CollectionInfo | None:
        with self.connection.lock:
            if not self.client.collection_exists(self.collection):
                return None
            return self.client.get_collection(self.collection)

    def mismatches(self, info: models.CollectionInfo, layout: Layout) -> list[str]:
        """Why an existing collection cannot take this layout; empty when it can."""
        params = info.config.params
        dense = params.vectors
        named_dense: dict[str, models.VectorParams] = (
            {"": dense} if isinstance(dense, models.VectorParams) else dict(dense or {})
        )
        sparse = dict(params.sparse_vectors or {})
        problems = []
        for name, field in layout.items():
            label = f"vector '{name}'" if name else "the unnamed vector"
            if field.kind == "sparse":
                have_sparse = sparse.get(name)
                if have_sparse is None:
                    problems.append(f"sparse {label} is missing (it has: {names(sparse)})")
                    continue
                want = field.options.get("modifier")
                have = have_sparse.modifier.value if have_sparse.modifier else "none"
                if want and want != have:
                    problems.append(f"sparse {label} has modifier {have}, the job wants {want}")
                continue
            have_dense = named_dense.get(name)
            if have_dense is None:
                problems.append(f"{label} is missing (it has: {names(named_dense)})")
                continue
            if have_dense.size != field.size:
                problems.append(f"{label} has size {have_dense.size}, the source has {field.size}")
            if have_dense.distance.value != field.distance:
                problems.append(
                    f"{label} has distance {have_dense.distance.value}, "
                    f"the source has {field.distance}"
                )
            is_multi = have_dense.multivector_config is not None
            if is_multi != (field.kind == "multi"):
                kinds = ("a multi-vector", "a single vector")
                problems.append(
                    f"{label} is {kinds[not is_multi]}, the source has {kinds[is_multi]}"
                )
        sharding = None if self.connection.local else self.shard_keys.mismatch(info)
        return problems + ([sharding] if sharding else [])

    def create_arguments(self, layout: Layout, info: SourceInfo) -> dict[str, Any]:
        """Everything create_collection is asked for: source settings, then the job's overrides."""
        dense = {n: vector_params(f) for n, f in layout.items() if f.kind != "sparse"}
        sparse = {n: sparse_params(f) for n, f in layout.items() if f.kind == "sparse"}
        settings = dict(info.collection_settings)
        overrides = {
            "hnsw_config": self.spec.hnsw,
            "quantization_config": self.spec.quantization,
            "shard_number": self.spec.shards,
            "replication_factor": self.spec.replication_factor,
            "on_disk_payload": self.spec.on_disk_payload,
            "payload": self.spec.payload_storage,  # memory tiers, passed as written
            "id_tracker": self.spec.id_tracker,
        }
        settings.update({k: v for k, v in overrides.items() if v is not None})
        if self.connection.local:
            # Local mode has no shards or replicas; a server honours them.
            for key in ("shard_number", "replication_factor", "write_consistency_factor"):
                settings.pop(key, None)
        arguments: dict[str, Any] = {
            "collection_name": self.collection,
            "vectors_config": dense[""] if list(dense) == [""] else dense,
        }
        if sparse:
            arguments["sparse_vectors_config"] = sparse
        if self.shard_keys.custom and not self.connection.local:
            arguments["sharding_method"] = models.ShardingMethod.CUSTOM
        if "hnsw_config" in settings:
            arguments["hnsw_config"] = models.HnswConfigDiff(**settings.pop("hnsw_config"))
        if "quantization_config" in settings:
            arguments["quantization_config"] = quantization(settings.pop("quantization_config"))
        arguments.update(settings)
        return arguments

    def create(self, layout: Layout, info: SourceInfo) -> models.CollectionInfo | None:
        """Create the collection; None when this run made it. Another run that made it
        first (two jobs starting at once) is no failure: its collection is returned once
        its layout is checked, as if it had been there at the start."""
        arguments = self.create_arguments(layout, info)

        def create() -> None:
            with self.connection.lock:
                self.client.create_collection(**arguments)

        try:
            retried(create, f"target: creating collection '{self.collection}'")
        except Exception:
            existing = self.existing()
            if existing is None:
                raise
            problems = self.mismatches(existing, layout)
            if problems:
                raise QmigrateError(
                    f"target collection '{self.collection}' was created by another run "
                    "meanwhile and is incompatible: " + "; ".join(problems)
                ) from None
            return existing
        return None

    def missing_payload_indexes(
        self, wanted: dict[str, IndexSpec], info: models.CollectionInfo | None
    ) -> dict[str, IndexSpec]:
        """Indexes `info` (None: a collection not there yet) lacks; none in local mode,
        which has no payload indexes."""
        if self.connection.local:
            return {}
        have = set(info.payload_schema) if info is not None else set()
        return {k: v for k, v in wanted.items() if k not in have}

    def create_payload_indexes(self, indexes: dict[str, IndexSpec]) -> None:
        """Indexes go in before the data, so Qdrant builds them as points arrive."""
        for field_name, spec in indexes.items():
            with self.connection.lock:
                self.client.create_payload_index(
                    self.collection,
                    field_name=field_name,
                    field_schema=index_schema(spec),
                    wait=True,
                )

    def hnsw_m(self) -> int:
        info = self.existing()
        if info is None or info.config.hnsw_config.m is None:
            return DEFAULT_HNSW_M
        return info.config.hnsw_config.m

    def set_hnsw_m(self, m: int) -> None:
        """m=0 defers building the HNSW graph (bulk load); a positive m builds it again."""
        with self.connection.lock:
            self.client.update_collection(self.collection, hnsw_config=models.HnswConfigDiff(m=m))

    def drop(self) -> None:
        with self.connection.lock:
            self.client.delete_collection(self.collection)

    def existing_ids(self, ids: list[Any]) -> set[Any]:
        """Which of these point IDs the collection holds."""
        if not ids:
            return set()
        with self.connection.lock:
            found = self.client.retrieve(
                self.collection, ids, with_payload=False, with_vectors=False
            )
        return {point.id for point in found}

    def retrieve(self, ids: list[Any]) -> dict[Any, models.Record]:
        """These points with vectors and payload, by ID (absent ones left out)."""
        with self.connection.lock:
            found = self.client.retrieve(self.collection, ids, with_payload=True, with_vectors=True)
        return {point.id: point for point in found}

    def search(self, vector_name: str, vector: list[float], k: int, exact: bool) -> list[Any]:
        """IDs of the k nearest points; `exact` bypasses the index."""
        with self.connection.lock:
            response = self.client.query_points(
                self.collection,
                query=vector,
                using=vector_name or None,
                limit=k,
                with_payload=False,
                # Local mode always searches exactly, and warns about search_params.
                search_params=None if self.connection.local else models.SearchParams(exact=exact),
            )
        return [point.id for point in response.points]

    @property
    def in_flight(self) -> int:
        """Upserts a partition keeps out at once; local mode writes one at a time anyway."""
        return 1 if self.connection.local else self.spec.in_flight

    @property
    def acknowledge_only(self) -> bool:
        """Whether data upserts may return on acknowledgement (wait=false), once the server
        has them in its write-ahead log, without waiting for them to be applied.

        Only for a server collection of one shard and one replica: its updates are applied
        in order, so one later waited update (`barrier`) settles all of them. With several
        shards a barrier would have to reach every shard, and replicas may apply updates in
        different orders, so each upsert waits instead.
        """
        if self._acknowledge_only is None:
            info = None
            if not self.connection.local:
                info = retried(self.existing, f"target: reading collection '{self.collection}'")
            params = info.config.params if info is not None else None
            self._acknowledge_only = (
                params is not None
                and not self.shard_keys.custom  # a shard per key: several shards
                and params.sharding_method != models.ShardingMethod.CUSTOM
                and params.shard_number == 1
                and (params.replication_factor or 1) == 1
            )
        return self._acknowledge_only

    def barrier(self) -> None:
        """Return once every update acknowledged before it is applied: a wait=true delete of a
        point no job writes (a fresh random UUID; deleting a missing point changes nothing),
        which the shard applies after them, in write-ahead-log order. It needs no point of
        the job's, so a run that resumes with nothing left to write sends it too."""
        selector = models.PointIdsList(points=[str(uuid.uuid4())])
        with self.connection.lock:
            self.client.delete(self.collection, points_selector=selector, wait=True)

    def strict_writes(self) -> StrictWrites:
        """Strict mode as the first write finds it (a collection this run created may have
        the server's default one), with the throttle every writer of the process shares."""
        with self._strict_lock:
            if self._strict is None:
                read = f"target: reading collection '{self.collection}'"
                info = None if self.connection.local else retried(self.existing, read)
                self._strict = StrictWrites(StrictMode.of(info), self.rate_share)
            return self._strict

    def upsert(
        self,
        points: list[models.PointStruct],
        wait: bool = True,
        source_key: ShardKey | None = None,
        stop: Any = None,
    ) -> int:
        """Write `points`; with `wait`, return once they are applied, else once the server
        acknowledges them. Returns the bytes sent (0 in local mode, which sends none).
        With custom sharding, one request per shard key, each key created before it;
        `source_key` is the shard key the points had in the source (`shard_key.from_source`).
        Under strict mode, requests within its limits, paced to its rate (`stop` ends a wait)."""
        groups: dict[Any, list[models.PointStruct]] = {None: points}
        if self.shard_keys.custom and not self.connection.local:
            groups = dict(self.shard_keys.grouped(points, source_key))
            self.shard_keys.ensure(groups, self.client, self.connection.lock, self.collection)
        paced = self.strict_writes()
        requests = ((k, r) for k, group in groups.items() for r in paced.requests(group, stop))
        return sum(self._write(request, wait, key) for key, request in requests)

    def _write_models(
        self, points: list[models.PointStruct], wait: bool, key: ShardKey | None
    ) -> int:
        """Local mode takes the models themselves, and applies them at once. They go straight
        to the local engine (`_client`): `QdrantClient.upsert` first walks every point and
        every number in it for local-inference objects, which mapped points never hold (a
        tenth of a JSONL job's CPU); every local-mode test goes through this private handle."""
        with self.connection.lock:
            if self.insert_only and not LOCAL_UPDATE_MODE:
                # An older qdrant-client's local mode has no update_mode: the points it holds
                # are left out, under the lock, so nothing writes in between.
                held = self.client._client.retrieve(
                    self.collection, [p.id for p in points], with_payload=False, with_vectors=False
                )
                known = {str(p.id) for p in held}
                points = [p for p in points if str(p.id) not in known]
                if not points:
                    return 0
            self.client._client.upsert(
                self.collection,
                wire.local_points(points),
                wait=True,
                **(
                    {"update_mode": models.UpdateMode.INSERT_ONLY}
                    if self.insert_only and LOCAL_UPDATE_MODE
                    else {}
                ),
                **({"shard_key_selector": key} if key is not None else {}),  # tests' servers
            )
        return 0

    def _write_grpc(
        self, points: list[models.PointStruct], wait: bool, key: ShardKey | None
    ) -> int:
        """A server: the request is encoded straight from the points (`wire`)."""
        request = wire.grpc_upsert_request(
            self.collection, points, wait=wait, insert_only=self.insert_only, shard_key=key
        )
        if len(request) > MAX_REQUEST_BYTES and len(points) > 1:
            return self._write_halves(points, wait, key, self._write_grpc)
        self._grpc_upsert(request, timeout=self.spec.timeout)
        return len(request)

    def _write_rest(
        self, points: list[models.PointStruct], wait: bool, key: ShardKey | None
    ) -> int:
        body = wire.rest_upsert_body(points, insert_only=self.insert_only, shard_key=key)
        if len(body) > MAX_REQUEST_BYTES and len(points) > 1:
            return self._write_halves(points, wait, key, self._write_rest)
        try:
            self.client.http.client.request(
                type_=dict,  # the acknowledgement, parsed as plain JSON
                method="PUT",
                url="/collections/{collection_name}/points",
                path_params={"collection_name": self.collection},
                params={"wait": "true" if wait else "false"},
                headers={"Content-Type": "application/json"},
                content=body,
            )
        except Exception as exc:
            if not too_large(exc) or len(points) == 1:
                raise
            return self._write_halves(points, wait, key, self._write_rest)  # a lower size limit
        return len(body)

    @staticmethod
    def _write_halves(
        points: list[models.PointStruct], wait: bool, key: ShardKey | None, write: Any
    ) -> int:
        """A batch too large for one request (wide vectors, big payloads) goes in halves."""
        middle = len(points) // 2
        return write(points[:middle], wait, key) + write(points[middle:], wait, key)

    def count(self) -> int:
        with self.connection.lock:
            return self.client.count(self.collection, exact=True).count
