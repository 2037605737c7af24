"""Splitting a text file into byte ranges, so big files are read in parallel and resumed.

Shared by the sources that read line files (JSONL exports, Pinecone ID lists).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

# Big reads: with the default buffer, a line of a 768-d vector took two read()s, and each let
# a waiting thread take the GIL (a JSONL job's context switches: 54,000 per 20,000 lines).
READ_BUFFER = 1 << 20


def lines_in_range(
    path: Path, start: int, end: int, cursor: int | None
) -> Iterator[tuple[bytes, int]]:
    """Lines that *start* in [start, end), each with the byte offset right after it.

    A line crossing `end` belongs to the range it starts in, so ranges that tile a file
    yield every line exactly once. `cursor`, an offset yielded before, resumes after it.
    """
    with path.open("rb", buffering=READ_BUFFER) as handle:
        if cursor is not None:
            position = cursor
            handle.seek(position)
        elif start > 0:
            # The line under `start` belongs to the range before: skip to the next one.
            handle.seek(start - 1)
            position = start - 1 + len(handle.readline())
        else:
            position = 0
        while position < end:
            line = handle.readline()
            if not line:
                return
            position += len(line)
            yield line, position


def file_identity(file: Path) -> dict[str, dict[str, int]]:
    """{"file <real path>": size and modification time}: what tells that a file changed
    without reading it (byte-offset cursors mean nothing in a changed file), the same from
    any working directory."""
    status = file.stat()
    return {f"file {os.path.realpath(file)}": {"size": status.st_size, "mtime": status.st_mtime_ns}}
