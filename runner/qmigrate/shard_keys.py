"""`target.shard_key`: writing into a Qdrant collection with custom sharding.

The collection is created with `sharding_method: custom`; each shard key is created before
the first point is sent to it (Qdrant answers an error for a key that exists, which is no
failure here: another run, or an earlier one, made it); every upsert names its key (REST
`shard_key`, gRPC `UpsertPoints.shard_key_selector`), one request per key. A key is fixed
(`{value: eu}`), read from each mapped point's payload (`{field: region}`; a point
without a key there is an invalid record, like any other that cannot be mapped), or the key
the point had in a source collection with custom sharding (`{from_source: true}`, the
default for such a source): the source reads one key per partition, and the partition's
points keep it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from typing import Any

from qdrant_client import models

from qmigrate import payload_paths as paths
from qmigrate.retry import retried
from qmigrate.spec import TargetSpec

ShardKey = str | int


def is_shard_key(value: Any) -> bool:
    """Qdrant's ShardKey: a string, or an unsigned 64-bit integer."""
    if isinstance(value, str):
        return bool(value)
    return type(value) is int and 0 <= value < 2**64


def already_exists(exc: BaseException) -> bool:
    """Qdrant's answer to creating a key that exists: "Shard key ... already exists" (REST
    400, gRPC INVALID_ARGUMENT, whose text is its `details()`)."""
    details = getattr(exc, "details", None)
    text = details() if callable(details) else str(exc)
    return "already exists" in str(text)


class ShardKeys:
    """Which shard key each point goes to, and the keys this target created or found."""

    def __init__(self, spec: TargetSpec) -> None:
        config = spec.shard_key or {}
        self.custom = spec.shard_key is not None
        self.from_source: bool = config.get("from_source", False)
        self.source_keys: list[ShardKey] | None = None
        self.fixed: ShardKey | None = config.get("value")
        self.field: str | None = config.get("field")
        self.path = paths.parse(self.field) if self.field else None
        self.created: set[ShardKey] = set()
        self.lock = threading.Lock()

    def follow_source(self, source_keys: list[ShardKey] | None, unset: bool) -> None:
        """Take the source's shard keys: a job that says nothing of shard keys keeps them."""
        self.source_keys = source_keys
        if unset and source_keys is not None:
            self.custom = self.from_source = True

    def refusal(self) -> str | None:
        """Why `{from_source: true}` cannot work: the source has no shard keys to keep."""
        if self.from_source and self.source_keys is None:
            return (
                "target.shard_key.from_source needs a source collection with custom sharding "
                "(a Qdrant server's); this source has none: set {value: KEY} or {field: PATH}"
            )
        return None

    def invalid(self, payload: dict[str, Any]) -> str | None:
        """Why a mapped point's payload gives no shard key; None when it does (or when the
        key is fixed)."""
        if self.path is None:
            return None
        found, value = paths.take(payload, self.path)
        if not found:
            return f"payload field '{self.field}' (target.shard_key) is missing"
        if not is_shard_key(value):
            return (
                f"payload field '{self.field}' (target.shard_key) is {value!r}, "
                "no shard key (a non-empty string or an unsigned integer)"
            )
        return None

    def of(self, point: models.PointStruct) -> ShardKey:
        if self.path is None:
            assert self.fixed is not None
            return self.fixed
        return paths.take(point.payload or {}, self.path)[1]

    def grouped(
        self, points: list[models.PointStruct], source_key: ShardKey | None
    ) -> dict[ShardKey, list[models.PointStruct]]:
        """The points by shard key, in the order each key first occurs; with `from_source`,
        all under `source_key`, the key of the source partition they were read from."""
        if self.from_source:
            assert source_key is not None, "a partition of a sharded source names its key"
            return {source_key: points}
        groups: dict[ShardKey, list[models.PointStruct]] = {}
        for point in points:
            groups.setdefault(self.of(point), []).append(point)
        return groups

    def ensure(
        self, keys: Iterable[ShardKey], client: Any, lock: AbstractContextManager[Any], name: str
    ) -> None:
        """Create each key of collection `name` this target has not created yet; one that
        exists already is fine (another run, or an earlier one, made it)."""

        def create(key: ShardKey) -> Callable[[], None]:
            def call() -> None:
                try:
                    with lock:
                        client.create_shard_key(name, key)
                except Exception as exc:
                    if not already_exists(exc):
                        raise

            return call

        for key in keys:
            with self.lock:  # a key is created once, even with several upserts out
                if key not in self.created:
                    retried(create(key), f"target: creating shard key {key!r} of '{name}'")
                    self.created.add(key)

    def mismatch(self, info: models.CollectionInfo) -> str | None:
        """Why an existing collection's sharding method does not fit the job."""
        method = info.config.params.sharding_method or models.ShardingMethod.AUTO
        custom = method == models.ShardingMethod.CUSTOM
        if self.custom and not custom:
            return (
                "it has auto sharding, and target.shard_key needs custom sharding "
                "(sharding_method: custom)"
            )
        if custom and not self.custom:
            return "it has custom sharding: set target.shard_key to say which key points go to"
        return None

    def describe(self, local: bool) -> str:
        """What plan says about sharding."""
        if not self.custom:
            return "auto"
        if self.from_source:
            keys = ", ".join(repr(key) for key in self.source_keys or [])
            where = f"each point keeps its source shard key (the source holds {keys or 'none'})"
        elif self.field is not None:
            where = f"shard key from payload field '{self.field}'"
        else:
            where = f"shard key {self.fixed!r}"
        if local:
            return f"custom, {where} (local mode has no shards: points are written without it)"
        return f"custom, {where}, each key created before its first point"
