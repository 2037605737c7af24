"""The engine loop: parallelism, restart policies, invalid records, retries, client-side filters."""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from qmigrate import engine, spec
from qmigrate.engine import writer as engine_writer
from qmigrate.errors import QmigrateError
from qmigrate.records import CursorLost, Page, Partition
from tests.conftest import (
    assert_same_points,
    make_qdrant_collection,
    read_collection,
    run_job,
)
from tests.servers.qdrant_grpc import running_both
from tests.servers.qdrant_rest import running


def qdrant_job(tmp_path: Path, target: str = "target", **extra: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "version": 1,
        "name": "engine",
        "source": {"type": "qdrant", "path": str(tmp_path / "source"), "collection": "docs"},
        "target": {"path": str(tmp_path / target), "collection": "copy"},
        "batch_size": 16,
    }
    document.update(extra)
    return document


def file_job(tmp_path: Path, rows: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    document: dict[str, Any] = {
        "version": 1,
        "name": "engine-file",
        "source": {"type": "file", "path": str(path), "vectors": {"v": {"distance": "cosine"}}},
        "target": {"path": str(tmp_path / "target"), "collection": "copy"},
        "mapping": {"vectors": {"v": ""}},
        "batch_size": 10,
    }
    document.update(extra)
    return document


def load(document: dict[str, Any], tmp_path: Path) -> spec.Job:
    path = tmp_path / "job.yaml"
    path.write_text(json.dumps(document))
    return spec.load(path, {})


def test_parallelism_gives_identical_data(tmp_path: Path) -> None:
    make_qdrant_collection(tmp_path / "source", count=200)
    run_job(qdrant_job(tmp_path, "one", parallelism=1), tmp_path)
    summary = run_job(qdrant_job(tmp_path, "eight", parallelism=8), tmp_path)
    assert summary.partitions == 8
    assert_same_points(
        read_collection(tmp_path / "one", "copy"), read_collection(tmp_path / "eight", "copy")
    )


def test_changed_job_refuses_to_resume_unless_told_to_restart(tmp_path: Path) -> None:
    make_qdrant_collection(tmp_path / "source", count=40)
    run_job(qdrant_job(tmp_path), tmp_path)
    changed = qdrant_job(tmp_path, filter={"must": [{"key": "i", "match": {"value": 1}}]})
    with pytest.raises(QmigrateError, match="changed since its checkpoints were written"):
        run_job(changed, tmp_path)
    summary = run_job({**changed, "restart": "restart"}, tmp_path)
    assert summary.status == "done" and summary.written == 1


def interrupt_after_pages(document: dict[str, Any], tmp_path: Path, pages: int) -> None:
    """Run a job whose source fails for good after `pages` pages of each partition."""
    resolved = engine.resolve(load(document, tmp_path))
    read = resolved.source.read

    def breaking(partition: Partition, cursor: Any) -> Iterator[Page]:
        source_pages = read(partition, cursor)
        for _ in range(pages):
            yield next(source_pages)
        raise PermissionError("access revoked")

    resolved.source.read = breaking  # type: ignore[method-assign]
    try:
        with pytest.raises(QmigrateError, match="reading from the source failed: PermissionError"):
            engine.apply(resolved)
    finally:
        resolved.close()


def test_restart_fail_refuses_an_unfinished_run(tmp_path: Path) -> None:
    make_qdrant_collection(tmp_path / "source", count=40)
    interrupt_after_pages(qdrant_job(tmp_path), tmp_path, pages=1)
    with pytest.raises(QmigrateError, match="has an unfinished run and restart is fail"):
        run_job(qdrant_job(tmp_path, restart="fail"), tmp_path)
    assert run_job(qdrant_job(tmp_path), tmp_path).written == 40 - 16


def test_changing_parallelism_on_resume_keeps_the_stored_partitions(tmp_path: Path) -> None:
    make_qdrant_collection(tmp_path / "source", count=60)
    interrupt_after_pages(qdrant_job(tmp_path, parallelism=3), tmp_path, pages=0)
    summary = run_job(qdrant_job(tmp_path, parallelism=5), tmp_path)
    assert summary.partitions == 3 and summary.written == 60
    assert summary.count_check == "ok"


def test_invalid_record_stops_the_job_by_default(tmp_path: Path) -> None:
    rows = [{"id": i, "v": [1.0, 2.0]} for i in range(30)]
    rows[17]["v"] = [1.0]
    with pytest.raises(
        QmigrateError,
        match=r"record 17 \(.*rows.jsonl line 18\) cannot be migrated: vector 'v' has 1 dim",
    ):
        run_job(file_job(tmp_path, rows), tmp_path)


def test_dead_letter_sets_invalid_records_aside(tmp_path: Path) -> None:
    rows = [{"id": i, "v": [1.0, 2.0], "k": i} for i in range(30)]
    rows[5]["id"] = -5
    rows[17]["v"] = [1.0, "x"]
    dead = tmp_path / "dead.jsonl"
    summary = run_job(
        file_job(tmp_path, rows, on_invalid={"action": "dead_letter", "path": str(dead)}), tmp_path
    )
    assert (summary.written, summary.invalid, summary.count_check) == (28, 2, "ok")
    letters = [json.loads(line) for line in dead.read_text().splitlines()]
    assert [(d["id"], d["payload"]) for d in letters] == [(-5, {"k": 5}), (17, {"k": 17})]
    assert "outside the unsigned 64-bit range" in letters[0]["error"]


def test_client_side_filter_counts_what_it_leaves_out(tmp_path: Path) -> None:
    rows = [{"id": i, "v": [1.0, float(i)], "even": i % 2 == 0} for i in range(50)]
    flt = {"must": [{"key": "even", "match": {"value": True}}]}
    summary = run_job(file_job(tmp_path, rows, filter=flt, parallelism=2), tmp_path)
    assert (summary.read, summary.written, summary.filtered) == (50, 25, 25)
    assert sorted(read_collection(tmp_path / "target", "copy")) == list(range(0, 50, 2))


class Unavailable(Exception):
    """What an HTTP client raises on a 503."""

    status_code = 503


def test_transient_write_errors_are_retried(tmp_path: Path) -> None:
    make_qdrant_collection(tmp_path / "source", count=64)
    resolved = engine.resolve(load(qdrant_job(tmp_path), tmp_path))
    upsert = resolved.target.upsert
    failures = iter([True, True, False, True] + [False] * 100)

    def flaky(points: list[Any], wait: bool, *rest: Any) -> int:
        if next(failures):
            raise Unavailable("service unavailable")
        return upsert(points, wait, *rest)

    resolved.target.upsert = flaky  # type: ignore[method-assign]
    summary = engine.apply(resolved)
    resolved.close()
    assert (summary.retries, summary.written, summary.count_check) == (3, 64, "ok")


def test_transient_read_errors_resume_from_the_last_cursor(tmp_path: Path) -> None:
    make_qdrant_collection(tmp_path / "source", count=100)
    resolved = engine.resolve(load(qdrant_job(tmp_path, parallelism=2), tmp_path))
    read = resolved.source.read
    calls = {"n": 0}

    def dropping(partition: Partition, cursor: Any) -> Iterator[Page]:
        for page in read(partition, cursor):
            calls["n"] += 1
            if calls["n"] in (2, 5):
                raise ConnectionResetError("connection reset by peer")
            yield page

    resolved.source.read = dropping  # type: ignore[method-assign]
    summary = engine.apply(resolved)
    resolved.close()
    assert summary.retries == 2
    assert (summary.written, summary.count_check) == (100, "ok")
    assert_same_points(
        read_collection(tmp_path / "source", "docs"), read_collection(tmp_path / "target", "copy")
    )


def test_permanent_source_error_stops_with_checkpoints_intact(tmp_path: Path) -> None:
    make_qdrant_collection(tmp_path / "source", count=100)
    interrupt_after_pages(qdrant_job(tmp_path), tmp_path, pages=2)
    summary = run_job(qdrant_job(tmp_path), tmp_path)
    assert summary.written == 100 - 32, "the resumed run starts after the two saved pages"
    assert summary.count_check == "ok"
    assert_same_points(
        read_collection(tmp_path / "source", "docs"), read_collection(tmp_path / "target", "copy")
    )


def test_a_write_that_keeps_failing_is_retried_for_retry_give_up_after(tmp_path: Path) -> None:
    make_qdrant_collection(tmp_path / "source", count=40)
    document = qdrant_job(tmp_path, retry={"give_up_after": 3})
    resolved = engine.resolve(load(document, tmp_path))
    attempts = {"n": 0}

    def down(points: list[Any], wait: bool, *rest: Any) -> int:
        attempts["n"] += 1
        raise ConnectionRefusedError("connection refused")

    resolved.target.upsert = down  # type: ignore[method-assign]
    started = time.monotonic()
    with pytest.raises(QmigrateError, match=r"writing to the target kept failing for \ds") as e:
        engine.apply(resolved)
    elapsed = time.monotonic() - started
    resolved.close()
    assert "retry.give_up_after (3s)" in e.value.message and "ConnectionRefused" in e.value.message
    assert attempts["n"] >= 3, "retried within the bound"
    # Not the bound times the read retries: a write that gave up is not read again.
    assert elapsed < 3 + 1, f"{elapsed:.1f}s"


def test_a_failing_checkpoint_save_says_so(tmp_path: Path) -> None:
    make_qdrant_collection(tmp_path / "source", count=40)
    resolved = engine.resolve(load(qdrant_job(tmp_path), tmp_path))

    def read_only(job: str, state: Any) -> None:
        raise PermissionError("read-only")

    resolved.store.save_partition = read_only  # type: ignore[method-assign]
    with pytest.raises(QmigrateError, match="saving the checkpoint failed: PermissionError"):
        engine.apply(resolved)
    resolved.close()


def test_dead_letters_are_not_repeated_by_a_resumed_run(tmp_path: Path) -> None:
    rows = [{"id": i, "v": [1.0, 2.0]} for i in range(60)]
    for bad in (3, 25, 47):
        rows[bad]["v"] = [1.0]
    dead = tmp_path / "dead.jsonl"
    document = file_job(tmp_path, rows, on_invalid={"action": "dead_letter", "path": str(dead)})
    interrupt_after_pages(document, tmp_path, pages=3)
    summary = run_job(document, tmp_path)
    assert (summary.count_check, summary.written) == ("ok", 30 - 1), "page 4 on, minus id 47"
    assert [json.loads(line)["id"] for line in dead.read_text().splitlines()] == [3, 25, 47]


# --- trust: duplicates, changed sources, refusals before writes ---------------------------


def rows_of(ids: list[int]) -> list[dict[str, Any]]:
    return [{"id": i, "v": [1.0, float(i)], "n": n} for n, i in enumerate(ids)]


def test_duplicate_ids_in_one_page_stop_the_job_and_are_named(tmp_path: Path) -> None:
    ids = list(range(30))
    ids[13] = 11  # page 2 (rows 10-19) holds ID 11 twice
    with pytest.raises(QmigrateError, match=r"record 11 \(.*line 12\) and record 11 \(.*line 14"):
        run_job(file_job(tmp_path, rows_of(ids)), tmp_path)
    assert sorted(read_collection(tmp_path / "target", "copy")) == list(range(10))


def test_duplicate_ids_in_one_page_with_last_wins(tmp_path: Path) -> None:
    ids = list(range(30))
    ids[13] = 11
    summary = run_job(file_job(tmp_path, rows_of(ids), on_duplicate="last_wins"), tmp_path)
    assert (summary.written, summary.duplicates, summary.count_check) == (29, 1, "ok")
    assert read_collection(tmp_path / "target", "copy")[11].payload == {"n": 13}


def test_duplicates_across_pages_are_told_apart_from_loss(tmp_path: Path) -> None:
    ids = list(range(40))
    ids[25] = 3  # ID 3 again, two pages later
    document = file_job(tmp_path, rows_of(ids))
    with pytest.raises(engine.CountCheckFailed) as failed:
        run_job(document, tmp_path)
    message = failed.value.message
    assert "1 records whose ID an earlier record already had (e.g. 3)" in message
    assert "on_duplicate: last_wins" in message and "lacks" not in message
    # The way out: accept the duplicates, without moving the data again.
    summary = run_job({**document, "on_duplicate": "last_wins"}, tmp_path)
    assert (summary.status, summary.count_check, summary.duplicates) == ("already done", "ok", 1)
    assert summary.target_count == 39


def server_job(
    tmp_path: Path, url: str, ids: list[int] | None = None, **target: Any
) -> dict[str, Any]:
    """A file job, in pages of 10, into a stand-in server (`tests.servers`), over REST."""
    document = file_job(tmp_path, rows_of(ids if ids is not None else list(range(100))))
    document["target"] = {"url": url, "collection": "copy", "prefer_grpc": False, **target}
    return document


def barriers(store: Any) -> list[tuple[int, bool, list[Any] | None]]:
    """The waited deletes of one point the job never wrote: the engine's barriers."""
    written = {i for _, ids in store.data_upserts for i in ids}
    return [
        (after, wait, ids)
        for after, wait, ids in store.data_deletes
        if wait and ids is not None and len(ids) == 1 and ids[0] not in written
    ]


def test_data_goes_unwaited_then_one_waited_barrier(tmp_path: Path) -> None:
    """One shard: data upserts return on acknowledgement, and one waited delete of a point
    no job writes follows them all, after which the server has applied them."""
    with running() as (url, store, _faults):
        summary = run_job(server_job(tmp_path, url), tmp_path)
    assert (summary.written, summary.count_check) == (100, "ok")
    assert [wait for wait, _ in store.data_upserts] == [False] * len(store.data_upserts)
    assert sorted(i for _, ids in store.data_upserts for i in ids) == list(range(100))
    assert store.data_deletes == barriers(store), "no delete but the barrier"
    assert [after for after, _, _ in barriers(store)] == [len(store.data_upserts)]


def test_grpc_data_goes_unwaited_then_one_waited_barrier(tmp_path: Path) -> None:
    with running_both() as (url, grpc_port, store):
        document = server_job(tmp_path, url, grpc_port=grpc_port, prefer_grpc=True)
        summary = run_job(document, tmp_path)
    assert (summary.written, summary.count_check, store.upserts["rest"]) == (100, "ok", 0)
    assert [wait for wait, _ in store.data_upserts] == [False] * len(store.data_upserts)
    assert [after for after, _, _ in barriers(store)] == [len(store.data_upserts)]


def test_a_run_that_finds_every_partition_done_sends_the_barrier(tmp_path: Path) -> None:
    """A run killed after its partitions' last checkpoints, before its barrier: the next run
    has nothing to write, and still has the server apply what the killed one sent."""
    with running() as (url, store, _faults):
        document = server_job(tmp_path, url)
        run_job(document, tmp_path)
        store.data_deletes.clear()
        summary = run_job(document, tmp_path)
    assert (summary.status, summary.count_check) == ("already done", "ok")
    assert len(barriers(store)) == 1


@pytest.mark.parametrize("layout", [{"shards": 2}, {"replication_factor": 2}])
def test_several_shards_or_replicas_wait_for_every_upsert(
    tmp_path: Path, layout: dict[str, int]
) -> None:
    """No single upsert is a barrier across shards, and replicas may apply updates in
    different orders: each upsert waits."""
    with running() as (url, store, _faults):
        summary = run_job(server_job(tmp_path, url, **layout), tmp_path)
    assert (summary.written, summary.count_check) == (100, "ok")
    assert all(wait for wait, _ in store.data_upserts)
    assert sorted(i for _, ids in store.data_upserts for i in ids) == list(range(100))
    assert not store.data_deletes, "every upsert waited: no barrier"


def test_several_upserts_are_in_flight_at_once(tmp_path: Path) -> None:
    with running() as (url, store, faults):
        faults.latency = 0.05
        summary = run_job(server_job(tmp_path, url, list(range(200)), in_flight=3), tmp_path)
    assert (summary.written, summary.count_check) == (200, "ok")
    assert store.most_writing == 3


def test_queued_pages_join_one_request_up_to_its_budget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with running() as (url, store, faults):
        faults.latency = 0.02  # pages queue up behind a slow server
        document = server_job(tmp_path, url, list(range(200)), in_flight=2)
        summary = run_job(document, tmp_path)
        joined = len(store.data_upserts)
        store.data_upserts.clear()
        monkeypatch.setattr(engine_writer, "REQUEST_BYTES", 1)
        run_job({**document, "restart": "restart"}, tmp_path)
        single = store.data_upserts
    assert (summary.written, summary.count_check) == (200, "ok")
    assert joined < 20, "20 pages of 10"
    assert len(single) == 20 and all(len(ids) <= 10 for _, ids in single)


def test_a_slow_checkpoint_save_does_not_hold_up_the_writes(tmp_path: Path) -> None:
    """Data keeps going out while a checkpoint is saved, even with one upsert in flight;
    pages acknowledged meanwhile are saved as one."""
    with running() as (url, store, faults):
        faults.path, faults.latency = "/collections/_migration_offsets/points", 0.2
        document = server_job(tmp_path, url, list(range(200)), in_flight=1)
        summary = run_job(document, tmp_path)
    assert (summary.written, summary.count_check) == (200, "ok")
    assert store.during_saves > 0


def test_the_file_store_saves_a_partition_a_few_times_a_second(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each file save rewrites the whole file: a partition's saves are at least
    `save_interval` apart however many pages go by, and the last one holds them all."""
    from qmigrate.checkpoint import FileStore

    saves: list[tuple[float, int]] = []
    original = FileStore.save_partition

    def timed(store: FileStore, job: str, state: Any) -> None:
        saves.append((time.monotonic(), state.points))
        original(store, job, state)

    monkeypatch.setattr(FileStore, "save_partition", timed)
    with running() as (url, _store, faults):
        faults.path, faults.latency = "/collections/copy/points", 0.002  # a run of 1 s or more
        document = server_job(tmp_path, url, list(range(2000)), in_flight=1)
        document["batch_size"] = 4
        document["checkpoint"] = {"store": "file", "path": str(tmp_path / "checkpoints.json")}
        summary = run_job(document, tmp_path)
    assert (summary.written, summary.count_check) == (2000, "ok")
    assert len(saves) >= 3, "the run lasted long enough for several saves"
    # The saver's: all but the last (the end of the partition saves at once).
    gaps = [later - earlier for (earlier, _), (later, _) in itertools.pairwise(saves[:-2])]
    assert gaps and min(gaps) >= FileStore.save_interval * 0.95, gaps
    assert len(saves) < 500 / 4, "far fewer saves than the 500 pages"
    assert saves[-1][1] == 2000


def test_a_failed_write_is_not_forgotten_when_the_block_ends_otherwise() -> None:
    """A source that loses its cursor after a write failed must not restart the partition
    as if nothing had happened: the write's failure is what surfaces."""
    from qdrant_client import models

    def send(points: list[Any], wait: bool) -> int:
        raise QmigrateError("writing failed")

    point = models.PointStruct(id=1, vector=[1.0], payload={})
    page = engine_writer.PreparedPage([point], [], cursor=1, read=1, filtered=0, duplicates=0,
                               passed_over=0)  # fmt: skip
    writer = engine_writer.PageWriter(send, lambda pages: None, 2, False, threading.Event())
    with pytest.raises(QmigrateError, match="writing failed"), writer:
        writer.put(page)
        writer.thread.join()
        raise CursorLost("the source's cursor expired")


def test_the_last_page_read_wins_with_requests_in_flight(tmp_path: Path) -> None:
    """An ID repeated in a later page waits for the request that holds it, even when that
    request is slow to answer; pages that repeat an ID never join one request."""
    ids = list(range(80))
    ids[25] = 3  # two pages after the first, which the server holds back
    ids[55] = 44  # in the next page: both queue up while the first is held
    with running() as (url, store, faults):
        faults.path = "/collections/copy/points"
        faults.stalls, faults.stall_seconds = 1, 0.5  # the first data upsert
        document = {**server_job(tmp_path, url, ids, in_flight=4), "on_duplicate": "last_wins"}
        summary = run_job(document, tmp_path)
        found = store.call("retrieve", "copy", [3, 44])
    assert (summary.target_count, summary.count_check) == (78, "ok")
    assert {p.id: p.payload for p in found} == {3: {"n": 25}, 44: {"n": 55}}
    assert all(len(set(request)) == len(request) for _, request in store.data_upserts[:-1])
    assert any(len(request) > 10 for _, request in store.data_upserts), "pages joined"


def test_points_missing_from_the_target_are_reported_as_loss(tmp_path: Path) -> None:
    from qdrant_client import QdrantClient, models

    document = file_job(tmp_path, rows_of(list(range(30))))
    run_job(document, tmp_path)
    client = QdrantClient(path=str(tmp_path / "target"))
    client.delete("copy", models.PointIdsList(points=[7, 21]))
    client.close()
    with pytest.raises(engine.CountCheckFailed, match=r"lacks 2 points .*\(e\.g\. 7, 21\)"):
        run_job(document, tmp_path)


def test_notices_go_to_the_channel_the_caller_gives(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The engine prints nothing itself: what it tells without stopping goes to `warn`."""
    from qdrant_client import QdrantClient, models

    document = file_job(tmp_path, rows_of(list(range(30))))
    run_job(document, tmp_path)
    client = QdrantClient(path=str(tmp_path / "target"))
    client.delete("copy", models.PointIdsList(points=[7]))
    client.close()
    capsys.readouterr()
    notices: list[str] = []
    resolved = engine.resolve(spec.load(tmp_path / "job.yaml", {}), warn=notices.append)
    try:
        with pytest.raises(engine.CountCheckFailed):
            engine.apply(resolved)
    finally:
        resolved.close()
    assert len(notices) == 1 and "reading the source again" in notices[0]
    assert capsys.readouterr().err == ""


def test_a_changed_source_file_is_refused_on_resume(tmp_path: Path) -> None:
    document = file_job(tmp_path, rows_of(list(range(60))))
    interrupt_after_pages(document, tmp_path, pages=2)
    data = tmp_path / "rows.jsonl"
    lines = data.read_text().splitlines(keepends=True)
    data.write_text("".join(lines[:5] + lines[6:]))  # one line deleted
    with pytest.raises(
        QmigrateError,
        match=r"source file .*rows.jsonl changed since the checkpoints were written "
        r"\(mtime/size\): use restart: restart",
    ):
        run_job(document, tmp_path)
    summary = run_job({**document, "restart": "restart"}, tmp_path)
    assert (summary.written, summary.count_check) == (59, "ok")


def test_a_new_file_matching_the_glob_is_a_change(tmp_path: Path) -> None:
    document = file_job(tmp_path, rows_of(list(range(20))))
    document["source"]["path"] = str(tmp_path / "*.jsonl")
    run_job(document, tmp_path)
    (tmp_path / "zz.jsonl").write_text(json.dumps({"id": 99, "v": [1.0, 2.0]}) + "\n")
    with pytest.raises(QmigrateError, match=r"source file .*zz.jsonl changed .*\(it is new\)"):
        run_job(document, tmp_path)


def test_a_refused_run_writes_nothing(tmp_path: Path) -> None:
    from qdrant_client import QdrantClient

    make_qdrant_collection(tmp_path / "source", count=40)
    run_job(qdrant_job(tmp_path), tmp_path)
    changed = qdrant_job(tmp_path, filter={"must": [{"key": "i", "match": {"value": 1}}]})
    changed["target"] = {**changed["target"], "collection": "copy", "bulk_load": True}
    client_before = read_collection(tmp_path / "target", "copy")
    with pytest.raises(QmigrateError, match=r"changed since .* \(changed: filter\)"):
        run_job(changed, tmp_path)
    renamed = {**changed, "target": {**changed["target"], "collection": "other"}}
    with pytest.raises(QmigrateError, match=r"\(changed: filter, target.collection\)"):
        run_job(renamed, tmp_path)
    client = QdrantClient(path=str(tmp_path / "target"))
    try:
        assert not client.collection_exists("other"), "no collection made by a refused run"
        assert client.get_collection("copy").config.hnsw_config.m == 16, "m left alone"
    finally:
        client.close()
    assert read_collection(tmp_path / "target", "copy") == client_before


def test_a_file_checkpoint_is_tied_to_its_target(tmp_path: Path) -> None:
    make_qdrant_collection(tmp_path / "source", count=40)
    store = {"store": "file", "path": str(tmp_path / "cp.json")}
    run_job(qdrant_job(tmp_path, "first", checkpoint=store), tmp_path)
    with pytest.raises(
        QmigrateError,
        match=r"checkpoint file .*cp.json holds job 'engine' for collection 'copy' at "
        r".*first, not 'copy' at .*second: give checkpoint.path another file",
    ):
        run_job(qdrant_job(tmp_path, "second", checkpoint=store), tmp_path)


def test_restart_recreate_drops_points_the_source_no_longer_has(tmp_path: Path) -> None:
    document = file_job(tmp_path, rows_of(list(range(30))))
    run_job(document, tmp_path)
    (tmp_path / "rows.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in rows_of(list(range(20))))
    )
    stale = run_job({**document, "restart": "restart"}, tmp_path)
    assert stale.target_count == 30 and stale.count_check == "ok"
    assert any("does not delete points the source no longer has" in n for n in stale.notes)
    fresh = run_job({**document, "restart": "recreate"}, tmp_path)
    assert (fresh.target_count, fresh.count_check) == (20, "ok")
    assert sorted(read_collection(tmp_path / "target", "copy")) == list(range(20))


def test_restart_recreate_never_drops_a_collection_the_job_did_not_create(
    tmp_path: Path,
) -> None:
    from qdrant_client import QdrantClient, models

    client = QdrantClient(path=str(tmp_path / "target"))
    client.create_collection("copy", models.VectorParams(size=2, distance=models.Distance.COSINE))
    client.upsert("copy", [models.PointStruct(id=1000, vector=[1.0, 0.0])])
    client.close()
    document = file_job(tmp_path, rows_of(list(range(10))), restart="recreate")
    with pytest.raises(QmigrateError, match="drops only a collection this job created"):
        run_job(document, tmp_path)
    run_job({**document, "restart": "resume"}, tmp_path)
    with pytest.raises(QmigrateError, match="drops only a collection this job created"):
        run_job(document, tmp_path)
    assert 1000 in read_collection(tmp_path / "target", "copy")
