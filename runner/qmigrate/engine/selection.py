"""What a job moves of the records a source yields: its residual filter, then its mapping.

`apply`'s loop, the count check's second reading and `verify` all ask this one piece, so they
agree on which records the job selects and what point each becomes.
"""

from __future__ import annotations

from collections.abc import Collection

from qdrant_client import models

from qmigrate.engine.wiring import Resolved
from qmigrate.mapping import ClientFilter, InvalidRecord, Mapper
from qmigrate.records import Record


class Selection:
    def __init__(self, resolved: Resolved) -> None:
        self.mapper = Mapper(resolved.job.mapping, resolved.layout)
        residual = resolved.residual_filter
        self.filter = ClientFilter(residual) if residual else None
        self.shard_keys = resolved.target.shard_keys  # {field: ...}: a point must hold its key

    def point(self, record: Record, finite: Collection[str] = ()) -> models.PointStruct | None:
        """The record's point, or None when the job leaves it out (the part of the filter the
        source could not take, or a record the source counts but must not move); raises
        `InvalidRecord` when it cannot be mapped, or gives no shard key."""
        if record.skipped or (self.filter is not None and not self.filter.matches(record)):
            return None
        point = self.mapper.to_point(record, finite)
        if (no_key := self.shard_keys.invalid(point.payload or {})) is not None:
            raise InvalidRecord(no_key)
        return point
