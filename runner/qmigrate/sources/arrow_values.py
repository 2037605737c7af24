"""Arrow (Parquet, LanceDB) columns as vectors and payload values.

A column of equal-length float lists becomes one float32 matrix (`float_matrix`); other
column types become payload values, each in a JSON form that keeps it exact:

| Arrow type | payload value |
|---|---|
| decimal, precision <= 15 | number (a float64 keeps every digit) |
| decimal, precision > 15 | string of the exact decimal |
| binary, large_binary, fixed_size_binary | base64 string (RFC 4648, with padding) |
| map with string keys | object |
| timestamp with a time zone | RFC 3339 string in UTC, `Z` suffix (Qdrant's datetime index reads it) |
| timestamp without one | the same without a suffix (Qdrant reads it as UTC) |
| date, time | ISO 8601 string |
| duration | ISO 8601 duration string, in seconds (`PT1.5S`) |

A map whose keys are not strings cannot be a JSON object: such a column is not carried,
and a row holding a value in it is an invalid record naming the column.
"""

from __future__ import annotations

import base64
import datetime
import decimal
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

FLOAT64_DIGITS = 15  # every decimal of up to 15 significant digits survives a float64
PER_SECOND = {"s": 1, "ms": 10**3, "us": 10**6, "ns": 10**9}

Convert = Callable[[Any], Any]


def describe(data_type: pa.DataType) -> tuple[str | None, str | None]:
    """(the payload form, when it is not the plain one; why the type cannot be carried)."""
    problem = _problem(data_type)
    if problem:
        return None, problem
    if pa.types.is_decimal(data_type):
        if data_type.precision <= FLOAT64_DIGITS:
            return f"{data_type} as a number", None
        return f"{data_type} as a string (a float64 would lose digits)", None
    if _is_binary(data_type):
        return f"{data_type} as base64 text", None
    if pa.types.is_map(data_type):
        return f"{data_type} as an object", None
    if pa.types.is_timestamp(data_type):
        zone = "in UTC with Z" if data_type.tz else "without a time zone"
        return f"{data_type} as RFC 3339 text {zone}", None
    if pa.types.is_duration(data_type):
        return f"{data_type} as ISO 8601 duration text (PT...S)", None
    if pa.types.is_temporal(data_type):
        return f"{data_type} as ISO 8601 text", None
    if _converter(data_type) is not None:
        return f"{data_type}, its nested values in their payload forms", None
    return None, None


def _problem(data_type: pa.DataType) -> str | None:
    if pa.types.is_map(data_type) and not _is_text(data_type.key_type):
        return f"{data_type}: a map with {data_type.key_type} keys is no JSON object"
    for child in _children(data_type):
        problem = _problem(child)
        if problem:
            return problem
    return None


def float_matrix(column: pa.ChunkedArray | pa.Array) -> np.ndarray | None:
    """A column of equal-length float lists without nulls as an (n, dim) float32 array;
    None for anything else, which then goes row by row to the mapper to be judged."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    kind = column.type
    lists = (pa.types.is_list, pa.types.is_large_list, pa.types.is_fixed_size_list)
    if not any(is_list(kind) for is_list in lists):
        return None
    if not pa.types.is_floating(kind.value_type) or column.null_count or len(column) == 0:
        return None
    lengths = pc.list_value_length(column)
    dim = lengths[0].as_py()
    values = column.flatten()  # the slice's values only
    if values.null_count or pc.min_max(lengths).as_py() != {"min": dim, "max": dim}:
        return None
    return values.to_numpy().astype(np.float32, copy=False).reshape(len(column), dim)


def payload_columns(
    batch: pa.RecordBatch | pa.Table, columns: list[str]
) -> tuple[dict[str, list[Any]], list[str | None]]:
    """`columns` of `batch` as lists of payload values, and why each row cannot be read
    (None: it can): a row holding a value in a column that cannot be carried is invalid."""
    values: dict[str, list[Any]] = {}
    invalid: list[str | None] = [None] * batch.num_rows
    for name in columns:
        column = batch.column(name)
        _, problem = describe(column.type)
        if problem:
            held = column.is_valid().to_pylist()
            invalid = [
                reason or (f"column '{name}' is {problem}" if has else None)
                for reason, has in zip(invalid, held, strict=True)
            ]
            continue
        converted = column_values(pa.chunked_array([column]))
        values[name] = column.to_pylist() if converted is None else converted
    return values, invalid


def column_values(column: pa.ChunkedArray) -> list[Any] | None:
    """The column as payload values, or None where to_pylist's values are already right."""
    data_type = column.type
    if pa.types.is_timestamp(data_type):  # in Arrow: nanoseconds would not survive Python
        if data_type.tz:
            utc = column.cast(pa.timestamp(data_type.unit, "UTC"))
            return pc.strftime(utc, format="%Y-%m-%dT%H:%M:%SZ").to_pylist()
        return pc.strftime(column, format="%Y-%m-%dT%H:%M:%S").to_pylist()
    if pa.types.is_time(data_type):
        return column.cast(pa.string()).to_pylist()
    if pa.types.is_duration(data_type):
        unit = PER_SECOND[data_type.unit]
        return [_duration(n, unit) for n in column.cast(pa.int64()).to_pylist()]
    convert = _converter(data_type)
    if convert is None:
        return None
    return [None if value is None else convert(value) for value in column.to_pylist()]


