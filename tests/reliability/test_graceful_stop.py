"""SIGINT and SIGTERM stop a run cleanly: exit 130 or 143 with one line and no traceback,
checkpoints kept, a bulk load's HNSW m given back, and the next apply resumes exactly."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import run_cli
from tests.servers.qdrant_rest import Faults, Store

ROWS = 4000


@pytest.mark.parametrize(
    ("stop", "code", "word"),
    [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")],
)
def test_a_stop_mid_bulk_load_restores_m_and_resumes_exactly(
    tmp_path: Path, stand_in: tuple[str, Store, Faults], stop: int, code: int, word: str
) -> None:
    url, store, faults = stand_in
    # Writes that take a little time: once in CI all 4,000 points were written before the
    # signal landed, likely because the stand-in's threads, in this process, outran the loop
    # below on a busy machine.
    faults.latency = 0.02
    rows = [{"id": i, "v": [float(i), 1.0], "n": i} for i in range(ROWS)]
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    job = {
        "version": 1,
        "name": "stopped",
        "source": {"type": "file", "path": "rows.jsonl", "vectors": {"v": {"distance": "dot"}}},
        "target": {"url": url, "collection": "copy", "bulk_load": True, "hnsw": {"m": 24}},
        "mapping": {"vectors": {"v": ""}},
        "batch_size": 10,
        "parallelism": 2,
    }
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(job))
    process = subprocess.Popen(
        [sys.executable, "-m", "qmigrate", "apply", "job.yaml"],
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        text=True,
        # A shell's background job (`cmd &`) starts with SIGINT ignored, and the ignore is
        # inherited; Python then keeps ignoring it, as it should. The test wants a terminal's.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 60
    while not (store.exists("copy") and store.count("copy") >= 200):
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.01)
    assert store.info("copy").config.hnsw_config.m == 0, "the bulk load is under way"
    process.send_signal(stop)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == code, stderr
    assert "Traceback" not in stderr
    last = stderr.strip().splitlines()[-1]
    assert last == f"qmigrate: {word}; progress up to the last checkpoint is kept"
    written = store.count("copy")
    assert 200 <= written < ROWS, "stopped mid-run"
    assert store.info("copy").config.hnsw_config.m == 24, "m given back"
    again = run_cli("apply", "job.yaml", "--output", "json", cwd=tmp_path)
    assert again.code == 0, again.stderr
    assert again.json()["jobs"][0]["count_check"] == "ok"
    assert store.count("copy") == ROWS
    assert store.info("copy").config.hnsw_config.m == 24
