"""Turning a source record into a Qdrant point: IDs, vectors, payload, and the client-side filter."""

from __future__ import annotations

import datetime
import json
import numbers
import uuid
from array import array
from collections.abc import Collection
from typing import Any

import numpy as np
import orjson
from qdrant_client import models
from qdrant_client.local.payload_filters import check_filter

from qmigrate import payload_paths as paths
from qmigrate.collection_layout import Layout
from qmigrate.records import Record, SparseVector
from qmigrate.spec import MappingSpec

# String IDs that are neither unsigned integers nor UUIDs become uuid5(ID_NAMESPACE, id):
# the same string always gives the same point, so re-running a batch never duplicates it.
ID_NAMESPACE = uuid.UUID("6c0b1e8a-3f7d-5e0c-9a51-8d7f3c2b1a90")
MAX_POINT_ID = 2**64 - 1


class InvalidRecord(Exception):
    """A record that cannot become a point; the engine stops or dead-letters it."""


def point_id(raw: Any) -> tuple[int | str, str | None]:
    """(Qdrant point id, original string when it had to be hashed)."""
    if raw is None:
        raise InvalidRecord("it has no ID")
    if isinstance(raw, bool):
        raise InvalidRecord(f"id {raw!r} is a boolean")
    if isinstance(raw, int):
        if 0 <= raw <= MAX_POINT_ID:
            return raw, None
        raise InvalidRecord(f"id {raw} is outside the unsigned 64-bit range")
    if isinstance(raw, str) and raw:
        try:
            canonical = str(uuid.UUID(raw))
        except ValueError:
            canonical = None
        # Only the hyphenated form is kept: "{...}", "urn:uuid:..." or bare hex would make
        # distinct source IDs one point.
        if canonical == raw.lower():
            return canonical, None
        return str(uuid.uuid5(ID_NAMESPACE, raw)), raw
    raise InvalidRecord(f"id {raw!r} is neither an unsigned integer nor a non-empty string")


