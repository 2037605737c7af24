"""The smallest source that keeps the contract: records in a list, built from the kit.

It is the contract suite's own check (a suite that fails this source is wrong) and the
example to copy when writing a new source.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from qmigrate.mapping import ClientFilter
from qmigrate.records import Page, Partition, Record, SourceInfo, VectorField
from qmigrate.sources import kit

Predicate = Callable[[dict[str, Any]], bool]  # the toy backend's query: a test on a payload


class ReferenceSource:
    def __init__(self, records: list[Record], batch_size: int) -> None:
        self.records = records
        self.batch_size = batch_size
        self.label = "reference (in memory)"
        self.pushed: Predicate | None = None
        self.closed = 0

    def push_down(self, filter: dict[str, Any] | None) -> dict[str, Any] | None:
        """A toy backend that evaluates string matches itself: the rest is the residual."""
        if not filter:
            return None
        self.pushed, residual = kit.split_filter(filter, DIALECT)
        return residual

    def describe(self) -> SourceInfo:
        size = len(next(iter(self.records[0].vectors.values())))
        return SourceInfo(
            count=len(self.records),
            vectors=[VectorField("vector", "dense", size, "Cosine")],
            payload_fields=kit.payload_fields(
                r.payload for r in self.records[: kit.SAMPLE_RECORDS]
            ),
            details={"pushed": self.pushed is not None},
        )

    def partitions(self, n: int) -> list[Partition]:
        ranges = kit.even_ranges(0, len(self.records), n)
        return [Partition(f"{i:04d}", {"start": a, "end": b}) for i, (a, b) in enumerate(ranges)]

    def read(self, partition: Partition, cursor: Any) -> Iterator[Page]:
        """The cursor is the position after the last record handed out."""
        start = partition.spec["start"] if cursor is None else cursor
        end = partition.spec["end"]

        def pieces() -> Iterator[tuple[list[Record], int]]:
            for position in range(start, end):
                record = self.records[position]
                yield ([record] if self._selected(record) else []), position + 1

        for records, after in kit.gather(pieces(), self.batch_size):
            yield Page(records, after)

    def explain(self, exc: Exception) -> str:
        return kit.first_line(exc)

    def close(self) -> None:
        self.closed += 1

    def _selected(self, record: Record) -> bool:
        return self.pushed is None or self.pushed(record.payload)


def _condition(condition: dict[str, Any]) -> Predicate | None:
    """A string `match value` on a top-level key, with Qdrant's meaning: the value, or a
    list holding it."""
    key, match = kit.plain_key(condition), condition.get("match") or {}
    value = match.get("value")
    if key is None or not isinstance(value, str):
        return None

    def predicate(payload: dict[str, Any]) -> bool:
        found = payload.get(key)
        return found == value or (isinstance(found, list) and value in found)

    return predicate


def _negation(condition: dict[str, Any]) -> Predicate | None:
    predicate = _condition(condition)
    return None if predicate is None else lambda payload: not predicate(payload)


DIALECT: kit.FilterDialect[Predicate] = kit.FilterDialect(
    _condition,
    all_of=lambda parts: lambda payload: all(part(payload) for part in parts),
    any_of=lambda parts: lambda payload: any(part(payload) for part in parts),
    negation=_negation,
)


def selected_ids(records: list[Record], filter: dict[str, Any] | None) -> set[Any]:
    """What Qdrant's filter selects among the records, by the engine's client-side filter."""
    if filter is None:
        return {r.id for r in records}
    client_filter = ClientFilter(filter)
    return {r.id for r in records if client_filter.matches(r)}
