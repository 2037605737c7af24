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


def test_every_arrow_type_arrives_in_a_faithful_form_and_plan_names_it(tmp_path: Path) -> None:
    import datetime
    import decimal

    import pyarrow as pa
    import pyarrow.parquet as pq

    paris = datetime.timezone(datetime.timedelta(hours=1))
    columns = {
        "id": pa.array([2**64 - 1, 1], pa.uint64()),
        "v": pa.array([[1.0, 0.0], [0.0, 1.0]], pa.list_(pa.float32())),
        "price": pa.array([decimal.Decimal("12.34"), None], pa.decimal128(10, 2)),
        "exact": pa.array([decimal.Decimal("12345678901234567.89"), None], pa.decimal128(38, 2)),
        "blob": pa.array([b"\x00\xffqm", None], pa.binary()),
        "big_blob": pa.array([b"abc", None], pa.large_binary()),
        "counts": pa.array([[("a", 1), ("b", 2**62)], None], pa.map_(pa.string(), pa.int64())),
        "by_number": pa.array([None, [(1, "x")]], pa.map_(pa.int64(), pa.string())),
        "at": pa.array(
            [datetime.datetime(2024, 1, 2, 4, 4, 5, 123456, tzinfo=paris), None],
            pa.timestamp("us", tz="Europe/Paris"),
        ),
        "local": pa.array([1704164645123456789, None], pa.timestamp("ns")),
        "day": pa.array([datetime.date(2024, 1, 2), None], pa.date32()),
        "took": pa.array([-1500, None], pa.duration("ms")),
        "nested": pa.array(
            [{"raw": b"\x01", "when": datetime.date(2020, 5, 6)}, None],
            pa.struct([("raw", pa.binary()), ("when", pa.date32())]),
        ),
        "unsigned": pa.array([5, 2**64 - 1], pa.uint64()),
    }
    data = tmp_path / "rows.parquet"
    pq.write_table(pa.table(columns), data)
    job = file_job(tmp_path, data)

    planned = run_cli("plan", str(job), "--output", "json", cwd=tmp_path)
    assert planned.code == 0, planned.stderr
    body = planned.json()
    plans = body["jobs"]
    details = plans[0]["source"]["details"]
    assert details["payload_forms"]["price"] == "decimal128(10, 2) as a number"
    assert "as a string" in details["payload_forms"]["exact"]
    assert details["payload_forms"]["blob"] == "binary as base64 text"
    assert "as an object" in details["payload_forms"]["counts"]
    assert "by_number" in details["columns_not_carried"]
    assert "by_number" in run_cli("plan", str(job), cwd=tmp_path).stdout

    applied = run_cli("apply", str(job), cwd=tmp_path)
    assert applied.code == 0, applied.stderr
    points = read_collection(tmp_path / "target", "copy")
    assert list(points) == [2**64 - 1]
    assert points[2**64 - 1].payload == {
        "price": 12.34,
        "exact": "12345678901234567.89",
        "blob": "AP9xbQ==",
        "big_blob": "YWJj",
        "counts": {"a": 1, "b": 2**62},
        "by_number": None,
        "at": "2024-01-02T03:04:05.123456Z",
        "local": "2024-01-02T03:04:05.123456789",
        "day": "2024-01-02",
        "took": "-PT1.5S",
        "nested": {"raw": "AQ==", "when": "2020-05-06"},
        "unsigned": 5,
    }
    dead = [json.loads(line) for line in (tmp_path / "dead.jsonl").read_text().splitlines()]
    assert [letter["id"] for letter in dead] == [1]
    assert "column 'by_number'" in dead[0]["error"]
    verified = run_cli("verify", str(job), cwd=tmp_path)
    assert verified.code == 0, verified.stdout + verified.stderr


def test_a_jsonl_job_runs_without_pyarrow(tmp_path: Path) -> None:
    """pyarrow comes only with the parquet extra: the quickstart, JSONL into local mode,
    must run on `pip install .` alone."""
    blocked = tmp_path / "blocked" / "pyarrow"
    blocked.mkdir(parents=True)
    (blocked / "__init__.py").write_text("raise ImportError(\"No module named 'pyarrow'\")\n")
    repo = Path(__file__).resolve().parents[2]
    result = run_cli(
        "apply",
        str(repo / "jobs" / "quickstart.yaml"),
        "--output",
        "json",
        cwd=tmp_path,
        env={"PYTHONPATH": str(tmp_path / "blocked"), "QMIGRATE_TARGET_PATH": str(tmp_path / "q")},
    )
    assert result.code == 0, result.stderr
    assert result.json()["jobs"][0]["count_check"] == "ok"
