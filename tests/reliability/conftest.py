"""The reliability suite's shared fixture: a stand-in Qdrant REST endpoint per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.servers.qdrant_rest import Faults, Store, running


@pytest.fixture
def stand_in() -> Iterator[tuple[str, Store, Faults]]:
    """(url, store, faults) of a stand-in backed by local mode in memory, faults off."""
    with running() as server:
        yield server
