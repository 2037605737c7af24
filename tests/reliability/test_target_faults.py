"""Faults of a Qdrant server, through a stand-in REST endpoint backed by local mode: each
fault ends with the target exactly equal to the source, or with one clear line and an
exact resume. This is also the end-to-end test of the `url:` target path."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from qmigrate.errors import QmigrateError
from tests.conftest import run_job
from tests.servers.qdrant_rest import Faults, Store

ROWS = 300


def rows() -> list[dict[str, Any]]:
    rng = random.Random(3)
    return [
        {"id": i, "v": [rng.uniform(-1, 1) for _ in range(8)], "k": i % 5, "t": f"row {i}"}
        for i in range(ROWS)
    ]


def job(tmp_path: Path, url: str, **extra: Any) -> dict[str, Any]:
    data = tmp_path / "rows.jsonl"
    if not data.exists():
        data.write_text("".join(json.dumps(r) + "\n" for r in rows()))
    return {
        "version": 1,
        "name": "faults",
        "source": {"type": "file", "path": str(data), "vectors": {"v": {"distance": "dot"}}},
        "target": {"url": url, "collection": "copy", "timeout": 1},
        "mapping": {"vectors": {"v": ""}},
        "batch_size": 32,
        "parallelism": 2,
        **extra,
    }


def assert_exact(store: Store) -> None:
    points, _ = store.call("scroll", "copy", limit=ROWS * 2, with_payload=True, with_vectors=True)
    expected = {r["id"]: r for r in rows()}
    assert sorted(p.id for p in points) == sorted(expected)
    for point in points:
        row = expected[point.id]
        assert point.payload == {"k": row["k"], "t": row["t"]}
        assert point.vector == pytest.approx(row["v"], rel=1e-6)


@pytest.mark.parametrize(
    "inject",
    [
        lambda f: f.fail_next(3, 429, retry_after=1),  # Qdrant sends whole seconds
        lambda f: f.fail_next(3, 503),
        lambda f: setattr(f, "resets", 3),
        lambda f: (setattr(f, "stalls", 1), setattr(f, "stall_seconds", 2.5)),
    ],
    ids=["429-retry-after", "503", "reset-after-apply", "stall-past-timeout"],
)
def test_transient_faults_end_exact(
    tmp_path: Path, stand_in: tuple[str, Store, Faults], inject: Any
) -> None:
    url, store, faults = stand_in
    faults.path = "/collections/copy/points"  # the data writes
    inject(faults)
    summary = run_job(job(tmp_path, url), tmp_path)
    assert summary.count_check == "ok" and summary.retries >= 1
    assert not faults.status and faults.resets == 0 and faults.stalls == 0, "all faults hit"
    assert_exact(store)


def test_faults_on_checkpoint_writes_are_ridden_out(
    tmp_path: Path, stand_in: tuple[str, Store, Faults]
) -> None:
    url, store, faults = stand_in
    faults.path = "/collections/_migration_offsets/points"  # the job state, then partitions
    faults.fail_next(2, 503)
    faults.resets = 2
    summary = run_job(job(tmp_path, url), tmp_path)
    assert summary.count_check == "ok"
    assert not faults.status and faults.resets == 0
    assert_exact(store)


def test_payload_too_large_splits_the_batch(
    tmp_path: Path, stand_in: tuple[str, Store, Faults]
) -> None:
    url, store, faults = stand_in
    faults.max_bytes = 4000  # a batch of 32 points is about 8 kB of JSON
    summary = run_job(job(tmp_path, url), tmp_path)
    assert (summary.count_check, summary.retries) == ("ok", 0)
    assert_exact(store)


def test_a_fault_that_lasts_stops_in_one_line_and_resumes_exact(
    tmp_path: Path, stand_in: tuple[str, Store, Faults]
) -> None:
    url, store, faults = stand_in
    faults.path = "/collections/copy/points"
    faults.fail_next(10**6, 503)
    with pytest.raises(QmigrateError, match=r"writing to the target kept failing .* HTTP 503"):
        run_job(job(tmp_path, url, parallelism=1, retry={"give_up_after": 3}), tmp_path)
    faults.status.clear()
    summary = run_job(job(tmp_path, url), tmp_path)
    assert summary.count_check == "ok"
    assert_exact(store)
