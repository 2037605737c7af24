"""How messages name a record."""

from __future__ import annotations

from qmigrate.records import Record


def describe_record(record: Record) -> str:
    """How a message names a record: its ID, and where it came from when the source says."""
    if record.id is None:
        return f"the record at {record.origin}" if record.origin else "a record without an ID"
    where = f" ({record.origin})" if record.origin else ""
    return f"record {record.id!r}{where}"
