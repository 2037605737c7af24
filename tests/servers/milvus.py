"""Milvus for the tests: a `milvus-lite server` gRPC endpoint, and the real Milvus 2.3
standalone server (`milvus-server` from the `milvus` package) with authorization on.

Both are started once per session on a free port and stopped by PID. The real server's
child (`milvus run standalone`) ignores SIGTERM; it runs in the fixture's process group,
which `server_process` SIGKILLs after a grace period.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.servers.process import free_port, port_open, server_process

ROOT_TOKEN = "root:Milvus"  # the real server's built-in user, when authorization is enabled


@dataclass
class MilvusServer:
    uri: str
    token: str | None = None
    # The real server only: `with server.stopped():` stops it by PID for the block, then
    # starts it again on the same port and data directory.
    stopped: Callable[[], contextlib.AbstractContextManager[None]] | None = None

    def client(self):  # noqa: ANN201 - pymilvus is imported lazily, like the source
        from pymilvus import MilvusClient, MilvusException

        # pymilvus shares one gRPC channel per server between clients; milvus-lite may drop
        # it (GOAWAY "too_many_pings" after keepalive pings), and the next client reconnects.
        for attempt in range(3):
            try:
                return MilvusClient(self.uri, token=self.token or "", timeout=60)
            except MilvusException:
                if attempt == 2:
                    raise
                time.sleep(2)
        raise AssertionError("unreachable")


def _binary(name: str) -> str:
    path = Path(sys.executable).parent / name
    found = str(path) if path.exists() else shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} is not installed: pip install -e '.[test]'")
    return found


@contextlib.contextmanager
def running_milvus_lite(
    directory: Path, port: int | None = None, stop_signal: signal.Signals = signal.SIGTERM
) -> Iterator[MilvusServer]:
    """`milvus-lite server` on `port` (default: a free one), its data in `directory`; the same
    directory and port restart the same server.

    SIGTERM kills it outright, as a crash would (at once, mid-request). On SIGINT it shuts
    down and closes its files: a restart right after writing data once found one cut short
    ("No data left in file") after a SIGTERM."""
    port = port or free_port()
    command = [_binary("milvus-lite"), "server", "--data-dir", str(directory / "data")]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    log = directory / "server.log"
    with server_process(command, lambda: port_open(port), log, stop_signal=stop_signal):
        yield MilvusServer(f"http://127.0.0.1:{port}")


@contextlib.contextmanager
def running_milvus(directory: Path) -> Iterator[MilvusServer]:
    """The real Milvus 2.3 standalone server with authorization on, its data in `directory`.

    Its embedded etcd gets free ports from a config file of its own: by default it binds
    the fixed peer port 2380, and a second server on the machine (another test session's)
    would not start.
    """
    port, etcd_client, etcd_peer = free_port(), free_port(), free_port()
    etcd = directory / "etcd.yaml"
    client_url, peer_url = f"http://127.0.0.1:{etcd_client}", f"http://127.0.0.1:{etcd_peer}"
    etcd.write_text(
        f"name: default\nlisten-peer-urls: {peer_url}\ninitial-advertise-peer-urls: {peer_url}\n"
        f"initial-cluster: default={peer_url}\n"
        f"listen-client-urls: {client_url}\nadvertise-client-urls: {client_url}\n"
    )
    command = [_binary("milvus-server"), "--data", str(directory / "data")]
    command += ["--proxy-port", str(port), "--authorization-enabled", "true"]
    command += ["--etcd-port", str(etcd_client)]
    log = directory / "server.log"

    def ready() -> bool:
        # milvus-server prints its banner once its own readiness check passed.
        return port_open(port) and "Ctrl+C to exit" in log.read_text(errors="replace")

    # Milvus reads `etcd.config.path` from ETCD_CONFIG_PATH; milvus-server has no flag for it.
    environment = {"PYTHONUNBUFFERED": "1", "ETCD_CONFIG_PATH": str(etcd)}
    process = contextlib.ExitStack()

    def start() -> None:
        # First it unpacks its xz-compressed binary into the data directory: slow when busy.
        process.enter_context(server_process(command, ready, log, timeout=300, env=environment))

    def stop() -> None:
        try:
            process.close()
        finally:
            _kill_children_of(directory / "data" / "bin")

    @contextlib.contextmanager
    def stopped() -> Iterator[None]:
        stop()
        try:
            yield
        finally:
            start()

    try:
        start()
        yield MilvusServer(f"http://127.0.0.1:{port}", ROOT_TOKEN, stopped)
    finally:
        stop()


def _kill_children_of(binaries: Path) -> None:
    """SIGKILL `milvus run standalone`: it runs in a session of its own, out of reach of the
    wrapper's process group, and ignores SIGTERM."""
    for proc in Path("/proc").iterdir():
        with contextlib.suppress(OSError, ValueError):
            executable = (proc / "cmdline").read_bytes().split(b"\0")[0].decode()
            if proc.name.isdigit() and executable.startswith(str(binaries)):
                os.kill(int(proc.name), signal.SIGKILL)


@pytest.fixture(scope="session")
def milvus_lite_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MilvusServer]:
    with running_milvus_lite(tmp_path_factory.mktemp("milvus-lite")) as server:
        yield server


@pytest.fixture(scope="session")
def milvus_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MilvusServer]:
    with running_milvus(tmp_path_factory.mktemp("milvus")) as server:
        yield server
