"""The job's filter checked as Qdrant checks one, beyond what the JSON Schema can say.

A value Qdrant refuses (`has_id: [-1]`, `range: {gte: "yesterday"}`) would otherwise pass
`validate`, then select nothing client-side or fail at the source with a page of pydantic
errors. Each problem is one (path, message). The oracles are qdrant-client's: local mode's
copies of the server's UUID and datetime parsers, and its models (which read fewer
datetime spellings than the server).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pydantic
from qdrant_client import models
from qdrant_client.local import datetime_utils
from qdrant_client.local.utils import normalize_point_id

Path = list[Any]
CLAUSES = ("must", "should", "must_not")
MAX_POINT_ID = 2**64 - 1
INT64 = (-(2**63), 2**63 - 1)  # Qdrant's integer payload values


def filter_problems(filter: dict[str, Any], path: Path) -> list[tuple[Path, str]]:
    """Every problem of a filter that passed the schema, as (path in the file, message)."""
    return list(_filter(filter, path))


def _filter(filter: dict[str, Any], path: Path) -> Iterator[tuple[Path, str]]:
    for clause in CLAUSES:
        for index, condition in enumerate(filter.get(clause) or []):
            yield from _condition(condition, [*path, clause, index])
    min_should = filter.get("min_should")
    if min_should:
        for index, condition in enumerate(min_should.get("conditions") or []):
            yield from _condition(condition, [*path, "min_should", "conditions", index])


def _condition(condition: dict[str, Any], path: Path) -> Iterator[tuple[Path, str]]:
    if any(clause in condition for clause in (*CLAUSES, "min_should")):
        yield from _filter(condition, path)
    elif "nested" in condition:
        yield from _filter(condition["nested"]["filter"], [*path, "nested", "filter"])
    elif "has_id" in condition:
        for index, value in enumerate(condition["has_id"]):
            if not _is_point_id(value):
                yield (
                    [*path, "has_id", index],
                    f"{value!r} is not a point ID (an unsigned 64-bit integer or a UUID)",
                )
    elif "range" in condition:
        yield from _range(condition["range"], [*path, "range"])
    elif "match" in condition:
        yield from _match(condition["match"], [*path, "match"])
    elif "geo_polygon" in condition:
        polygon = condition["geo_polygon"]
        yield from _ring(polygon["exterior"], [*path, "geo_polygon", "exterior"])
        for index, ring in enumerate(polygon.get("interiors") or []):
            yield from _ring(ring, [*path, "geo_polygon", "interiors", index])


def _is_point_id(value: Any) -> bool:
    if isinstance(value, int):
        return 0 <= value <= MAX_POINT_ID
    try:  # local mode's copy of the UUID spellings the server accepts
        normalize_point_id(value, validate=True)
    except ValueError:
        return False
    return True


def _range(bounds: dict[str, Any], path: Path) -> Iterator[tuple[Path, str]]:
    """All bounds numbers, or all datetimes Qdrant parses (RFC 3339, a date, no zone: UTC)."""
    texts = {k: v for k, v in bounds.items() if isinstance(v, str)}
    for name, text in texts.items():
        if datetime_utils.parse(text) is None or not _model_datetime(text):
            yield [*path, name], f"{text!r} is neither a number nor an RFC 3339 datetime"
    if texts and len(texts) < len(bounds):
        yield path, "mixes numbers and datetimes: bounds must all be one or the other"


def _model_datetime(text: str) -> bool:
    """Whether qdrant-client's model reads it too (it refuses `2024-1-1`, which the
    server's parser, as local mode copies it, reads)."""
    try:
        models.DatetimeRange.model_validate({"gte": text})
    except pydantic.ValidationError:
        return False
    return True


def _match(match: dict[str, Any], path: Path) -> Iterator[tuple[Path, str]]:
    for name in ("value", "any", "except"):
        if name not in match:
            continue
        values = match[name] if name != "value" else [match[name]]
        for value in values:
            if isinstance(value, int) and not INT64[0] <= value <= INT64[1]:
                yield [*path, name], f"{value} is outside the 64-bit integers Qdrant matches"
        if name != "value":
            kinds = {type(v) for v in values}
            if bool in kinds or len(kinds) > 1:
                yield (
                    [*path, name],
                    "must be all strings or all integers (Qdrant matches no mix, no booleans)",
                )


def _ring(ring: dict[str, Any], path: Path) -> Iterator[tuple[Path, str]]:
    points = ring["points"]
    if points[0] != points[-1]:
        yield [*path, "points"], "the last point must repeat the first, closing the ring"