def _converter(data_type: pa.DataType) -> Convert | None:
    """A function from to_pylist's value to the payload value; None: the value as it is."""
    if pa.types.is_decimal(data_type):
        return float if data_type.precision <= FLOAT64_DIGITS else _decimal_text
    if _is_binary(data_type):
        return _base64
    if pa.types.is_timestamp(data_type) or pa.types.is_time(data_type):
        return _iso
    if pa.types.is_date(data_type):
        return datetime.date.isoformat
    if pa.types.is_duration(data_type):
        return _timedelta
    if pa.types.is_dictionary(data_type):
        return _converter(data_type.value_type)
    if pa.types.is_map(data_type):
        item = _converter(data_type.item_type) or _same
        return lambda pairs: {key: _maybe(item, value) for key, value in pairs}
    if pa.types.is_struct(data_type):
        fields = {f.name: _converter(f.type) for f in data_type}
        if not any(fields.values()):
            return None
        return lambda row: {k: _maybe(fields.get(k) or _same, v) for k, v in row.items()}
    if _is_list(data_type):
        element = _converter(data_type.value_type)
        if element is None:
            return None
        return lambda values: [_maybe(element, value) for value in values]
    return None


def _children(data_type: pa.DataType) -> list[pa.DataType]:
    if pa.types.is_map(data_type):
        return [data_type.key_type, data_type.item_type]
    if pa.types.is_struct(data_type):
        return [f.type for f in data_type]
    if _is_list(data_type):
        return [data_type.value_type]
    if pa.types.is_dictionary(data_type):
        return [data_type.value_type]
    return []


def _is_list(data_type: pa.DataType) -> bool:
    return (
        pa.types.is_list(data_type)
        or pa.types.is_large_list(data_type)
        or pa.types.is_fixed_size_list(data_type)
    )


def _is_binary(data_type: pa.DataType) -> bool:
    return (
        pa.types.is_binary(data_type)
        or pa.types.is_large_binary(data_type)
        or pa.types.is_fixed_size_binary(data_type)
    )


def _is_text(data_type: pa.DataType) -> bool:
    return pa.types.is_string(data_type) or pa.types.is_large_string(data_type)


def _maybe(convert: Convert, value: Any) -> Any:
    return None if value is None else convert(value)


def _same(value: Any) -> Any:
    return value


def _decimal_text(value: decimal.Decimal) -> str:
    return format(value, "f")


def _base64(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")


def _iso(value: Any) -> str:
    if isinstance(value, datetime.datetime) and value.tzinfo is not None:
        return value.astimezone(datetime.timezone.utc).isoformat().replace("+00:00", "Z")
    return value.isoformat().replace(" ", "T")


def _duration(count: int | None, per_second: int) -> str | None:
    if count is None:
        return None
    sign, count = ("-" if count < 0 else ""), abs(count)
    seconds, fraction = divmod(count, per_second)
    digits = len(str(per_second)) - 1
    text = f"{seconds}.{fraction:0{digits}d}".rstrip("0").rstrip(".") if digits else str(seconds)
    return f"{sign}PT{text}S"


def _timedelta(value: datetime.timedelta) -> str | None:
    return _duration((value.days * 86400 + value.seconds) * 10**6 + value.microseconds, 10**6)
