"""`qmigrate sync` against real sources and local-mode targets: the target ends equal to the
source (a fresh apply of the same job into another directory is the reference), a sync
writes and deletes exactly what changed, deletes stay in the job's scope, the changed_field
mode finds what a full comparison finds, a dry run writes nothing, and a sync killed with
SIGKILL resumes to an exact target."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from qmigrate.mapping import point_id
from tests.conftest import (
    assert_same_points,
    checkpoint_points,
    read_collection,
    run_cli,
    run_job,
)

DIM = 8


# --- helpers ----------------------------------------------------------------------------


def file_rows(count: int, seed: int = 0) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [
        {
            "id": i,
            "embedding": [round(rng.uniform(-1, 1), 6) for _ in range(DIM)],
            "category": ["shoes", "hats"][i % 2],
            "price": i,
            "updated": 1000 + i,
        }
        for i in range(count)
    ]


def write_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def file_job(tmp_path: Path, target: str = "target", **extra: Any) -> dict[str, Any]:
    return {
        "version": 1,
        "name": "synced",
        "source": {
            "type": "file",
            "path": str(tmp_path / "rows.jsonl"),
            "id_field": "id",
            "vectors": {"embedding": {"distance": "cosine"}},
        },
        "target": {"path": str(tmp_path / target), "collection": "copy"},
        "mapping": {"vectors": {"embedding": ""}},
        "batch_size": 50,
        "parallelism": 2,
        "checkpoint": {"store": "file", "path": str(tmp_path / "checkpoints.json")},
        **extra,
    }


def save_job(document: dict[str, Any], path: Path) -> Path:
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def sync(job: Path, *options: str) -> dict[str, Any]:
    result = run_cli("sync", "--output", "json", *options, str(job), cwd=job.parent)
    assert result.code in (0, 3), result.stderr
    summary: dict[str, Any] = result.json()["jobs"][0]
    assert summary["ok"] == (result.code == 0)
    return summary


def assert_equals_fresh_apply(document: dict[str, Any], tmp_path: Path) -> None:
    """The synced target holds what applying the job into an empty target makes."""
    fresh = {
        **document,
        "name": "reference",
        "target": {**document["target"], "path": str(tmp_path / "reference")},
        "checkpoint": {"store": "file", "path": str(tmp_path / "reference.json")},
    }
    (tmp_path / "reference.json").unlink(missing_ok=True)
    import shutil

    shutil.rmtree(tmp_path / "reference", ignore_errors=True)
    run_job(fresh, tmp_path, "reference.yaml")
    assert_same_points(
        read_collection(tmp_path / "reference", "copy"),
        read_collection(Path(document["target"]["path"]), "copy"),
    )


def apply_while_changing(
    document: dict[str, Any], tmp_path: Path, change: Callable[[int], None]
) -> Path:
    """Apply the job while a writer thread calls `change(n)` (an update, an insert and a
    delete at the source) every 10 ms, from the moment 200 points are checkpointed (so
    that deletes hit points already written) until apply ends; returns the job file."""
    job = save_job(document, tmp_path / "job.yaml")
    stop = threading.Event()
    changes = 0

    def writer() -> None:
        nonlocal changes
        while checkpoint_points(tmp_path / "checkpoints.json") < 200 and not stop.is_set():
            time.sleep(0.005)
        while not stop.is_set():
            change(1000 + changes)
            changes += 1
            time.sleep(0.01)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        result = run_cli("apply", str(job), cwd=tmp_path)  # may fail its count check
    finally:
        stop.set()
        thread.join()
    assert changes, "the writer ran during apply"
    assert result.code in (0, 1), result.stderr
    return job


# --- full comparison: file source -------------------------------------------------------


def test_file_sync_writes_and_deletes_exactly_what_changed(tmp_path: Path) -> None:
    rows = file_rows(300)
    write_rows(tmp_path / "rows.jsonl", rows)
    document = file_job(tmp_path)
    job = save_job(document, tmp_path / "job.yaml")
    run_job(document, tmp_path)
    first = sync(job)
    assert (first["written"], first["deleted"], first["unchanged"]) == (0, 0, 300)

    rows = [r for r in rows if r["id"] not in (3, 4, 5)]  # deleted
    for row in rows:
        if row["id"] in (10, 11):
            row["price"] = -1  # payload changed
        if row["id"] == 12:
            row["embedding"][0] = -row["embedding"][0] + 0.5  # vector changed
    rows += [{**rows[0], "id": 1000}, {**rows[1], "id": 1001}]  # new
    write_rows(tmp_path / "rows.jsonl", rows)

    before = read_collection(tmp_path / "target", "copy")
    dry = sync(job, "--dry-run")
    assert (dry["status"], dry["ok"]) == ("dry run", False)
    assert (dry["written"], dry["new"], dry["changed"], dry["deleted"]) == (5, 2, 3, 3)
    assert sorted(dry["written_examples"]) == [10, 11, 12, 1000, 1001]
    assert sorted(dry["deleted_examples"]) == [3, 4, 5]
    assert_same_points(before, read_collection(tmp_path / "target", "copy"))  # untouched
    assert not (tmp_path / "synced.sync-ids").exists() or not any(
        (tmp_path / "synced.sync-ids").iterdir()
    )

    done = sync(job)
    assert (done["written"], done["new"], done["changed"], done["deleted"]) == (5, 2, 3, 3)
    assert sorted(done["written_examples"]) == [10, 11, 12, 1000, 1001]
    assert sorted(done["deleted_examples"]) == [3, 4, 5]
    assert done["unchanged"] == len(rows) - 5
    assert_equals_fresh_apply(document, tmp_path)
    again = sync(job)
    assert (again["written"], again["deleted"], again["unchanged"]) == (0, 0, len(rows))
    markdown = run_cli("sync", "--output", "markdown", str(job), cwd=tmp_path)
    assert markdown.code == 0 and "### qmigrate sync `synced`: ✅ done (full)" in markdown.stdout
    assert "| unchanged | 299 |" in markdown.stdout
    text = run_cli("sync", str(job), cwd=tmp_path)
    assert "wrote 0 (0 new, 0 changed), deleted 0, unchanged 299" in text.stdout
    status = run_cli("status", "--output", "json", str(job), cwd=tmp_path).json()["jobs"][0]
    last = status["sync"]["last_pass"]
    assert (last["mode"], last["written"], last["deleted"], last["unchanged"]) == (
        "full",
        0,
        0,
        299,
    )
    assert status["sync"]["in_progress"] is None


def test_sync_says_it_runs_on_threads_whatever_the_executor(tmp_path: Path) -> None:
    write_rows(tmp_path / "rows.jsonl", file_rows(30))
    document = file_job(tmp_path)
    run_job(document, tmp_path)
    job = save_job({**document, "executor": {"type": "processes"}}, tmp_path / "job.yaml")
    text = run_cli("sync", str(job), cwd=tmp_path)
    assert text.code == 0, text.stderr
    assert (
        "  note: sync ran its partitions on threads in this process: executor processes "
        "applies to apply only" in text.stdout
    )


def test_deletes_stay_in_the_jobs_scope(tmp_path: Path) -> None:
    """Filter and `set` constants bound the deletes: points of other records, other
    categories or other origins are left alone; a filter the target cannot evaluate turns
    deletes off (exit 3)."""
    from qdrant_client import QdrantClient, models

    rows = file_rows(40)
    write_rows(tmp_path / "rows.jsonl", rows)
    scoped = {
        "filter": {"must": [{"key": "category", "match": {"value": "shoes"}}]},
        "mapping": {"vectors": {"embedding": ""}, "payload": {"set": {"origin": "file"}}},
    }
    document = file_job(tmp_path, **scoped)
    job = save_job(document, tmp_path / "job.yaml")
    run_job(document, tmp_path)
    client = QdrantClient(path=str(tmp_path / "target"))
    vector = [0.1] * DIM
    client.upsert(
        "copy",
        [
            models.PointStruct(
                id=500, vector=vector, payload={"category": "shoes", "origin": "file"}
            ),
            models.PointStruct(
                id=501, vector=vector, payload={"category": "hats", "origin": "file"}
            ),
            models.PointStruct(id=502, vector=vector, payload={"category": "shoes", "origin": "x"}),
            models.PointStruct(id=503, vector=vector, payload={"category": "shoes"}),
        ],
    )
    client.close()
    write_rows(tmp_path / "rows.jsonl", [r for r in rows if r["id"] not in (0, 1)])
    done = sync(job)
    # 0 (a shoe, gone) and 500 (in scope, no record) go; 1 is a hat: outside the filter.
    assert (done["deleted"], sorted(done["deleted_examples"])) == (2, [0, 500])
    left = read_collection(tmp_path / "target", "copy")
    assert {501, 502, 503} <= set(left) and 0 not in left and 500 not in left

    excluded = file_job(
        tmp_path,
        filter=scoped["filter"],
        mapping={"vectors": {"embedding": ""}, "payload": {"exclude": ["category"]}},
    )
    excluded_job = save_job({**excluded, "name": "excluded"}, tmp_path / "excluded.yaml")
    result = run_cli("sync", "--output", "json", str(excluded_job), cwd=tmp_path)
    assert result.code == 3, result.stderr
    summary = result.json()["jobs"][0]
    assert summary["deleted"] == 0 and "'category'" in summary["deletes_skipped"]


# --- full comparison: a Chroma server that changes while apply runs ---------------------


def test_chroma_changing_during_apply_then_sync_is_exact(
    chroma_server: Any, tmp_path: Path
) -> None:
    pytest.importorskip("chromadb")
    rng = random.Random(1)
    collection = chroma_server.client().create_collection("sync_live", embedding_function=None)

    def vector() -> list[float]:
        return [rng.uniform(-1, 1) for _ in range(DIM)]

    def meta(i: int, version: int) -> dict[str, Any]:
        return {"category": ["news", "blog"][i % 2], "version": version}

    ids = [f"doc-{i}" for i in range(600)]
    collection.add(
        ids=ids,
        embeddings=[vector() for _ in ids],
        metadatas=[meta(i, 0) for i in range(600)],
    )
    document = {
        "version": 1,
        "name": "chroma-sync",
        "source": {"type": "chroma", "url": chroma_server.url, "collection": "sync_live"},
        "target": {"path": str(tmp_path / "target"), "collection": "copy"},
        "batch_size": 20,
        "parallelism": 2,
        "checkpoint": {"store": "file", "path": str(tmp_path / "checkpoints.json")},
    }

    def change(n: int) -> None:
        i = rng.randrange(600)
        collection.update(ids=[f"doc-{i}"], metadatas=[meta(i, n)])
        collection.add(ids=[f"new-{n}"], embeddings=[vector()], metadatas=[meta(n, 0)])
        collection.delete(ids=[f"doc-{rng.randrange(600)}"])

    job = apply_while_changing(document, tmp_path, change)
    done = sync(job)
    assert done["ok"] and done["written"] > 0 and done["deleted"] > 0
    assert_equals_fresh_apply(document, tmp_path)

    # Known changes: exactly these are written and deleted.
    remaining = collection.get(include=[])["ids"]
    gone, touched = remaining[:2], remaining[2:4]
    collection.delete(ids=gone)
    collection.update(ids=touched, metadatas=[{"category": "moved", "version": -1}] * 2)
    collection.add(ids=["added-1"], embeddings=[vector()], metadatas=[meta(1, 0)])
    again = sync(job)
    assert (again["written"], again["new"], again["deleted"]) == (3, 1, 2)
    as_points = lambda names: sorted(str(point_id(n)[0]) for n in names)  # noqa: E731
    assert sorted(map(str, again["written_examples"])) == as_points([*touched, "added-1"])
    assert sorted(map(str, again["deleted_examples"])) == as_points(gone)
    assert_equals_fresh_apply(document, tmp_path)


def test_redis_changing_during_apply_then_sync_is_exact(redis_server: Any, tmp_path: Path) -> None:
    """The second source that changes under apply: a SCAN over a Redis index while a writer
    updates, adds and deletes documents may see some twice and miss others; sync mends it."""
    np = pytest.importorskip("numpy")
    client = redis_server.client()
    client.execute_command(
        "FT.CREATE", "liveidx", "ON", "HASH", "PREFIX", "1", "live:", "SCHEMA",
        "v", "VECTOR", "FLAT", "6", "TYPE", "FLOAT32", "DIM", str(DIM), "DISTANCE_METRIC", "L2",
        "version", "NUMERIC",
    )  # fmt: skip
    rng = random.Random(5)

    def put(key: str, version: int) -> None:
        vector = np.array([rng.uniform(-1, 1) for _ in range(DIM)], dtype="<f4").tobytes()
        client.hset(key, mapping={"v": vector, "version": version})

    for i in range(600):
        put(f"live:{i}", 0)
    document = {
        "version": 1,
        "name": "redis-live",
        "source": {"type": "redis", "url": redis_server.url, "index": "liveidx"},
        "target": {"path": str(tmp_path / "target"), "collection": "copy"},
        "batch_size": 20,
        "parallelism": 2,
        "checkpoint": {"store": "file", "path": str(tmp_path / "checkpoints.json")},
    }

    def change(n: int) -> None:
        put(f"live:{rng.randrange(600)}", n)
        put(f"live:new-{n}", 0)
        client.delete(f"live:{rng.randrange(600)}")

    job = apply_while_changing(document, tmp_path, change)
    done = sync(job)
    assert done["ok"] and done["written"] > 0 and done["deleted"] > 0
    assert_equals_fresh_apply(document, tmp_path)
    again = sync(job)
    assert (again["written"], again["deleted"]) == (0, 0), "nothing changed since"


# --- kill -9 ----------------------------------------------------------------------------


def sync_checkpointed(checkpoints: Path) -> int:
    """Points the killed sync's partitions say they wrote."""
    try:
        data = json.loads(checkpoints.read_text())
    except (OSError, ValueError):
        return 0
    partitions = (data["jobs"].get("synced sync") or {}).get("partitions", {})
    return sum(state["points"] for state in partitions.values())


