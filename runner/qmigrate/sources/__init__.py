"""Source adapters: one module per system, declared once in `REGISTRY` and imported lazily.

A source only describes and yields pages; the engine writes, retries, checkpoints and
reports progress. The registry is the one list of source types: the job schema's
`source.type` enum and dispatch are assembled from it (`spec.py`), the fingerprint asks it
which keys only say how to connect, and `source_factory.create_source` imports the module
it names. This module is data only: of qmigrate it imports only `errors`.
Adding a source: docs/design.md, "Adding a source".
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from qmigrate.errors import QmigrateError

# Keys of every source that change how it is reached, never which records it holds.
COMMON_CONNECTION_KEYS = frozenset({"timeout", "prefer_grpc"})


@dataclass(frozen=True)
class SourceType:
    """Everything qmigrate knows about a source type outside its own module."""

    module: str
    extra: str | None  # the pip extra that brings its client (None: always installed)
    # Left out of the fingerprint: changing them (a rate limit, another control plane, a
    # user name) must not invalidate checkpoints. Secrets are left out by name anyway.
    connection_keys: frozenset[str] = frozenset()
    # Keys naming a local file or directory: resolved to real paths when the job loads.
    path_keys: tuple[str, ...] = ()
    # Whether a config reads something only this machine reaches, that other processes or
    # machines cannot share (an embedded database, a socket): Ray's tasks refuse it. None:
    # any path key set, so a new source with a path is refused until it says otherwise.
    local_only: Callable[[dict[str, Any]], bool] | None = None
    # Whether what a config reads is opened by one process at a time (an embedded
    # database's files): the process executor refuses it. None: any path key set, so a new
    # source with a path is refused until it says otherwise.
    one_process: Callable[[dict[str, Any]], bool] | None = None

    @property
    def schema(self) -> str:
        """Its schema part, relative to schemas/."""
        return f"sources/{self.module.rsplit('.', 1)[-1]}.schema.json"

    def ignored_by_fingerprint(self, key: str) -> bool:
        return key in COMMON_CONNECTION_KEYS or key in self.connection_keys

    def on_this_machine(self, config: dict[str, Any]) -> bool:
        if self.local_only is not None:
            return self.local_only(config)
        return any(config.get(key) for key in self.path_keys)

    def owned_by_one_process(self, config: dict[str, Any]) -> bool:
        if self.one_process is not None:
            return self.one_process(config)
        return any(config.get(key) for key in self.path_keys)


def _shared_files(config: dict[str, Any]) -> bool:
    """Plain files any number of readers can open at once (paths are made absolute)."""
    return False


def _milvus_local(config: dict[str, Any]) -> bool:
    """milvus-lite (a database file) or a server's unix socket: only this machine reaches it."""
    return not str(config.get("uri", "")).startswith(("http://", "https://", "tcp://", "grpc://"))


def _milvus_lite(config: dict[str, Any]) -> bool:
    """A milvus-lite file stays locked by the process that opened it; a socket is shared."""
    return _milvus_local(config) and not str(config.get("uri", "")).startswith("unix:")


def _postgres_socket(config: dict[str, Any]) -> bool:
    """A dsn without a host, or with a socket directory as host, reaches this machine only."""
    dsn = str(config.get("dsn", ""))
    if "://" in dsn:
        parts = urlsplit(dsn)
        host = parse_qs(parts.query).get("host", [unquote(parts.hostname or "")])[0]
    else:
        setting = re.search(r"(?:^|\s)host\s*=\s*'?([^'\s]*)", dsn)
        host = setting.group(1) if setting else ""
    return not host or host.startswith("/")


REGISTRY: dict[str, SourceType] = {
    "file": SourceType(
        "qmigrate.sources.file",
        None,
        path_keys=("path",),
        local_only=_shared_files,
        one_process=_shared_files,
    ),
    "qdrant": SourceType(
        "qmigrate.sources.qdrant",
        None,
        connection_keys=frozenset({"grpc_port"}),
        path_keys=("path",),
    ),
    "chroma": SourceType(
        "qmigrate.sources.chroma",
        "chroma",
        connection_keys=frozenset({"username", "token_header"}),
        path_keys=("path",),
    ),
    "pinecone": SourceType(
        "qmigrate.sources.pinecone",
        "pinecone",
        connection_keys=frozenset({"controller_host", "rate_limit"}),
        path_keys=("ids_file",),
        local_only=_shared_files,
        one_process=_shared_files,
    ),
    "redis": SourceType("qmigrate.sources.redis", "redis", connection_keys=frozenset({"username"})),
    "milvus": SourceType(
        "qmigrate.sources.milvus", "milvus", local_only=_milvus_local, one_process=_milvus_lite
    ),
    "pgvector": SourceType("qmigrate.sources.pgvector", "pgvector", local_only=_postgres_socket),
    "lancedb": SourceType(
        "qmigrate.sources.lancedb",
        "lancedb",
        path_keys=("uri",),
        local_only=_shared_files,
        one_process=_shared_files,
    ),
    "mongodb": SourceType("qmigrate.sources.mongodb", "mongodb"),
    "faiss": SourceType(
        "qmigrate.sources.faiss",
        "faiss",
        path_keys=("index", "ids", "payload"),
        local_only=_shared_files,
        one_process=_shared_files,
    ),
    "weaviate": SourceType(
        "qmigrate.sources.weaviate",
        "weaviate",
        connection_keys=frozenset({"grpc_host", "grpc_port"}),
    ),
    "elasticsearch": SourceType(
        "qmigrate.sources.elasticsearch",
        "elasticsearch",
        connection_keys=frozenset({"username", "ca_certs", "verify_certs", "keep_alive"}),
    ),
    "opensearch": SourceType(
        "qmigrate.sources.opensearch",
        "opensearch",
        connection_keys=frozenset({"username", "ca_certs", "verify_certs", "keep_alive"}),
    ),
}


def source_type(name: str) -> SourceType:
    try:
        return REGISTRY[name]
    except KeyError:
        raise QmigrateError(
            f"source.type: unknown source type {name!r} (known: {', '.join(REGISTRY)})"
        ) from None
