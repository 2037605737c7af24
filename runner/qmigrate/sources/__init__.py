"""Source adapters: one module per system, declared once in `REGISTRY` and imported lazily.

A source only describes and yields pages; the engine writes, retries, checkpoints and
reports progress. The registry is the one list of source types: the job schema's
`source.type` enum and dispatch are assembled from it (`spec.py`), the fingerprint asks it
which keys only say how to connect, and `create_source` imports the module it names.
Adding a source: docs/design.md, "Adding a source".
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from qmigrate.errors import QmigrateError
from qmigrate.retry import DEFAULT_GIVE_UP_AFTER, request_timeout
from qmigrate.sources.base import Source

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

    @property
    def schema(self) -> str:
        """Its schema part, relative to schemas/."""
        return f"sources/{self.module.rsplit('.', 1)[-1]}.schema.json"

    def ignored_by_fingerprint(self, key: str) -> bool:
        return key in COMMON_CONNECTION_KEYS or key in self.connection_keys


REGISTRY: dict[str, SourceType] = {
    "file": SourceType("qmigrate.sources.file", None, path_keys=("path",)),
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
    ),
    "redis": SourceType("qmigrate.sources.redis", "redis", connection_keys=frozenset({"username"})),
    "milvus": SourceType("qmigrate.sources.milvus", "milvus"),
}


def source_type(name: str) -> SourceType:
    try:
        return REGISTRY[name]
    except KeyError:
        raise QmigrateError(
            f"source.type: unknown source type {name!r} (known: {', '.join(REGISTRY)})"
        ) from None


def create_source(
    config: dict[str, Any], batch_size: int, give_up_after: float = DEFAULT_GIVE_UP_AFTER
) -> Source:
    """Build the source named by `config["type"]`; a missing client library says what to install.

    The source gets its config with the schema's defaults filled in, so defaults live in
    the schema alone, and its request `timeout` held within the job's `give_up_after`
    (`request_timeout`).
    """
    declared = source_type(config["type"])
    try:
        module = importlib.import_module(declared.module)
    except ModuleNotFoundError as exc:
        hint = (
            f"pip install 'qmigrate[{declared.extra}]'"
            if declared.extra
            else "pip install qmigrate"
        )
        raise QmigrateError(
            f"source '{config['type']}' needs the Python package '{exc.name}': run {hint}"
        ) from None
    from qmigrate.spec import source_defaults  # spec imports this module

    config = {**source_defaults(config["type"]), **config}
    if "timeout" in config:  # every source with a server has one (a schema default)
        config["timeout"] = request_timeout(config["timeout"], give_up_after)
    return module.Source(config, batch_size)
