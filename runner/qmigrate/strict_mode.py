"""Strict mode on the target collection: its limits obeyed instead of tripped over.

A Qdrant collection whose `strict_mode_config.enabled` is true refuses, with a 400, an
upsert of more points than `upsert_max_batchsize`, and any upsert once the collection holds
`max_points_count` points or `max_collection_vector_size_bytes` / `..._payload_size_bytes`
of storage; its `write_rate_limit` is a token bucket of that many points a minute (full at
the start, one token per point an update touches), which answers 429 with Retry-After, or
without it for a request larger than the whole bucket, which never passes.

So requests carry at most `points_per_request` points, every writer of a process takes
tokens from one bucket of the same size and rate before it sends (`WriteThrottle`), and
plan and apply refuse, before data moves, a job that cannot fit (`refusals`). Qdrant keeps
a bucket per shard replica; one bucket for the whole collection is the cautious reading.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from qdrant_client import models

from qmigrate.errors import QmigrateError
from qmigrate.retry import http_status

# The client's bucket fills this much slower than the server's, so that the jitter between
# when a request leaves and when the server counts it does not cost a 429.
RATE_MARGIN = 0.95
ELEMENT_BYTES = {"float32": 4, "float16": 2, "uint8": 1}


@dataclass(frozen=True)
class StrictMode:
    """The limits of an enabled strict mode that a migration meets (None: not set)."""

    upsert_max_batchsize: int | None = None
    write_rate_limit: int | None = None  # points a minute
    max_points_count: int | None = None
    max_collection_vector_size_bytes: int | None = None
    max_collection_payload_size_bytes: int | None = None

    @classmethod
    def of(cls, info: models.CollectionInfo | None) -> StrictMode | None:
        """The collection's strict mode, or None when it is off (or the collection absent)."""
        config = info.config.strict_mode_config if info is not None else None
        if config is None or not config.enabled:
            return None
        return cls(
            upsert_max_batchsize=config.upsert_max_batchsize,
            write_rate_limit=config.write_rate_limit,
            max_points_count=config.max_points_count,
            max_collection_vector_size_bytes=config.max_collection_vector_size_bytes,
            max_collection_payload_size_bytes=config.max_collection_payload_size_bytes,
        )

    @property
    def points_per_request(self) -> int | None:
        """The most points one upsert may carry: the batch limit, and the rate limit's
        bucket (a larger request is "larger than rate limiter capacity" for ever)."""
        limits = [n for n in (self.upsert_max_batchsize, self.write_rate_limit) if n]
        return min(limits) if limits else None

    def describe(self) -> list[str]:
        """What plan says about each limit set, and what the run does about it."""
        said = []
        if self.upsert_max_batchsize:
            said.append(
                f"upsert_max_batchsize {self.upsert_max_batchsize}: "
                f"at most {self.points_per_request} points a request"
            )
        if self.write_rate_limit:
            said.append(
                f"write_rate_limit {self.write_rate_limit}/min: writes throttled to it, "
                f"at most {self.points_per_request} points a request"
            )
        if self.max_points_count:
            said.append(f"max_points_count {self.max_points_count:,}: checked before the run")
        if self.max_collection_vector_size_bytes:
            said.append(
                f"max_collection_vector_size_bytes {self.max_collection_vector_size_bytes:,}: "
                "checked before the run"
            )
        if self.max_collection_payload_size_bytes:
            said.append(
                f"max_collection_payload_size_bytes {self.max_collection_payload_size_bytes:,}: "
                "payload sizes are not known before reading; Qdrant refuses writes once it "
                "is reached"
            )
        return said or ["enabled, with no limit on writes"]

    def refusals(
        self, collection: str, info: models.CollectionInfo, records: int | None, held: int
    ) -> list[str]:
        """Why a job of up to `records` new points (the source's count, None: unknown) into
        a collection holding `held` points before the job cannot fit, with the numbers."""
        if records is None:
            return []
        reasons = []
        points = held + records
        where = f"target collection '{collection}'"
        if self.max_points_count and points > self.max_points_count:
            reasons.append(
                f"{where}: the source's {records:,} records and the {held:,} points it held "
                f"before the job make up to {points:,} points, above its strict mode "
                f"max_points_count of {self.max_points_count:,}"
            )
        per_point = vector_bytes_per_point(info)
        limit = self.max_collection_vector_size_bytes
        if limit and per_point and points * per_point > limit:
            reasons.append(
                f"{where}: up to {points:,} points of at least {per_point:,} bytes of vectors "
                f"each need {points * per_point:,} bytes, above its strict mode "
                f"max_collection_vector_size_bytes of {limit:,}"
            )
        return reasons


