"""The on_invalid policy: a record that cannot be mapped stops the job, or becomes a line of
the dead-letter file, appended together with its page's checkpoint (`CheckpointSaver`)."""

from __future__ import annotations

import json
import threading

from qmigrate.engine.record_text import _jsonable, describe_record
from qmigrate.errors import QmigrateError
from qmigrate.records import Record
from qmigrate.spec import Job


class DeadLetters:
    def __init__(self, job: Job) -> None:
        self.job = job
        self.lock = threading.Lock()  # the partitions of a job share one file

    def line(self, record: Record, reason: str) -> str:
        """The dead-letter line for a record, or the error that stops the job."""
        if self.job.on_invalid != "dead_letter":
            raise QmigrateError(
                f"{describe_record(record)} cannot be migrated: {reason} "
                "(set on_invalid.action: dead_letter to set such records aside)"
            )
        fields = {
            "id": record.id,
            "error": reason,
            "payload": record.payload,
            "vectors": record.vectors,
        }
        return json.dumps(fields, default=_jsonable)

    def write(self, lines: list[str]) -> None:
        if not lines:
            return
        path = self.job.dead_letter_path
        with self.lock:
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a") as handle:
                handle.write("".join(line + "\n" for line in lines))
