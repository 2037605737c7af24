"""The pieces sources share, so that a source module holds only what is its own.

- `FilterDialect` + `split_filter`: a Qdrant filter cut into what a backend evaluates
  itself and a residual the engine evaluates; a source gives only its per-condition table.
- `even_ranges`, `key_ranges`, `balance`: partition arithmetic.
- `gather`: small reads joined into pages of about a batch.
- `Throttle`: a request rate shared by every thread of a source.
- `SAMPLE_RECORDS`, `payload_fields`: what describe() samples to name payload fields.
- `page_matrices`: a page's dense vectors gathered into one matrix per vector name.
- `first_line`: a client exception as the one line the engine prints before data moves;
  `some_of`: the names a "does not exist" message lists.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import numpy as np

from qmigrate.records import Record

T = TypeVar("T")
Pushed = TypeVar("Pushed")  # a backend's filter: a Chroma `where`, an FT query string...
Condition = dict[str, Any]
QdrantFilter = dict[str, Any]

FILTER_CLAUSES = ("must", "should", "must_not", "min_should")
SAMPLE_RECORDS = 100  # records describe() reads to name the payload fields


# --- filter pushdown ------------------------------------------------------------------


@dataclass(frozen=True)
class FilterDialect(Generic[Pushed]):
    """How one backend writes the conditions whose result equals Qdrant's exactly.

    `condition` and `negation` return None for a condition the backend would evaluate
    differently; it then stays in the residual. `negation=None`: no `must_not` is pushed.
    `nested`: a nested filter is pushed when all of it translates.
    """

    condition: Callable[[Condition], Pushed | None]
    all_of: Callable[[list[Pushed]], Pushed]
    any_of: Callable[[list[Pushed]], Pushed]
    negation: Callable[[Condition], Pushed | None] | None = None
    nested: bool = True


def is_nested(condition: Condition) -> bool:
    return any(clause in condition for clause in FILTER_CLAUSES)


def split_filter(
    filter: QdrantFilter, dialect: FilterDialect[Pushed]
) -> tuple[Pushed, QdrantFilter | None] | tuple[None, QdrantFilter | None]:
    """(what the backend evaluates, the Qdrant filter left for the engine). Typed as two
    tuples, not one of `Pushed | None`: unpacking that one made mypy infer Pushed | None.

    Their conjunction selects exactly what `filter` selects: `must` and `must_not`
    conditions move one by one, `should` only as a whole, `min_should` never.
    """
    pushed: list[Pushed] = []
    residual: QdrantFilter = {}
    for condition in filter.get("must") or []:
        translated = _translate(condition, dialect)
        if translated is None:
            residual.setdefault("must", []).append(condition)
        else:
            pushed.append(translated)
    should = filter.get("should") or []
    if should:
        alternatives = [_translate(c, dialect) for c in should]
        if all(a is not None for a in alternatives):
            pushed.append(dialect.any_of(alternatives))  # type: ignore[arg-type]
        else:
            residual["should"] = should
    for condition in filter.get("must_not") or []:
        negated = None
        if dialect.negation is not None and not is_nested(condition):
            negated = dialect.negation(condition)
        if negated is None:
            residual.setdefault("must_not", []).append(condition)
        else:
            pushed.append(negated)
    if filter.get("min_should"):
        residual["min_should"] = filter["min_should"]
    if not pushed:
        return None, residual or None
    return dialect.all_of(pushed), residual or None


def _translate(condition: Condition, dialect: FilterDialect[Pushed]) -> Pushed | None:
    if not is_nested(condition):
        return dialect.condition(condition)
    if not dialect.nested:
        return None
    pushed, residual = split_filter(condition, dialect)
    return pushed if residual is None else None


def plain_key(condition: Condition) -> str | None:
    """The condition's key when it names a top-level field (no nested path or array syntax)."""
    key = condition.get("key")
    if not isinstance(key, str) or not key or any(c in key for c in ".[]"):
        return None
    return key


# --- partitions -----------------------------------------------------------------------