def test_sync_killed_with_sigkill_resumes_exactly(tmp_path: Path) -> None:
    rows = file_rows(800)
    write_rows(tmp_path / "rows.jsonl", rows)
    document = file_job(tmp_path, batch_size=10)
    job = save_job(document, tmp_path / "job.yaml")
    run_job(document, tmp_path)
    rows = [r for r in rows if r["id"] % 80 != 7]  # 10 deleted
    for row in rows:
        row["price"] = -row["price"]  # every other one changed
    rows += [{**rows[0], "id": 5000 + i} for i in range(10)]  # 10 new
    write_rows(tmp_path / "rows.jsonl", rows)

    process = subprocess.Popen(
        [sys.executable, "-m", "qmigrate", "sync", str(job)],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while sync_checkpointed(tmp_path / "checkpoints.json") < 150:
            assert process.poll() is None, "sync finished before the kill"
            assert time.monotonic() < deadline
            time.sleep(0.005)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait()
    killed_at = sync_checkpointed(tmp_path / "checkpoints.json")
    assert 150 <= killed_at < len(rows) - 1
    status = run_cli("status", str(job), cwd=tmp_path)
    assert "  sync: a pass is in progress (" in status.stdout, status.stdout
    assert "sync: last pass" not in status.stdout

    resumed = sync(job)
    assert resumed["resumed"] and resumed["ok"]
    status = run_cli("status", str(job), cwd=tmp_path)
    assert "  sync: last pass finished " in status.stdout, status.stdout
    assert f"(full): wrote {resumed['written']:,}, deleted 10" in status.stdout
    assert "in progress" not in status.stdout.split("sync:", 1)[1]
    assert resumed["written"] <= len(rows) - 1 - killed_at + 40, "resumed from the cursors"
    assert resumed["deleted"] == 10, "deletes know the IDs read before the kill"
    assert_equals_fresh_apply(document, tmp_path)
    assert (
        not (tmp_path / "checkpoints.json").exists()
        or "synced sync" not in json.loads((tmp_path / "checkpoints.json").read_text())["jobs"]
    )


# --- sync.changed_field -----------------------------------------------------------------


def changed_field_finds_what_full_finds(
    document: dict[str, Any], tmp_path: Path, change: Any, gone: list[Any], touched: list[Any]
) -> dict[str, Any]:
    """Two full passes (a watermark needs two: it reads from the pass before the last), then
    `change()`; the changed_field pass writes and deletes what a full dry run finds."""
    job = save_job(document, tmp_path / "job.yaml")
    full_job = save_job({k: v for k, v in document.items() if k != "sync"}, tmp_path / "full.yaml")
    run_job(document, tmp_path, "apply.yaml")
    first, second = sync(job), sync(job)
    assert (first["mode"], second["mode"]) == ("full", "full")
    assert first["watermark"] == second["watermark"] is not None
    change()
    full = sync(full_job, "--dry-run")
    changed = sync(job)
    assert changed["mode"] == "changed_field"
    assert changed["watermark_from"] == second["watermark"]
    for count in ("written", "new", "changed", "deleted"):
        assert changed[count] == full[count], count
    for examples in ("written_examples", "deleted_examples"):
        assert sorted(map(str, changed[examples])) == sorted(map(str, full[examples]))
    assert sorted(map(str, changed["deleted_examples"])) == sorted(str(i) for i in gone)
    assert sorted(map(str, changed["written_examples"])) == sorted(str(i) for i in touched)
    assert_equals_fresh_apply(document, tmp_path)
    return changed


def test_changed_field_on_a_file_evaluated_client_side(tmp_path: Path) -> None:
    rows = file_rows(200)
    write_rows(tmp_path / "rows.jsonl", rows)
    document = file_job(tmp_path, sync={"changed_field": "updated"})

    def change() -> None:
        kept = [r for r in rows if r["id"] not in (3, 4)]
        for row in kept:
            if row["id"] in (10, 11):
                row.update(price=-1, updated=2000)
        kept.append({**rows[0], "id": 900, "updated": 2001})
        write_rows(tmp_path / "rows.jsonl", kept)

    changed = changed_field_finds_what_full_finds(
        document, tmp_path, change, gone=[3, 4], touched=[10, 11, 900]
    )
    assert changed["read"] == 199, "the file source cannot evaluate the range: all read"
    assert changed["watermark"] == 2001
    assert run_cli("reset", str(tmp_path / "job.yaml"), cwd=tmp_path).code == 0
    assert sync(tmp_path / "job.yaml")["mode"] == "full", "reset forgets the watermark"


def test_changed_field_of_date_times(tmp_path: Path) -> None:
    """RFC 3339 text compares as time, not as text: "...T9:..." is not after "...T10:..."."""
    rows = file_rows(60)
    for row in rows:
        row["updated"] = f"2025-01-01T{row['id'] % 10:02d}:00:00+00:00"
    write_rows(tmp_path / "rows.jsonl", rows)
    document = file_job(tmp_path, sync={"changed_field": "updated"})

    def change() -> None:
        kept = [r for r in rows if r["id"] != 3]
        kept[10]["price"] = -1
        kept[10]["updated"] = "2025-01-01T10:30:00Z"
        write_rows(tmp_path / "rows.jsonl", kept)

    changed = changed_field_finds_what_full_finds(
        document, tmp_path, change, gone=[3], touched=[rows[11]["id"]]
    )
    assert changed["watermark_from"] == "2025-01-01T09:00:00+00:00"
    assert changed["watermark"] == "2025-01-01T10:30:00Z"


def test_changed_field_on_redis_pushed_down(redis_server: Any, tmp_path: Path) -> None:
    np = pytest.importorskip("numpy")
    client = redis_server.client()
    client.execute_command(
        "FT.CREATE", "syncidx", "ON", "HASH", "PREFIX", "1", "sync:", "SCHEMA",
        "v", "VECTOR", "FLAT", "6", "TYPE", "FLOAT32", "DIM", str(DIM), "DISTANCE_METRIC", "L2",
        "price", "NUMERIC", "updated", "NUMERIC",
    )  # fmt: skip
    rng = random.Random(3)

    def put(i: int, price: int, updated: int) -> None:
        vector = np.array([rng.uniform(-1, 1) for _ in range(DIM)], dtype="<f4").tobytes()
        client.hset(f"sync:{i}", mapping={"v": vector, "price": price, "updated": updated})

    for i in range(200):
        put(i, i, 1000 + i)
    document = {
        "version": 1,
        "name": "redis-sync",
        "source": {"type": "redis", "url": redis_server.url, "index": "syncidx"},
        "target": {"path": str(tmp_path / "target"), "collection": "copy"},
        "batch_size": 50,
        "checkpoint": {"store": "file", "path": str(tmp_path / "checkpoints.json")},
        "sync": {"changed_field": "updated"},
    }

    def change() -> None:
        client.delete("sync:3", "sync:4")
        client.hset("sync:10", mapping={"price": -1, "updated": 2000})
        client.hset("sync:11", mapping={"price": -1, "updated": 2000})
        put(900, 1, 2001)

    def ids(names: list[int]) -> list[Any]:
        return [point_id(str(i))[0] for i in names]

    changed = changed_field_finds_what_full_finds(
        document, tmp_path, change, gone=ids([3, 4]), touched=ids([10, 11, 900])
    )
    assert changed["read"] == 4, "Redis evaluates updated >= 1199: 199, 10, 11 and 900"
    assert changed["ids_read"] == 199


# --- the ID set -------------------------------------------------------------------------


def test_id_set_merges_runs_in_qdrants_order_and_drops_a_torn_tail(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import uuid

    from qmigrate.sync import id_set

    monkeypatch.setattr(id_set, "RUN_KEYS", 7)  # many runs per file
    rng = random.Random(5)
    ids: list[Any] = [rng.randrange(2**64) for _ in range(60)] + [0, 2**64 - 1]
    ids += [str(uuid.UUID(int=rng.getrandbits(128))) for _ in range(60)]
    ids += ["00000000-0000-0000-0000-000000000000"]  # the smallest UUID, after every integer
    spill = id_set.IdSpill(tmp_path / "ids")
    for start in range(0, len(ids), 9):
        spill.append(f"p{start % 4}", ids[start : start + 9] + ids[:3])  # repeats
    with open(next((tmp_path / "ids").glob("*.uuid")), "ab") as torn:
        torn.write(b"\x01\x02\x03")  # a kill in the middle of a record
    keys = list(spill.sorted_keys())
    assert keys == sorted({id_set.key(i) for i in ids})
    assert [id_set.point_id(k) for k in keys][61:63] == [
        2**64 - 1,
        "00000000-0000-0000-0000-000000000000",
    ]
