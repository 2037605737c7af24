"""The adapter contract every source satisfies."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

from qmigrate.records import Page, Partition, SourceInfo


class Source(Protocol):
    """Describes a source and yields its records, page by page.

    Sources never write, retry, checkpoint or draw progress. They raise exceptions as their
    client raises them (the engine tells transient from fatal), or `QmigrateError` with a
    message for the user.
    """

    def __init__(self, config: dict[str, Any], batch_size: int) -> None: ...

    def describe(self) -> SourceInfo:
        """Connect and report vectors, count and payload fields. Fails if unreachable."""
        ...

    def push_down(self, filter: dict[str, Any] | None) -> dict[str, Any] | None:
        """Take the parts of a Qdrant-syntax filter this source evaluates itself.

        Returns the residual filter that the engine evaluates client-side (None: nothing).
        """
        ...

    def partitions(self, n: int) -> list[Partition]:
        """Split the source into about `n` disjoint slices that together cover all of it."""
        ...

    def read(self, partition: Partition, cursor: Any) -> Iterator[Page]:
        """Yield pages of one partition, starting after `cursor` (None: from its start)."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...

    # Optional: `resume_identity() -> dict[str, dict]`, what must be unchanged for saved
    # cursors to still point at the same records (the file source: each file's size and
    # mtime). Saved with the first checkpoint; a difference refuses to resume, naming the
    # key. Sources whose cursors stay valid under change (keyset, checked offsets) omit it.