def vector_bytes_per_point(info: models.CollectionInfo) -> int:
    """The least vector storage a point takes: each dense vector's size times its element's
    bytes (a multi-vector holds at least one); sparse vectors, of unknown size, count 0."""
    vectors = info.config.params.vectors
    named = {"": vectors} if isinstance(vectors, models.VectorParams) else dict(vectors or {})
    total = 0
    for params in named.values():
        datatype = params.datatype.value if params.datatype is not None else "float32"
        total += params.size * ELEMENT_BYTES.get(datatype, 4)
    return total


def too_large(exc: BaseException) -> bool:
    """A request over the server's size limit: Qdrant's own answer is a 400 "JSON payload
    (N bytes) is larger than allowed (limit: L bytes)." (service.max_request_size_mb, 32 MiB
    by default); a proxy in front of it answers 413."""
    status = http_status(exc)
    if status == 413:
        return True
    content = getattr(exc, "content", b"")
    text = content.decode(errors="replace") if isinstance(content, bytes) else str(exc)
    return status == 400 and "larger than allowed" in text


class Clock:
    """Time as the throttle sees it; tests put a virtual one in its place (`CLOCK`)."""

    def now(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float, stop: threading.Event | None) -> bool:
        """Wait; True when `stop` was set meanwhile."""
        if stop is None:
            time.sleep(seconds)
            return False
        return stop.wait(seconds)


CLOCK = Clock()


class WriteThrottle:
    """The collection's write rate limit as a token bucket, shared by every writer of this
    process: a point costs a token; the bucket holds a minute's worth (`share` of it when
    that many processes write at once) and starts full, like Qdrant's."""

    def __init__(self, per_minute: int, share: int = 1, clock: Clock | None = None) -> None:
        self.capacity = max(per_minute / share, 1.0)
        self.per_second = self.capacity / 60 * RATE_MARGIN
        self.clock = clock or CLOCK
        self.tokens = self.capacity
        self.since = self.clock.now()
        self.lock = threading.Lock()

    def take(self, points: int, stop: threading.Event | None = None) -> float:
        """Block until `points` tokens are there, and take them; returns the seconds waited.
        The waiting writer holds the bucket, so writers are served in turn."""
        need = min(float(points), self.capacity)
        waited = 0.0
        with self.lock:
            while True:
                now = self.clock.now()
                self.tokens = min(self.capacity, self.tokens + (now - self.since) * self.per_second)
                self.since = now
                if self.tokens >= need:
                    self.tokens -= need
                    return waited
                wait = math.ceil((need - self.tokens) / self.per_second * 1000) / 1000
                if self.clock.sleep(wait, stop):
                    raise QmigrateError("the job stopped while writes waited for the rate limit")
                waited += wait


class StrictWrites:
    """How a process's writes obey the collection's strict mode (None: off)."""

    def __init__(self, strict: StrictMode | None, share: int = 1) -> None:
        self.strict = strict
        self.size = strict.points_per_request if strict is not None else None
        rate = strict.write_rate_limit if strict is not None else None
        self.throttle = WriteThrottle(rate, share) if rate else None
        if self.throttle is not None and self.size is not None:  # a process's share of it
            self.size = min(self.size, int(self.throttle.capacity))

    def requests(self, points: list[Any], stop: threading.Event | None) -> Iterator[list[Any]]:
        """`points` in requests within the batch limit, each once its tokens are taken."""
        size = self.size or len(points) or 1
        for start in range(0, len(points), size):
            request = points[start : start + size]
            if self.throttle is not None:
                self.throttle.take(len(request), stop)
            yield request
