"""The registry is the one list of sources: each entry is complete, and the schema follows it."""

from __future__ import annotations

import importlib
import json

import pytest

from qmigrate import job_schema
from qmigrate.source_factory import create_source
from qmigrate.sources import REGISTRY


@pytest.mark.parametrize("name", list(REGISTRY))
def test_each_entry_names_a_module_and_a_schema_part_that_fit(name: str) -> None:
    declared = REGISTRY[name]
    assert hasattr(importlib.import_module(declared.module), "Source")
    part = json.loads((job_schema.schema_dir() / declared.schema).read_text())
    assert part["$id"] == f"https://qmigrate.dev/schemas/{declared.schema}"
    keys = set(part["properties"])
    assert part["properties"]["type"]["examples"] == [name]
    assert declared.connection_keys <= keys, "a connection key the schema does not have"
    assert set(declared.path_keys) <= keys, "a path key the schema does not have"


def test_every_schema_part_is_registered() -> None:
    parts = {p.name for p in (job_schema.schema_dir() / "sources").glob("*.schema.json")}
    assert parts == {REGISTRY[name].schema.removeprefix("sources/") for name in REGISTRY}


def test_the_job_schema_dispatches_exactly_the_registered_sources() -> None:
    source = job_schema.job_schema_bundle()["properties"]["source"]
    enum = source["properties"]["type"]["anyOf"][0]["enum"]
    dispatched = [branch["if"]["properties"]["type"]["const"] for branch in source["allOf"]]
    assert enum == dispatched == list(REGISTRY)


def test_a_source_gets_the_schema_defaults_and_keeps_what_the_job_sets() -> None:
    source = create_source({"type": "qdrant", "path": "/nonexistent", "collection": "c"}, 10)
    assert source.config["timeout"] == 60 and source.config["grpc_port"] == 6334
    assert "prefer_grpc" not in source.config  # unset: gRPC where the server answers
    source = create_source({"type": "qdrant", "path": "/x", "collection": "c", "timeout": 5}, 10)
    assert source.config["timeout"] == 5


@pytest.mark.parametrize(
    ("config", "local"),
    [
        ({"type": "milvus", "uri": "./data/milvus.db"}, True),  # milvus-lite
        ({"type": "milvus", "uri": "unix:/tmp/milvus.sock"}, True),
        ({"type": "milvus", "uri": "unix:///tmp/milvus.sock"}, True),
        ({"type": "milvus", "uri": "http://milvus:19530"}, False),
        ({"type": "qdrant", "path": "qdrant-data", "collection": "c"}, True),
        ({"type": "qdrant", "url": "http://qdrant:6333", "collection": "c"}, False),
        ({"type": "chroma", "path": "chroma-data", "collection": "c"}, True),
        ({"type": "file", "path": "rows.jsonl"}, False),  # read by any number of processes
        ({"type": "pinecone", "index_host": "h", "ids_file": "ids.txt"}, False),
        ({"type": "lancedb", "uri": "lance-data", "table": "t"}, False),  # files, shared
        ({"type": "faiss", "index": "i.faiss", "payload": "p.jsonl"}, False),
    ],
)
def test_the_registry_says_which_sources_only_this_machine_reaches(
    config: dict[str, str], local: bool
) -> None:
    assert REGISTRY[config["type"]].on_this_machine(config) is local


def test_a_new_source_with_a_path_counts_as_on_this_machine_until_it_says_otherwise() -> None:
    from qmigrate.sources import SourceType

    declared = SourceType("qmigrate.sources.new", None, path_keys=("path",))
    assert declared.on_this_machine({"type": "new", "path": "db"})
    assert not declared.on_this_machine({"type": "new", "url": "http://x"})
