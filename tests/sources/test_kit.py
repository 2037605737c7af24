"""The source kit's arithmetic and filter splitting, on plain values."""

from __future__ import annotations

from typing import Any

import numpy as np

from qmigrate.records import Record, SparseVector
from qmigrate.sources import kit


def test_even_ranges_cover_the_span_without_overlap() -> None:
    assert kit.even_ranges(0, 10, 3) == [(0, 3), (3, 6), (6, 10)]
    assert kit.even_ranges(5, 7, 4) == [(5, 6), (6, 7)], "never more ranges than items"
    assert kit.even_ranges(0, 0, 4) == [(0, 0)], "an empty span is one empty range"


def test_key_ranges_split_sorted_keys_evenly() -> None:
    assert kit.key_ranges([1, 2, 3, 4, 5, 6], 3) == [(None, 2), (2, 4), (4, None)]
    assert kit.key_ranges([], 4) == [(None, None)]
    assert kit.key_ranges(["a"], 4) == [(None, None)]


def test_balance_evens_out_weights() -> None:
    groups = kit.balance([(5, "a"), (4, "b"), (3, "c"), (3, "d"), (1, "e")], 2)
    weights = {"a": 5, "b": 4, "c": 3, "d": 3, "e": 1}
    assert sorted(sum(weights[u] for u in g) for g in groups) == [8, 8]
    assert kit.balance([(1, "a")], 4) == [["a"]], "never more groups than units"


def test_gather_joins_pieces_and_keeps_the_last_cursor() -> None:
    pieces = [([1], "c1"), ([], "c2"), ([2, 3], "c3"), ([4], "c4"), ([5], "c5")]
    assert list(kit.gather(pieces, 3)) == [([1, 2, 3], "c3"), ([4, 5], "c5")]
    assert list(kit.gather([], 3)) == []


# A toy dialect: a condition on key "p" is pushed as its key name; sets of names joined.
DIALECT: kit.FilterDialect[str] = kit.FilterDialect(
    lambda c: c["key"] if c.get("key", "").startswith("p") else None,
    all_of=lambda parts: "(" + " and ".join(parts) + ")",
    any_of=lambda parts: "(" + " or ".join(parts) + ")",
    negation=lambda c: f"not {c['key']}" if c.get("key", "").startswith("p") else None,
)


def cond(key: str) -> dict[str, Any]:
    return {"key": key, "match": {"value": 1}}


def test_must_and_must_not_move_one_by_one() -> None:
    flt = {"must": [cond("p1"), cond("x")], "must_not": [cond("p2"), cond("y")]}
    assert kit.split_filter(flt, DIALECT) == (
        "(p1 and not p2)",
        {"must": [cond("x")], "must_not": [cond("y")]},
    )


def test_should_moves_only_as_a_whole_and_min_should_never() -> None:
    assert kit.split_filter({"should": [cond("p1"), cond("p2")]}, DIALECT) == ("((p1 or p2))", None)
    partly = {"should": [cond("p1"), cond("x")]}
    assert kit.split_filter(partly, DIALECT) == (None, partly)
    at_least = {"min_should": {"conditions": [cond("p1")], "min_count": 1}}
    assert kit.split_filter(at_least, DIALECT) == (None, at_least)


def test_nested_filters_move_whole_or_not_at_all() -> None:
    whole = {"must": [{"should": [cond("p1"), cond("p2")]}]}
    assert kit.split_filter(whole, DIALECT)[1] is None
    part = {"must": [{"must": [cond("p1"), cond("x")]}]}
    assert kit.split_filter(part, DIALECT) == (None, part)
    flat = kit.FilterDialect(DIALECT.condition, DIALECT.all_of, DIALECT.any_of, nested=False)
    assert kit.split_filter(whole, flat) == (None, whole)
    negated_nested = {"must_not": [{"must": [cond("p1")]}]}
    assert kit.split_filter(negated_nested, DIALECT) == (None, negated_nested)


def test_page_matrices_gather_only_vectors_every_record_holds_as_float32_rows() -> None:
    def record(i: int, **vectors: Any) -> Record:
        return Record(i, vectors)

    rows = np.arange(12, dtype=np.float32).reshape(3, 4)
    records = [
        record(
            i,
            dense=rows[i].copy(),
            wide=np.ones(i + 1, dtype=np.float32),  # lengths differ
            doubles=np.ones(4),  # float64: left to the per-record check
            listed=[1.0, 2.0],
            sparse=SparseVector([1], [1.0]),
            **({"some": np.ones(4, dtype=np.float32)} if i else {}),  # the first lacks it
        )
        for i in range(3)
    ]
    matrices = kit.page_matrices(records)
    assert list(matrices) == ["dense"]
    assert np.array_equal(matrices["dense"], rows)
    for i, r in enumerate(records):
        assert np.shares_memory(r.vectors["dense"], matrices["dense"])
        assert np.array_equal(r.vectors["dense"], rows[i])
    assert kit.page_matrices([]) == {}
    missing = [record(0, v=np.ones(4, dtype=np.float32)), record(1)]
    assert kit.page_matrices(missing) == {}
