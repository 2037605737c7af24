"""One way to open Qdrant, shared by the Qdrant source and the Qdrant target."""

from __future__ import annotations

import contextlib
import os
import threading
import warnings
from dataclasses import dataclass, field
from typing import Any

import grpc
from qdrant_client import QdrantClient
from qdrant_client import grpc as pb

from qmigrate.errors import QmigrateError
from qmigrate.retry import describe


@dataclass
class QdrantConnection:
    """A client plus the lock its calls go through.

    Local mode (`path`) is not thread-safe, so every call on it is serialised; a server
    client is safe to share, and its lock is a no-op.
    """

    client: QdrantClient
    where: str
    local: bool
    lock: Any = field(default_factory=contextlib.nullcontext)
    grpc: bool = False  # a server client that talks gRPC
    no_grpc: str | None = None  # why REST was chosen for a server that was not asked for it

    @property
    def transport(self) -> str:
        """How it talks, as plan and the summary say it."""
        if self.local:
            return "local mode"
        if self.grpc:
            return "gRPC"
        return f"REST ({self.no_grpc})" if self.no_grpc else "REST"

    def close(self) -> None:
        with self.lock:
            self.client.close()


def connect(
    *,
    path: str | None,
    url: str | None,
    api_key: str | None,
    prefer_grpc: bool | None,
    timeout: float,
    grpc_port: int = 6334,
    role: str,
    create: bool = True,
) -> QdrantConnection:
    """Open and check a connection; unreachable servers and bad keys fail here, by name.
    `prefer_grpc` None: gRPC if the server answers on `grpc_port`, else REST.

    Without `create`, a local directory that does not exist is not made: an empty
    in-memory stand-in describes it (no collections, no checkpoints).
    """
    if path == ":memory:":
        client = QdrantClient(location=":memory:")
        return QdrantConnection(client, where=path, local=True, lock=threading.RLock())
    if path:
        if os.path.exists(path) and not os.path.isdir(path):
            raise QmigrateError(f"{role} path {path} is a file, not a Qdrant directory")
        if not create and not os.path.exists(path):
            client = QdrantClient(location=":memory:")
            return QdrantConnection(client, where=path, local=True, lock=threading.RLock())
        try:
            client = QdrantClient(path=path)
        except RuntimeError as exc:
            if "already accessed" in str(exc):
                raise QmigrateError(
                    f"{role} Qdrant directory {path} is in use by another process "
                    "(local mode allows one process per directory)"
                ) from None
            raise
        return QdrantConnection(client, where=path, local=True, lock=threading.RLock())
    if prefer_grpc is None:
        client, no_grpc = _probed_client(url, api_key, grpc_port, timeout)
        prefer_grpc = no_grpc is None
    else:
        client, no_grpc = _server_client(url, api_key, prefer_grpc, grpc_port, timeout), None
    connection = QdrantConnection(
        client, where=str(url), local=False, grpc=prefer_grpc, no_grpc=no_grpc
    )
    try:
        client.get_collections()
    except Exception as exc:
        raise QmigrateError(f"{role} Qdrant at {url}: {describe(exc)}") from None
    return connection


def _server_client(
    url: str | None, api_key: str | None, prefer_grpc: bool, grpc_port: int, timeout: float
) -> QdrantClient:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Api key is used with an insecure connection")
        return QdrantClient(
            url=url,
            api_key=api_key or None,
            prefer_grpc=prefer_grpc,
            grpc_port=grpc_port,
            timeout=int(timeout),
            # Its version check runs in a thread and prints a warning when the server is
            # slow to answer; a real incompatibility fails the calls below with a message.
            check_compatibility=False,
        )


# Only these say "no gRPC here"; any other answer (a wrong key, say) came from a gRPC server.
NO_GRPC = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.UNIMPLEMENTED,
}
GRPC_PROBE_SECONDS = 5


def _probed_client(
    url: str | None, api_key: str | None, grpc_port: int, timeout: float
) -> tuple[QdrantClient, str | None]:
    """A gRPC client when the server speaks gRPC on `grpc_port`, else a REST one and why.
    gRPC is the default where offered: it costs the client half the CPU of REST
    (bench/BENCHMARKS.md). Plan and the summary name the transport, so a fallback to REST is
    seen, not printed."""
    client = _server_client(url, api_key, True, grpc_port, timeout)
    try:
        client.grpc_collections.List(
            pb.ListCollectionsRequest(), timeout=min(timeout, GRPC_PROBE_SECONDS)
        )
        return client, None
    except grpc.RpcError as exc:
        if exc.code() not in NO_GRPC:
            return client, None
        client.close()
        rest = _server_client(url, api_key, False, grpc_port, timeout)
        return rest, f"no gRPC on port {grpc_port}: {exc.code().name}"
