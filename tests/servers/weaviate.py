"""A real Weaviate server (`weaviate-server`, built from its Go module by .ci/servers/weaviate.sh)
for the session, inside a network namespace that holds only `lo`, bridged to this
namespace's 127.0.0.1.

Why a namespace: Weaviate binds its gRPC API, its internal cluster gRPC and its Raft
listeners to every interface (`net.Listen("tcp", ":PORT")` in its code; no setting names
an address), and `--host 127.0.0.1` covers only the REST API. In a namespace holding only
`lo`, every interface is loopback.

Why a bridge rather than running the tests in the namespace: the contract suite, the CLI
runs and the data loading all happen in this process and its children. A `TcpProxy` per
port listens on this namespace's 127.0.0.1 and opens each upstream connection from the
namespace's thread (a socket belongs to the namespace it was made in), so clients here
reach the server as any local server, and every byte stays on one loopback or the other.

Authentication: API keys are on, and anonymous access too, so the tests read without a
key, and a wrong key is refused (401) as a real deployment refuses it.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import socket
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.servers.netns import LoopbackNamespace, loopback_namespace
from tests.servers.process import server_process
from tests.servers.tcp_proxy import TcpProxy

VERSION = "v1.38.11"
API_KEY = "weaviate-test-key"
# Ports inside the namespace: it holds nothing else, so fixed ports are free.
HTTP_PORT, GRPC_PORT = 8080, 50051
INTERNAL_PORTS = {
    "CLUSTER_GOSSIP_BIND_PORT": 7100,
    "CLUSTER_DATA_BIND_PORT": 7101,
    "RAFT_PORT": 8300,
    "RAFT_INTERNAL_RPC_PORT": 8301,
}


def server_binary() -> str:
    """The binary .ci/servers/weaviate.sh builds (or $QMIGRATE_WEAVIATE_SERVER)."""
    built = (
        Path.home() / ".cache" / "qmigrate-ci" / f"weaviate-{VERSION}" / "bin" / "weaviate-server"
    )
    path = os.environ.get("QMIGRATE_WEAVIATE_SERVER") or str(built)
    if not Path(path).exists():
        message = f"{path} is missing: run .ci/servers/weaviate.sh (it builds weaviate-server)"
        if os.environ.get("CI"):
            pytest.fail(message)  # CI builds it first: missing there is a failure
        pytest.skip(message)
    return path


@dataclass(frozen=True)
class WeaviateServer:
    http_port: int  # the bridges' ports, on this namespace's 127.0.0.1
    grpc_port: int
    namespace: LoopbackNamespace

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def config(self, **extra: Any) -> dict[str, Any]:
        """A source config reaching this server."""
        return {"url": self.url, "grpc_port": self.grpc_port, **extra}

    def client(self, api_key: str | None = None) -> Any:
        """A weaviate v4 client, to load test data (close it)."""
        import weaviate
        from weaviate.classes.init import Auth

        return weaviate.connect_to_local(
            host="127.0.0.1",
            port=self.http_port,
            grpc_port=self.grpc_port,
            auth_credentials=Auth.api_key(api_key) if api_key else None,
        )


def _ready() -> bool:
    try:
        url = f"http://127.0.0.1:{HTTP_PORT}/v1/.well-known/ready"
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


@contextlib.contextmanager
def running_weaviate(directory: Path) -> Iterator[WeaviateServer]:
    binary = server_binary()
    if shutil.which("ip") is None:
        raise RuntimeError("`ip` is missing: install iproute2 (.ci/run does)")
    settings = {
        "AUTHENTICATION_ANONYMOUS_ACCESS_ENABLED": "true",
        "AUTHENTICATION_APIKEY_ENABLED": "true",
        "AUTHENTICATION_APIKEY_ALLOWED_KEYS": API_KEY,
        "AUTHENTICATION_APIKEY_USERS": "tester",
        "PERSISTENCE_DATA_PATH": str(directory / "data"),
        "DEFAULT_VECTORIZER_MODULE": "none",
        "ENABLE_MODULES": "",
        "DISABLE_TELEMETRY": "true",
        "CLUSTER_HOSTNAME": "node1",
        "CLUSTER_IN_LOCALHOST": "true",
        "CLUSTER_BIND_ADDR": "127.0.0.1",
        "GRPC_PORT": str(GRPC_PORT),
        "LOG_LEVEL": "warning",
        "QUERY_DEFAULTS_LIMIT": "25",
        **{name: str(port) for name, port in INTERNAL_PORTS.items()},
    }
    with loopback_namespace() as namespace:
        command = namespace.command(
            # HOST and PORT would be read as Weaviate settings: the server gets neither.
            ["env", "-u", "HOST", "-u", "PORT", *(f"{k}={v}" for k, v in settings.items())]
            + [binary]
            + ["--host", "127.0.0.1", "--port", str(HTTP_PORT), "--scheme", "http"]
        )
        ready = functools.partial(namespace.call, _ready)
        with (
            server_process(command, ready=ready, log=directory / "weaviate.log", timeout=120),
            contextlib.ExitStack() as bridges,
        ):
            ports = []
            for port in (HTTP_PORT, GRPC_PORT):
                connect = functools.partial(
                    namespace.call, socket.create_connection, ("127.0.0.1", port)
                )
                bridge = TcpProxy(port, connect=connect)
                bridges.callback(bridge.close)
                ports.append(bridge.port)
            yield WeaviateServer(ports[0], ports[1], namespace)


@pytest.fixture(scope="session")
def weaviate_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WeaviateServer]:
    pytest.importorskip("weaviate")
    with running_weaviate(tmp_path_factory.mktemp("weaviate")) as server:
        yield server
