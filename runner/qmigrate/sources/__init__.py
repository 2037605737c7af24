"""Source adapters: one module per system, named in this registry and imported lazily.

A source only describes and yields pages; the engine writes, retries, checkpoints and
reports progress. To add one: a module here with a `Source` class that satisfies
`qmigrate.sources.base.Source`, its schema in `schemas/sources/`, and a line below.
"""

from __future__ import annotations

import importlib
from typing import Any

from qmigrate.errors import QmigrateError
from qmigrate.sources.base import Source

# source type -> (module, pip extra that brings its client, or None)
REGISTRY: dict[str, tuple[str, str | None]] = {
    "file": ("qmigrate.sources.file", None),
    "qdrant": ("qmigrate.sources.qdrant", None),
    "chroma": ("qmigrate.sources.chroma", "chroma"),
    "pinecone": ("qmigrate.sources.pinecone", "pinecone"),
    "redis": ("qmigrate.sources.redis", "redis"),
    "milvus": ("qmigrate.sources.milvus", "milvus"),
}


def create_source(config: dict[str, Any], batch_size: int) -> Source:
    """Build the source named by `config["type"]`; a missing client library says what to install."""
    module_name, extra = REGISTRY[config["type"]]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        hint = f"pip install 'qmigrate[{extra}]'" if extra else "pip install qmigrate"
        raise QmigrateError(
            f"source '{config['type']}' needs the Python package '{exc.name}': run {hint}"
        ) from None
    return module.Source(config, batch_size)
