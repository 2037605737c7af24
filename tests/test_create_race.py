"""Two jobs creating one collection at once: the one that loses the race to create it finds
it there, checks its layout as it would have at the start, and goes on (or refuses)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from qdrant_client import models

from tests.conftest import run_cli
from tests.servers.qdrant_grpc import running_both
from tests.servers.qdrant_rest import Store

SIZE = 4


@contextlib.contextmanager
def stand_in(transport: str) -> Iterator[tuple[dict[str, Any], Store]]:
    """(target keys, store) of a stand-in Qdrant answering over `transport`."""
    with running_both() as (url, grpc_port, store):
        yield {"url": url, "grpc_port": grpc_port, "prefer_grpc": transport == "grpc"}, store


def write_job(tmp_path: Path, target: dict[str, Any]) -> None:
    rows = [{"id": i, "embedding": [float(i), 1.0, 0.5, 0.25], "n": i} for i in range(30)]
    (tmp_path / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    document = {
        "version": 1,
        "name": "race",
        "source": {
            "type": "file",
            "path": "data.jsonl",
            "vectors": {"embedding": {"distance": "cosine"}},
        },
        "target": {"collection": "copy", **target},
    }
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(document))


def another_job_creates(store: Store, size: int) -> list[str]:
    """Have each collection the job is about to create made first, as a second job would;
    returns the names it made."""
    made: list[str] = []

    def create_first(name: str) -> None:
        vectors = {} if name == "_migration_offsets" else {"embedding": (size, "Cosine")}
        store.call(
            "create_collection",
            name,
            vectors_config={
                key: models.VectorParams(size=s, distance=models.Distance(d))
                for key, (s, d) in vectors.items()
            },
        )
        made.append(name)

    store.before_create = create_first
    return made


@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_losing_the_race_to_create_goes_on(tmp_path: Path, transport: str) -> None:
    with stand_in(transport) as (target, store):
        made = another_job_creates(store, SIZE)
        write_job(tmp_path, target)
        result = run_cli("apply", "job.yaml", cwd=tmp_path)
        assert result.code == 0, result.stderr
        assert sorted(made) == ["_migration_offsets", "copy"], "both creates lost the race"
        assert store.count("copy") == 30
        assert "already exists" not in result.stderr + result.stdout


@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_a_race_winner_of_another_layout_is_refused(tmp_path: Path, transport: str) -> None:
    with stand_in(transport) as (target, store):
        another_job_creates(store, SIZE + 1)
        write_job(tmp_path, target)
        result = run_cli("apply", "job.yaml", cwd=tmp_path)
        assert result.code == 1, result.stdout
        assert result.stderr.splitlines() == [
            "qmigrate: error: target collection 'copy' was created by another run meanwhile "
            "and is incompatible: vector 'embedding' has size 5, the source has 4"
        ]
        assert store.count("copy") == 0, "no data moved"
        points, _ = store.call("scroll", "_migration_offsets", limit=100)
        assert "job" not in {p.payload["kind"] for p in points}, "no job state saved"
