"""Sampled equality: the target's points, fetched by ID, against the source records mapped
exactly as `apply` maps them, field by field and with each datatype's tolerance."""

from __future__ import annotations

import json
import threading
from typing import Any

import numpy as np
from qdrant_client import models

from qmigrate.collection_layout import Layout
from qmigrate.engine import Resolved
from qmigrate.records import Record, VectorField

SHOWN_DIFFERENCES = 10  # differences listed per check
FETCH_BATCH = 256  # target points retrieved per request

TOLERANCE = {"float32": (1e-5, 1e-6), "float16": (2e-3, 2e-3), "uint8": (0.0, 1.0)}


class Comparer:
    """Fetches the points of source records from the target and compares them field by field."""

    def __init__(self, resolved: Resolved) -> None:
        self.target = resolved.target
        self.layout = resolved.layout
        self.lock = threading.Lock()
        self.compared = 0
        self.failed = 0
        self.differences: list[str] = []

    def compare(self, pairs: list[tuple[Record, models.PointStruct]]) -> None:
        for start in range(0, len(pairs), FETCH_BATCH):
            batch = pairs[start : start + FETCH_BATCH]
            found = self.target.retrieve([point.id for _, point in batch])
            for record, expected in batch:
                problems = self._differences(expected, found.get(expected.id))
                with self.lock:
                    self.compared += 1
                    if problems:
                        self.failed += 1
                        if len(self.differences) < SHOWN_DIFFERENCES:
                            label = f"point {expected.id!r}"
                            if record.id != expected.id:
                                label += f" (record {record.id!r})"
                            self.differences.append(f"{label}: " + "; ".join(problems))

    def _differences(self, expected: models.PointStruct, actual: Any) -> list[str]:
        return differences(self.layout, expected, actual)


def differences(layout: Layout, expected: models.PointStruct, actual: Any) -> list[str]:
    """How the target's point (None: absent) differs from the point the source record maps
    to, vectors within their datatype's tolerance; empty when equal. `verify` samples with
    it, `sync` decides with it what to write."""
    if actual is None:
        return ["missing in the target"]
    problems = []
    want = _named(expected.vector)
    have = _named(actual.vector)
    for name, field_ in layout.items():
        if name not in want:
            continue
        label = f"vector '{name}'" if name else "the vector"
        if name not in have:
            problems.append(f"{label} missing in the target")
            continue
        problem = _vector_difference(field_, want[name], have[name])
        if problem:
            problems.append(f"{label}: {problem}")
    problems += _payload_differences(expected.payload or {}, actual.payload or {})
    return problems


def _named(vector: Any) -> dict[str, Any]:
    return dict(vector) if isinstance(vector, dict) else {"": vector}


def _vector_difference(field_: VectorField, want: Any, have: Any) -> str | None:
    rtol, atol = TOLERANCE.get(field_.options.get("datatype") or "float32", TOLERANCE["float32"])
    if field_.kind == "sparse":
        want_map = dict(zip(want.indices, want.values, strict=True))
        have_map = dict(zip(have.indices, have.values, strict=True))
        if set(want_map) != set(have_map):
            return (
                f"sparse indices differ: source has {len(want_map)}, target {len(have_map)} "
                f"({len(set(want_map) ^ set(have_map))} not shared)"
            )
        keys = sorted(want_map)
        want, have = [want_map[k] for k in keys], [have_map[k] for k in keys]
        return _dense_difference(np.asarray(want), np.asarray(have), rtol, atol, "values")
    if field_.kind == "multi":
        if len(want) != len(have):
            return f"source has {len(want)} vectors, target {len(have)}"
        want_rows, have_rows = _as_stored(field_, want), _as_stored(field_, have)
        return _dense_difference(want_rows.ravel(), have_rows.ravel(), rtol, atol, "")
    return _dense_difference(
        _as_stored(field_, want)[0], _as_stored(field_, have)[0], rtol, atol, ""
    )


def _as_stored(field_: VectorField, vectors: Any) -> np.ndarray:
    """Rows of vectors as compared: a server stores cosine vectors normalised (local mode
    does not), and only their direction counts, so both sides are normalised."""
    rows = np.atleast_2d(np.asarray(vectors, dtype=np.float64))
    if field_.distance != "Cosine":
        return rows
    norms = np.linalg.norm(rows, axis=1)
    return rows / np.where(norms == 0, 1.0, norms)[:, None]


def _dense_difference(
    want: np.ndarray, have: np.ndarray, rtol: float, atol: float, what: str
) -> str | None:
    if want.shape != have.shape:
        return f"source has {want.size} {what or 'components'}, target {have.size}"
    close = np.isclose(have, want, rtol=rtol, atol=atol)
    if close.all():
        return None
    first = int(np.argmin(close))
    return (
        f"[{first}] source {want[first]:.6g}, target {have[first]:.6g} "
        f"({int((~close).sum())} of {want.size} differ)"
    )


def _payload_differences(want: dict[str, Any], have: dict[str, Any]) -> list[str]:
    want, have = plain(want), plain(have)
    problems = []
    for key in sorted(want.keys() | have.keys()):
        if key not in have:
            problems.append(f"payload '{key}' missing in the target")
        elif key not in want:
            problems.append(f"payload '{key}' only in the target")
        elif not same(want[key], have[key]):
            problems.append(
                f"payload '{key}': source {_short(want[key])}, target {_short(have[key])}"
            )
    return problems


def same(want: Any, have: Any) -> bool:
    """Equal with the same JSON types: Python finds 2**64 == 2.0**64 and 1 == True, but a
    target holding a float or a boolean where the source had an integer changed it."""
    if type(want) is not type(have):
        return False
    if isinstance(want, dict):
        return want.keys() == have.keys() and all(same(want[k], have[k]) for k in want)
    if isinstance(want, list):
        return len(want) == len(have) and all(map(same, want, have))
    return want == have


def plain(payload: dict[str, Any]) -> dict[str, Any]:
    """JSON values as Qdrant stores them (tuples are lists, keys strings)."""
    return json.loads(json.dumps(payload, default=str))


def _short(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."
