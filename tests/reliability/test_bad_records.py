"""Records that cannot be mapped are never dropped silently: each stops the job naming the
record, or goes to the dead-letter file with its reason, and the rest of the page moves."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from qmigrate.engine import dead_letters as dead_letter
from qmigrate.errors import QmigrateError
from qmigrate.records import Record
from tests.conftest import read_collection, run_job

GOOD = 30
BAD_LINES = {  # id -> the JSON line, and what the dead letter must say
    101: ('{"id": 101, "v": [1.0, NaN], "s": {"indices": [1], "values": [1.0]}}', "not finite"),
    102: ('{"id": 102, "v": [1.0, Infinity], "s": null}', "not finite"),
    103: ('{"id": 103, "v": [1.0, 2.0, 3.0]}', "has 3 dimensions, expected 2"),
    104: (
        '{"id": 104, "v": [1.0, 2.0], "s": {"indices": [3, 3], "values": [1, 2]}}',
        "duplicate index",
    ),
    105: ('{"id": 105, "v": [1.0, 2.0], "p": NaN}', "payload holds NaN"),
    -1: ('{"id": -1, "v": [1.0, 2.0]}', "outside the unsigned 64-bit range"),
    1.5: ('{"id": 1.5, "v": [1.0, 2.0]}', "neither an unsigned integer"),
    106: (
        '{"id": 106, "v": [1.0, 2.0], "big": "' + "x" * (17 * 2**20) + '"}',
        "more than one request to Qdrant may carry",
    ),
}
# Valid in Qdrant, kept: an empty sparse vector, and an unsorted one (Qdrant sorts it).
ODD_BUT_VALID = [
    '{"id": 201, "v": [1.0, 2.0], "s": {"indices": [], "values": []}}',
    '{"id": 202, "v": [1.0, 2.0], "s": {"indices": [9, 2], "values": [0.9, 0.2]}}',
]


def job(tmp_path: Path, **extra: Any) -> dict[str, Any]:
    lines = [json.dumps({"id": i, "v": [1.0, float(i)]}) for i in range(GOOD)]
    for position, (line, _) in enumerate(BAD_LINES.values()):
        lines.insert(3 + 3 * position, line)
    lines += ODD_BUT_VALID
    (tmp_path / "rows.jsonl").write_text("\n".join(lines) + "\n")
    return {
        "version": 1,
        "name": "bad-records",
        "source": {
            "type": "file",
            "path": str(tmp_path / "rows.jsonl"),
            "vectors": {"v": {"distance": "dot"}, "s": {"kind": "sparse"}},
        },
        "target": {"path": str(tmp_path / "target"), "collection": "copy"},
        "batch_size": 10,
        **extra,
    }


def test_every_bad_record_goes_to_the_dead_letter_file_with_its_reason(tmp_path: Path) -> None:
    dead = tmp_path / "dead.jsonl"
    summary = run_job(
        job(tmp_path, on_invalid={"action": "dead_letter", "path": str(dead)}), tmp_path
    )
    assert (summary.invalid, summary.count_check) == (len(BAD_LINES), "ok")
    letters = {json.loads(line)["id"]: json.loads(line)["error"] for line in dead.open()}
    assert set(letters) == set(BAD_LINES)
    for record_id, (_, reason) in BAD_LINES.items():
        assert reason in letters[record_id], (record_id, letters[record_id])
    points = read_collection(tmp_path / "target", "copy")
    assert sorted(points) == [*range(GOOD), 201, 202], "the rest of each page moved"
    assert points[202].vector["s"].indices == [2, 9]
    assert points[202].vector["s"].values == pytest.approx([0.2, 0.9])


@pytest.mark.parametrize("record_id", list(BAD_LINES), ids=str)
def test_each_bad_record_stops_the_job_by_name(tmp_path: Path, record_id: Any) -> None:
    document = job(tmp_path)
    line, reason = BAD_LINES[record_id]
    (tmp_path / "rows.jsonl").write_text(json.dumps({"id": 0, "v": [1.0, 2.0]}) + "\n" + line)
    with pytest.raises(QmigrateError, match=rf"record {record_id} \(.*rows.jsonl line 2\)") as e:
        run_job(document, tmp_path)
    assert reason in e.value.message


def test_a_payload_value_that_is_not_json_is_invalid(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "rows.parquet"
    # Bytes have a payload form now (base64); a map with integer keys has none in JSON.
    keyed_by_int = pa.array([[(1, "a")], [(2, "b")]], type=pa.map_(pa.int64(), pa.string()))
    pq.write_table(
        pa.table({"id": [1, 2], "v": [[1.0, 2.0], [3.0, 4.0]], "raw": keyed_by_int}),
        path,
    )
    document = {
        "version": 1,
        "name": "bytes",
        "source": {"type": "file", "path": str(path), "vectors": {"v": {"distance": "dot"}}},
        "target": {"path": str(tmp_path / "target"), "collection": "copy"},
    }
    with pytest.raises(QmigrateError, match=r"record 1 \(.*row group 0, row 0\).*column 'raw'"):
        run_job(document, tmp_path)


def strict(line: str) -> Any:
    """A dead-letter line as a strict parser reads it: a bare NaN or Infinity is an error."""

    def refuse(constant: str) -> Any:
        raise ValueError(f"{constant} is not JSON")

    return json.loads(line, parse_constant=refuse)


def test_dead_letters_are_strict_json_in_the_forms_points_have(
    tmp_path: Path, stand_in: tuple[str, Any, Any]
) -> None:
    """NaN and infinities in vectors and payloads, bytes and timestamps: each line parses
    strictly, and a timestamp reads as the target stores it for a valid row."""
    import datetime

    import pyarrow as pa
    import pyarrow.parquet as pq

    url, store, _ = stand_in
    when = datetime.datetime(2024, 5, 6, 7, 8, 9, 123456)
    pq.write_table(
        pa.table(
            {
                "id": [1, 2, 3],
                "v": [[1.0, 2.0], [1.0, float("nan")], [1.0, 2.0, 3.0]],
                "when": [when, when, when],
                "score": [0.5, float("nan"), float("-inf")],
                "raw": [None, b"\x00\xff", None],
            }
        ),
        tmp_path / "rows.parquet",
    )
    dead = tmp_path / "dead.jsonl"
    summary = run_job(
        {
            "version": 1,
            "name": "strict",
            "source": {
                "type": "file",
                "path": str(tmp_path / "rows.parquet"),
                "vectors": {"v": {"distance": "dot"}},
            },
            "target": {"url": url, "collection": "copy"},
            "on_invalid": {"action": "dead_letter", "path": str(dead)},
        },
        tmp_path,
    )
    assert summary.invalid == 2
    letters = {letter["id"]: letter for letter in map(strict, dead.read_text().splitlines())}
    assert letters[2]["vectors"]["v"] == [1.0, "NaN"]
    assert letters[2]["payload"]["score"] == "NaN"
    assert letters[3]["payload"]["score"] == "-Infinity"
    assert letters[2]["payload"]["raw"] == base64.b64encode(b"\x00\xff").decode()
    (written,) = store.retrieve("copy", {"ids": [1]})
    assert letters[2]["payload"]["when"] == letters[3]["payload"]["when"]
    assert letters[2]["payload"]["when"] == written.payload["when"] == when.isoformat()


def test_a_dead_letter_keeps_integers_exact() -> None:
    record = Record(id=2**64, vectors={"v": [1.0]}, payload={"n": -(2**70) - 1, "flag": True})
    letter = strict(dead_letter.line(record, "id 18446744073709551616 is outside the range"))
    assert (letter["id"], letter["payload"]) == (2**64, {"n": -(2**70) - 1, "flag": True})
