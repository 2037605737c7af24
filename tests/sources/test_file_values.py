"""Values that must arrive exactly from files, through the CLI: integers of any size in
JSONL, and every Arrow type in Parquet."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from qdrant_client import QdrantClient

from tests.conftest import read_collection, run_cli

BIG = 100000000000000000000000000001
EXACT_ROW = {"id": 2**64 - 1, "v": [1.0, 0.0], "min": -(2**63), "max": 2**63 - 1, "count": 7}


def file_job(tmp_path: Path, data: Path) -> Path:
    document: dict[str, Any] = {
        "version": 1,
        "name": "values",
        "source": {"type": "file", "path": str(data), "vectors": {"v": {"distance": "dot"}}},
        "target": {"path": str(tmp_path / "target"), "collection": "copy"},
        "on_invalid": {"action": "dead_letter", "path": str(tmp_path / "dead.jsonl")},
        "verify": {"sample": "all", "queries": 0},
    }
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def test_jsonl_integers_arrive_exactly_or_as_invalid_records_naming_the_field(
    tmp_path: Path,
) -> None:
    vector = "[0.0, 1.0]"
    lines = [
        f'{{"id": 1, "v": {vector}, "big": {BIG}}}',
        f'{{"id": 2, "v": {vector}, "n": {2**64 - 1}}}',
        f'{{"id": 3, "v": {vector}, "neg": {-(2**63) - 1}}}',
        f'{{"id": {2**64}, "v": {vector}}}',
        f'{{"id": 4, "v": {vector}, "nested": {{"x": [1, {2**64}]}}}}',
        json.dumps(EXACT_ROW),
    ]
    data = tmp_path / "rows.jsonl"
    data.write_text("\n".join(lines) + "\n")
    job = file_job(tmp_path, data)

    applied = run_cli("apply", str(job), cwd=tmp_path)
    assert applied.code == 0, applied.stderr
    points = read_collection(tmp_path / "target", "copy")
    assert list(points) == [2**64 - 1]
    payload = points[2**64 - 1].payload
    assert payload == {"min": -(2**63), "max": 2**63 - 1, "count": 7}
    assert all(type(value) is int for value in payload.values())

    dead = [json.loads(line) for line in (tmp_path / "dead.jsonl").read_text().splitlines()]
    errors = {letter["id"]: letter["error"] for letter in dead}
    assert set(errors) == {1, 2, 3, 2**64, 4}  # exact ints, not rounded floats
    assert "payload 'big' is 100000000000000000000000000001" in errors[1]
    assert "payload 'n'" in errors[2]
    assert "payload 'neg'" in errors[3]
    assert "outside the unsigned 64-bit range" in errors[2**64]
    assert "payload 'nested.x[1]'" in errors[4]
    assert dead[0]["payload"] == {"big": BIG}

    verified = run_cli("verify", str(job), cwd=tmp_path)
    assert verified.code == 0, verified.stdout + verified.stderr


def test_verify_flags_an_integer_that_became_a_float(tmp_path: Path) -> None:
    data = tmp_path / "rows.jsonl"
    data.write_text(json.dumps(EXACT_ROW) + "\n")
    job = file_job(tmp_path, data)
    assert run_cli("apply", str(job), cwd=tmp_path).code == 0
    client = QdrantClient(path=str(tmp_path / "target"))
    client.set_payload("copy", {"count": 7.0, "max": float(2**63 - 1)}, points=[2**64 - 1])
    client.close()
    verified = run_cli("verify", str(job), cwd=tmp_path)
    assert verified.code == 3, verified.stdout + verified.stderr
    assert "payload 'count': source 7, target 7.0" in verified.stdout
    assert "payload 'max'" in verified.stdout