def even_ranges(start: int, end: int, n: int) -> list[tuple[int, int]]:
    """[start, end) cut into min(n, end - start) ranges of about equal length (one if empty)."""
    n = max(1, min(n, end - start))
    bounds = [start + (end - start) * i // n for i in range(n + 1)]
    return list(itertools.pairwise(bounds))


def key_ranges(keys: list[Any], n: int) -> list[tuple[Any, Any]]:
    """(after, upto] ranges splitting sorted `keys` into about `n` equal runs; open at both
    ends, so keys written later still fall into some range."""
    n = max(1, min(n, len(keys)))
    cuts = [keys[len(keys) * i // n - 1] for i in range(1, n)]
    bounds: list[Any] = [None, *cuts, None]
    return list(itertools.pairwise(bounds))


def balance(units: list[tuple[int, T]], k: int) -> list[list[T]]:
    """Weighted units into at most k groups of about equal weight, largest first."""
    groups: list[list[T]] = [[] for _ in range(min(k, len(units)))]
    loads = [0] * len(groups)
    for weight, unit in sorted(units, key=lambda pair: -pair[0]):
        lightest = loads.index(min(loads))
        groups[lightest].append(unit)
        loads[lightest] += weight
    return groups


# --- pages ----------------------------------------------------------------------------


def gather(pieces: Iterable[tuple[list[T], Any]], size: int) -> Iterator[tuple[list[T], Any]]:
    """Join (items, cursor after them) pieces into lists of at least `size` items (the last
    may hold fewer), each with the cursor of its last piece, so a resume stays exact."""
    items: list[T] = []
    cursor: Any = None
    for piece, cursor in pieces:
        items += piece
        if len(items) >= size:
            yield items, cursor
            items = []
    if items:
        yield items, cursor


# --- requests -------------------------------------------------------------------------


class Throttle:
    """Spaces requests `1/rate` seconds apart across every thread of the source."""

    def __init__(self, rate: float | None) -> None:
        self.interval = 1 / rate if rate else 0.0
        self.next_slot = 0.0
        self.lock = threading.Lock()

    def wait(self) -> None:
        if not self.interval:
            return
        with self.lock:
            now = time.monotonic()
            slot = max(now, self.next_slot)
            self.next_slot = slot + self.interval
        if slot > now:
            time.sleep(slot - now)


SHOWN_NAMES = 20


def some_of(names: Iterable[str], nothing: str) -> str:
    """What exists, for a "does not exist (it has: ...)" message: sorted, the first 20."""
    ordered = sorted(names)
    shown = ", ".join(ordered[:SHOWN_NAMES]) or nothing
    if len(ordered) > SHOWN_NAMES:
        shown += f" and {len(ordered) - SHOWN_NAMES} more"
    return shown


def first_line(exc: BaseException) -> str:
    """A client exception's own message, first line only (its `message` if it has one)."""
    message = getattr(exc, "message", None)
    text = message if isinstance(message, str) and message else str(exc)
    lines = text.strip().splitlines()
    return lines[0] if lines else type(exc).__name__


# --- describe -------------------------------------------------------------------------


def payload_fields(payloads: Iterable[dict[str, Any] | None], *extra: str | None) -> list[str]:
    """The payload keys seen in a sample of records, plus the fields a source adds itself."""
    keys = {key for payload in payloads for key in payload or {}}
    keys.update(name for name in extra if name)
    return sorted(keys)


# --- pages ----------------------------------------------------------------------------


def page_matrices(records: list[Record]) -> dict[str, np.ndarray]:
    """For each vector name that every record holds as a float32 row of one length, the
    rows copied into one matrix, and each record's vector replaced by its row of it
    (`Page.matrices`): the engine then checks a page once instead of once per record.

    For sources that decode each record's vector from its own bytes (Redis blobs, pgvector's
    binary format, Qdrant's packed gRPC field): the copy costs less than the per-record
    checks it saves (bench/BENCHMARKS.md, "Vectors as arrays")."""
    if not records:
        return {}
    matrices = {}
    for name, first in records[0].vectors.items():
        if not (isinstance(first, np.ndarray) and first.dtype == np.float32 and first.ndim == 1):
            continue
        rows = [
            row
            for record in records
            if isinstance(row := record.vectors.get(name), np.ndarray)
            and row.dtype == np.float32
            and row.shape == first.shape
        ]
        if len(rows) == len(records):
            matrix = np.stack(rows)
            for record, row in zip(records, matrix, strict=True):
                record.vectors[name] = row
            matrices[name] = matrix
    return matrices