class Mapper:
    """Applies the job's mapping to each record, checking vectors against the target layout."""

    def __init__(self, spec: MappingSpec, layout: Layout) -> None:
        self.spec = spec
        self.layout = layout
        self.unnamed_only = [n for n, f in layout.items()] == [""]
        # Nested paths (meta.origin) take the slower path-by-path way; top-level keys not.
        self.include = [paths.parse(p) for p in spec.include or ()]
        self.exclude = [paths.parse(p) for p in spec.exclude]
        self.rename = [(paths.parse(a), paths.parse(b)) for a, b in spec.rename.items()]
        named = [*(spec.include or ()), *spec.exclude, *spec.rename, *spec.rename.values()]
        self.nested = any(paths.parse(path) != ((path, False),) for path in named)

    def to_point(self, record: Record, finite: Collection[str] = ()) -> models.PointStruct:
        """`finite`: the record's vectors known to be finite float32 rows (`finite_rows`)."""
        if record.invalid is not None:
            raise InvalidRecord(record.invalid)
        qdrant_id, original = point_id(record.id)
        vectors = self._vectors(record, finite)
        payload = self._payload(record.payload)
        if original is not None and self.spec.keep_original_id_as:
            payload[self.spec.keep_original_id_as] = original
        _check_size(payload, vectors)
        vector: Any = vectors[""] if self.unnamed_only else vectors
        # Vectors were checked above; skipping pydantic validation keeps the hot path cheap.
        return models.PointStruct.model_construct(id=qdrant_id, vector=vector, payload=payload)

    def _vectors(self, record: Record, finite: Collection[str]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for source_name, value in record.vectors.items():
            if value is None:
                continue
            name = self.spec.vectors.get(source_name, source_name)
            field = self.layout.get(name)
            if field is None:
                raise InvalidRecord(f"vector '{source_name}' is not described by the source")
            if field.kind == "sparse":
                out[name] = _sparse(source_name, value)
            elif field.kind == "multi":
                if not isinstance(value, list) or not value:
                    raise InvalidRecord(f"multi-vector '{source_name}' is not a list of vectors")
                out[name] = [_dense(source_name, v, field.size) for v in value]
            elif source_name in finite:  # a row of the page's matrix, checked with it
                assert isinstance(value, np.ndarray)
                if len(value) != field.size:
                    raise InvalidRecord(
                        f"vector '{source_name}' has {len(value)} dimensions, expected {field.size}"
                    )
                out[name] = value
            else:
                out[name] = _dense(source_name, value, field.size)
        if not out:
            raise InvalidRecord("the record has no vector")
        if self.unnamed_only and "" not in out:
            raise InvalidRecord("the record has no value for the unnamed vector")
        return out

    def _payload(self, payload: dict[str, Any]) -> dict[str, Any]:
        spec = self.spec
        if self.nested:
            return self._nested_payload(payload)
        if spec.include is not None:
            payload = {k: v for k, v in payload.items() if k in spec.include}
        if spec.exclude:
            payload = {k: v for k, v in payload.items() if k not in spec.exclude}
        if spec.rename:
            payload = {spec.rename.get(k, k): v for k, v in payload.items()}
        if spec.set:
            payload = {**payload, **spec.set}
        return dict(payload)

    def _nested_payload(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Include, exclude, rename, set, in that order, as for top-level keys."""
        if self.spec.include is not None:
            payload = paths.keep(payload, self.include)
        for path in self.exclude:
            payload = paths.drop(payload, path)
        moves = []
        for old, new in self.rename:
            found, value = paths.take(payload, old)
            if found:
                payload = paths.drop(payload, old)
                moves.append((new, value))
        for new, value in moves:  # after every take: a rename a -> b, b -> a swaps them
            payload = paths.put(payload, new, value)
        return {**payload, **self.spec.set}


MAX_POINT_BYTES = 16 * 1024 * 1024  # one point must fit one request (the target's limit)


def _check_size(payload: dict[str, Any], vectors: dict[str, Any]) -> None:
    """The payload is JSON, and the point fits one request; else the whole batch would fail
    at the server, naming no record."""
    try:  # integers beyond 53 bits fail here, so only their payloads are walked
        encoded = orjson.dumps(payload, default=_json_default, option=orjson.OPT_STRICT_INTEGER)
    except (TypeError, orjson.JSONEncodeError):
        _check_integers(payload)
        try:
            encoded = orjson.dumps(payload, default=_json_default)
        except (TypeError, orjson.JSONEncodeError) as exc:
            raise InvalidRecord(f"the payload is not JSON: {exc}") from None
    if b"null" in encoded:  # orjson writes NaN and Infinity as null: look closer
        try:
            json.dumps(payload, allow_nan=False, default=_json_default)
        except ValueError:
            raise InvalidRecord("the payload holds NaN or Infinity, which JSON cannot") from None
    size = len(encoded) + sum(_vector_bytes(v) for v in vectors.values())
    if size > MAX_POINT_BYTES:
        raise InvalidRecord(
            f"the point is {size / 2**20:.0f} MiB, more than one request to Qdrant may carry "
            f"({MAX_POINT_BYTES // 2**20} MiB)"
        )


INT64_RANGE = range(-(2**63), 2**63)  # Qdrant's payload integers


def _check_integers(payload: dict[str, Any]) -> None:
    """Refuse an integer Qdrant cannot store as one, naming where it is: a float in its
    place would be a rounded, different number."""
    pending: list[tuple[str, Any]] = list(payload.items())
    while pending:
        path, value = pending.pop()
        if type(value) is int and value not in INT64_RANGE:
            raise InvalidRecord(
                f"payload '{path}' is {value}, an integer outside the signed 64-bit range "
                "Qdrant stores"
            )
        if isinstance(value, dict):
            pending.extend((f"{path}.{key}", item) for key, item in value.items())
        elif isinstance(value, (list, tuple)):
            pending.extend((f"{path}[{index}]", item) for index, item in enumerate(value))


def _json_default(value: Any) -> Any:
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()  # as orjson writes them: RFC 3339
    raise TypeError(f"{type(value).__name__} is not a JSON value")


def _vector_bytes(value: Any) -> int:
    if isinstance(value, np.ndarray):  # first: isinstance on a pydantic model is slow
        return value.nbytes
    if isinstance(value, list):  # a multi-vector: its rows
        return sum(row.nbytes for row in value)
    return 8 * len(value.indices)  # sparse


NUMBER_TYPES = {float, int}  # exactly: bool is an int subclass, and JSON true is no number


def _numbers(what: str, values: list[Any]) -> None:
    """Every value a number; bool counts as int in Python, but a JSON true is no number."""
    if not set(map(type, values)) <= NUMBER_TYPES and not all(
        isinstance(v, numbers.Real) and not isinstance(v, bool) for v in values
    ):  # the slow check only for other number types (numpy scalars)
        raise InvalidRecord(f"{what} holds a value that is not a number")


def _float32(what: str, values: Any) -> np.ndarray:
    """The values as one contiguous float32 array, each finite: Qdrant stores float32, and an
    infinity or NaN there ranks the point first with score NaN. A float32 array from the
    source passes through uncopied; the wire encoders send its bytes as they are."""
    if isinstance(values, list):
        try:  # array('f') converts a list of numbers at C speed; overflow becomes inf
            floats = np.frombuffer(array("f", values), dtype=np.float32)
        except TypeError:
            raise InvalidRecord(f"{what} holds a value that is not a number") from None
        except OverflowError:
            raise InvalidRecord(f"{what} holds a value that is not finite in float32") from None
        if ((floats == 0) | (floats == 1)).any():  # a boolean became 0 or 1: look closer
            _numbers(what, values)
    else:
        floats = np.asarray(values)
        if floats.dtype.kind == "O":
            return _float32(what, floats.tolist())
        if floats.dtype.kind not in "fiu":
            raise InvalidRecord(f"{what} holds a value that is not a number")
        with np.errstate(over="ignore"):  # a float64 beyond float32 becomes inf: refused below
            floats = np.ascontiguousarray(floats, dtype=np.float32)
    if not np.isfinite(floats).all():
        raise InvalidRecord(f"{what} holds a value that is not finite in float32")
    return floats


def finite_rows(matrices: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """For each page matrix of float32 rows, which rows are all finite: one check for the
    page instead of one per record. Other matrices are left to the per-record check."""
    return {
        name: np.isfinite(matrix).all(axis=1)
        for name, matrix in matrices.items()
        if matrix.dtype == np.float32 and matrix.ndim == 2 and matrix.flags.c_contiguous
    }


def _dense(name: str, value: Any, size: int | None) -> np.ndarray:
    if not isinstance(value, (list, np.ndarray)):
        raise InvalidRecord(f"vector '{name}' is a {type(value).__name__}, not a list")
    floats = _float32(f"vector '{name}'", value)
    if floats.ndim != 1:
        raise InvalidRecord(f"vector '{name}' is a {floats.ndim}-D array, not one vector")
    if len(floats) != size:
        raise InvalidRecord(f"vector '{name}' has {len(floats)} dimensions, expected {size}")
    return floats


def _sparse(name: str, value: Any) -> models.SparseVector:
    if isinstance(value, SparseVector):
        indices, values = value.indices, value.values
    elif isinstance(value, dict) and "indices" in value and "values" in value:
        indices, values = value["indices"], value["values"]
    else:
        raise InvalidRecord(f"sparse vector '{name}' needs indices and values")
    indices, values = list(indices), list(values)
    if len(indices) != len(values):
        raise InvalidRecord(
            f"sparse vector '{name}' has {len(indices)} indices but {len(values)} values"
        )
    if any(not isinstance(i, int) or isinstance(i, bool) or i < 0 for i in indices):
        raise InvalidRecord(f"sparse vector '{name}' has an index that is not an unsigned integer")
    if len(set(indices)) != len(indices):  # Qdrant refuses them, failing the whole batch
        raise InvalidRecord(f"sparse vector '{name}' has a duplicate index")
    _float32(f"sparse vector '{name}'", values)
    return models.SparseVector.model_construct(indices=indices, values=values)


class ClientFilter:
    """Evaluates a Qdrant-syntax filter on source records, with Qdrant's own semantics.

    qdrant-client's local mode carries the reference implementation (geo, nested, ranges
    of datetimes...); it is reused rather than written a second time. `has_id` names point
    IDs, as in Qdrant, so a record is tested by the ID it becomes: an upper-case UUID as
    its canonical lower-case form, another string as its derived UUID.
    """

    def __init__(self, filter: dict[str, Any]) -> None:
        self.filter = models.Filter.model_validate(filter)

    def matches(self, record: Record) -> bool:
        has_vector = {name: value is not None for name, value in record.vectors.items()}
        try:
            qdrant_id: int | str = point_id(record.id)[0]
        except InvalidRecord:  # matches no has_id; the mapper reports the record
            qdrant_id = -1
        return check_filter(self.filter, record.payload, qdrant_id, has_vector)


def filter_keys(filter: Any, prefix: str = "") -> set[str]:
    """Every payload key a Qdrant-syntax filter names, nested keys as `outer[].inner`."""
    keys: set[str] = set()
    if isinstance(filter, list):
        for item in filter:
            keys |= filter_keys(item, prefix)
    elif isinstance(filter, dict):
        for clause in ("must", "should", "must_not"):
            keys |= filter_keys(filter.get(clause), prefix)
        keys |= filter_keys((filter.get("min_should") or {}).get("conditions"), prefix)
        if isinstance(filter.get("key"), str):
            keys.add(prefix + filter["key"])
        for check in ("is_empty", "is_null"):
            if isinstance(filter.get(check), dict) and "key" in filter[check]:
                keys.add(prefix + filter[check]["key"])
        nested = filter.get("nested")
        if isinstance(nested, dict):
            keys |= filter_keys(nested.get("filter"), f"{prefix}{nested.get('key')}[].")
    return keys


def keys_no_field_has(filter: dict[str, Any] | None, fields: list[str]) -> list[str]:
    """Filter keys that none of the payload fields a source showed can hold: such a
    condition tests a field no record has (a Redis JSON alias instead of its path)."""
    if not filter or not fields:
        return []

    def path(key: str) -> str:
        return key.replace("[]", "")

    known = {path(f) for f in fields}
    return sorted(
        key
        for key in filter_keys(filter)
        if not any(
            path(key) == f or path(key).startswith(f + ".") or f.startswith(path(key) + ".")
            for f in known
        )
    )
