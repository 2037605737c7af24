"""Dead letters: the on_invalid policy (a record that cannot be mapped stops the job, or
becomes a line of the dead-letter file, appended together with its page's checkpoint by
`CheckpointSaver`), the line's form, and the check that the file can be written.

The line is strict JSON that any parser reads: no bare NaN or Infinity, no Python reprs.
Values keep the forms the point would have had (dates as RFC 3339 text, as the target
stores them; integers exact, however large); what JSON has no form for gets a documented
one (docs/job-file.md, "Invalid records").
"""

from __future__ import annotations

import base64
import dataclasses
import json
import math
import os
import tempfile
import threading
from pathlib import Path
from typing import Any

from qmigrate.engine.record_text import describe_record
from qmigrate.errors import QmigrateError
from qmigrate.mapping import _json_default as payload_form
from qmigrate.records import Record
from qmigrate.spec import Job


def line(record: Record, reason: str) -> str:
    """The record as one JSON line, with the reason it was set aside."""
    fields = {
        "id": record.id,
        "error": reason,
        "payload": record.payload,
        "vectors": record.vectors,
    }
    return json.dumps(strict_json(fields), ensure_ascii=False, allow_nan=False)


def strict_json(value: Any) -> Any:
    """`value` made of JSON types only: NaN and infinities become the strings "NaN",
    "Infinity" and "-Infinity", bytes base64 text, numpy values lists and numbers, dates
    and times their ISO text, other objects their fields or their text."""
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return "NaN" if math.isnan(value) else "Infinity" if value > 0 else "-Infinity"
    if value is None or isinstance(value, (str, int)):  # bool is an int: kept as it is
        return value
    if isinstance(value, dict):
        return {
            key if isinstance(key, str) else str(key): strict_json(v) for key, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [strict_json(item) for item in value]
    try:
        return strict_json(payload_form(value))  # as a point's payload has it (dates: RFC 3339)
    except TypeError:
        pass
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    tolist = getattr(value, "tolist", None)  # numpy arrays and scalars
    if tolist is not None:
        return strict_json(tolist())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return strict_json(dataclasses.asdict(value))  # a sparse vector: indices, values
    return str(value)


class DeadLetters:
    """A job's on_invalid policy and its file, which the partitions of a job share."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self.lock = threading.Lock()

    def line(self, record: Record, reason: str) -> str:
        """The dead-letter line for a record, or the error that stops the job."""
        if self.job.on_invalid != "dead_letter":
            raise QmigrateError(
                f"{describe_record(record)} cannot be migrated: {reason} "
                "(set on_invalid.action: dead_letter to set such records aside)"
            )
        return line(record, reason)

    def write(self, lines: list[str]) -> None:
        """Appends a whole batch at once, with its page's checkpoint."""
        if not lines:
            return
        path = self.job.dead_letter_path
        with self.lock:
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a", encoding="utf-8") as handle:
                handle.write("".join(text + "\n" for text in lines))


def refusal(path: Path) -> str | None:
    """Why the dead-letter file cannot be written, found before any data moves; None if it
    can. Tries what `append` will do (create the directories, open the file for append)
    and leaves nothing behind that was not there."""
    why = None
    try:
        if path.exists():
            if not path.is_file():
                why = "it is not a file"
            else:
                path.open("a").close()
        else:
            ancestor = path.parent
            while not ancestor.exists():
                ancestor = ancestor.parent
            if not ancestor.is_dir():
                why = f"{ancestor} is not a directory"
            elif ancestor == path.parent:
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL))
                path.unlink()
            else:  # the missing directories: one made and removed where they would start
                os.rmdir(tempfile.mkdtemp(dir=ancestor))
    except OSError as exc:
        why = exc.strerror or type(exc).__name__
    if why is None:
        return None
    return f"on_invalid.path: cannot write the dead-letter file {path}: {why}"
