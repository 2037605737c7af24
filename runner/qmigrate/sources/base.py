"""The adapter contract every source satisfies."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

from qmigrate.records import Page, Partition, SourceInfo


class Source(Protocol):
    """Describes a source and yields its records, page by page.

    Sources never write, retry, checkpoint or draw progress. They raise exceptions as their
    client raises them (the engine tells transient from fatal), `SourceError` with a message
    for the user, or `TransientError` from a client error that is worth another try but
    that `retry.is_transient` cannot recognise (a status kept in a method, a vendor code).
    Until data moves, the engine turns any other exception into one line,
    `source <label>: <explain(exc)>`; sources do not wrap their calls for that.

    The engine calls, in this order (sources may rely on it, e.g. keep what describe()
    learnt for partitions()):
    1. `push_down(filter)`: before describe, so describe can report what will be asked for;
    2. `describe()`;
    3. `partitions(n)` once, on a job's first run (later runs reuse the stored specs);
    4. `read(partition, cursor)`, from several threads at once, one partition each, and
       again with the last acknowledged cursor after a transient error;
    5. `close()`, possibly more than once.
    On a resume, 3 is skipped: `read` must work on a partition spec saved by another process.
    """

    label: str
    """How messages name the source: "Chroma at http://chroma:8000". Known before connecting."""

    def __init__(self, config: dict[str, Any], batch_size: int) -> None:
        """`config` is the job's `source` section with the schema's defaults filled in."""
        ...

    def push_down(self, filter: dict[str, Any] | None) -> dict[str, Any] | None:
        """Take the parts of a Qdrant-syntax filter this source evaluates itself.

        Returns the residual filter that the engine evaluates client-side (None: nothing).
        The two together must select exactly what Qdrant would (kit.split_filter).
        """
        ...

    def describe(self) -> SourceInfo:
        """Connect and report vectors, count and payload fields. Fails if unreachable."""
        ...

    def partitions(self, n: int) -> list[Partition]:
        """Split the source into about `n` disjoint slices that together cover all of it.

        Specs are JSON values: they are stored with the job's first checkpoint.
        """
        ...

    def read(self, partition: Partition, cursor: Any) -> Iterator[Page]:
        """Yield pages of one partition, starting after `cursor` (None: from its start).

        Each page's cursor is a JSON value after which reading resumes exactly.
        """
        ...

    def explain(self, exc: Exception) -> str:
        """One line for a client error raised before data moves (kit.first_line, mostly)."""
        ...

    def close(self) -> None:
        """Release connections; harmless when called again."""
        ...

    # Optional: `resume_from(partitions)`, for a source that pins what a run reads (a
    # LanceDB table version, carried in the partition specs): on a resume the engine hands
    # it the saved partitions, then calls describe() again, so the count check counts
    # what those partitions read rather than what the source holds now.
    #
    # Optional: `resume_identity() -> dict[str, dict]`, what must be unchanged for saved
    # cursors to still point at the same records (the file source: each file's size and
    # mtime). Saved with the first checkpoint; a difference refuses to resume, naming the
    # key. Sources whose cursors stay valid under change (keyset, checked offsets) omit it.
