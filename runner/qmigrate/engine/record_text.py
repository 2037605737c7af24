"""How records are written out: named in messages, and as dead-letter JSON."""

from __future__ import annotations

from typing import Any

from qmigrate.records import Record


def describe_record(record: Record) -> str:
    """How a message names a record: its ID, and where it came from when the source says."""
    if record.id is None:
        return f"the record at {record.origin}" if record.origin else "a record without an ID"
    where = f" ({record.origin})" if record.origin else ""
    return f"record {record.id!r}{where}"


def _jsonable(value: Any) -> Any:
    tolist = getattr(value, "tolist", None)
    if tolist is not None:
        return tolist()
    if hasattr(value, "__dict__"):
        return value.__dict__
    return str(value)
