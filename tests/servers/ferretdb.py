"""A real MongoDB wire-protocol server: FerretDB v1.24.2 with its SQLite handler.

`.ci/servers/ferretdb.sh` builds `tests/servers/ferretdb/main.go` (FerretDB embedded as a
library, from the Go module proxy) into `~/.cache/qmigrate-ci/ferretdb/ferretdb` (or under
`$QMIGRATE_CI_CACHE`); `FERRETDB` names another binary that takes the same flags. FerretDB v1 over SQLite has no authentication, no Atlas search indexes and no
$vectorSearch: docs/sources/mongodb.md says what that leaves untested.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.servers.process import free_port, port_open, server_process


def ferretdb_binary() -> Path | None:
    if os.environ.get("FERRETDB"):
        return Path(os.environ["FERRETDB"])
    cache = Path(os.environ.get("QMIGRATE_CI_CACHE", Path.home() / ".cache" / "qmigrate-ci"))
    built = cache / "ferretdb" / "ferretdb"
    return built if built.exists() else None


@dataclass(frozen=True)
class FerretServer:
    port: int

    @property
    def uri(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/"

    def client(self) -> Any:
        import pymongo

        return pymongo.MongoClient(
            self.uri, uuidRepresentation="standard", serverSelectionTimeoutMS=10_000
        )


@contextlib.contextmanager
def running_ferretdb(directory: Path, port: int | None = None) -> Iterator[FerretServer]:
    """FerretDB on 127.0.0.1:`port` (default: a free one), its SQLite files in `directory`,
    stopped by PID at the end; the same directory restarts with the same data."""
    binary = ferretdb_binary()
    if binary is None:
        pytest.fail("no ferretdb binary: run .ci/servers/ferretdb.sh (or set FERRETDB)")
    server = FerretServer(port or free_port())
    data = directory / "sqlite"
    data.mkdir(parents=True, exist_ok=True)
    command = [
        str(binary),
        f"-listen-addr=127.0.0.1:{server.port}",
        f"-sqlite-dir={data.resolve()}",
    ]
    with server_process(
        command, ready=lambda: port_open(server.port), log=directory / "ferretdb.log"
    ):
        yield server


@pytest.fixture(scope="session")
def ferretdb_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FerretServer]:
    pytest.importorskip("pymongo")
    with running_ferretdb(tmp_path_factory.mktemp("ferretdb")) as server:
        yield server
