"""The file source: JSONL and Parquet, partitions that cover every row once, resumable cursors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from qmigrate.errors import QmigrateError
from qmigrate.sources.base import Source
from tests.conftest import open_source

ROWS = [
    {
        "id": f"r{i}",
        "emb": [float(i), 0.5],
        "sp": {"indices": [i], "values": [1.0]},
        "n": i,
        "label": "x" * (i % 50),
    }
    for i in range(257)
]
CONFIG = {"type": "file", "vectors": {"emb": {"distance": "cosine"}, "sp": {"kind": "sparse"}}}


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    # Blank lines and a missing final newline are both allowed.
    text = (
        "\n".join(json.dumps(r) for r in rows[:10])
        + "\n\n"
        + "\n".join(json.dumps(r) for r in rows[10:])
    )
    path.write_text(text)
    return path


def write_parquet(path: Path, rows: list[dict[str, Any]]) -> Path:
    pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=40)
    return path


@pytest.fixture(params=["jsonl", "parquet"])
def data_file(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    if request.param == "jsonl":
        return write_jsonl(tmp_path / "rows.jsonl", ROWS)
    return write_parquet(tmp_path / "rows.parquet", ROWS)


def read_all(source: Source, n: int) -> list[Any]:
    ids = []
    for partition in source.partitions(n):
        for page in source.read(partition, None):
            ids.extend(r.id for r in page.records)
    return ids


@pytest.mark.parametrize("n", [1, 2, 3, 7, 50])
def test_partitions_cover_every_row_exactly_once(data_file: Path, n: int) -> None:
    source = open_source("file", {**CONFIG, "path": str(data_file)}, batch_size=16)
    assert sorted(read_all(source, n)) == sorted(r["id"] for r in ROWS)


def test_describe_counts_rows_and_infers_sizes(data_file: Path) -> None:
    info = open_source("file", {**CONFIG, "path": str(data_file)}, batch_size=16).describe()
    assert info.count == len(ROWS)
    vectors = {v.name: (v.kind, v.size, v.distance) for v in info.vectors}
    assert vectors == {"emb": ("dense", 2, "Cosine"), "sp": ("sparse", None, None)}
    assert info.payload_fields == ["label", "n"]


def test_records_keep_payload_types(data_file: Path) -> None:
    source = open_source("file", {**CONFIG, "path": str(data_file)}, batch_size=300)
    (partition,) = source.partitions(1)
    record = next(iter(source.read(partition, None))).records[3]
    assert record.id == "r3"
    assert list(record.vectors["emb"]) == [3.0, 0.5]
    assert record.payload == {"n": 3, "label": "xxx"}


def test_parquet_vectors_arrive_as_float32_rows_and_odd_columns_as_lists(tmp_path: Path) -> None:
    """A column of equal-length float lists becomes one matrix per page (no Python floats);
    ragged or null-holding columns go row by row, for the mapper to judge each row."""
    rows = [{"id": i, "emb": [float(i), 0.5], "other": [1.0] * (1 + i % 2)} for i in range(50)]
    rows[7]["emb"] = [1.0, None]
    even = [{**r, "emb": [float(r["id"]), 0.5]} for r in rows]
    config = {**CONFIG, "vectors": {"emb": {"distance": "dot"}, "other": {"distance": "dot"}}}
    for name, data in (("even", even), ("null", rows)):
        path = write_parquet(tmp_path / f"{name}.parquet", data)
        source = open_source("file", {**config, "path": str(path)}, batch_size=16)
        records = [r for p in source.read(source.partitions(1)[0], None) for r in p.records]
        assert [r.id for r in records] == list(range(50))
        assert [list(r.vectors["emb"]) for r in records] == [d["emb"] for d in data]
        assert all(isinstance(r.vectors["other"], list) for r in records), "ragged: lists"
        arrays = [isinstance(r.vectors["emb"], np.ndarray) for r in records]
        # With a null in row 7, its page (rows 0-15) goes as lists; the others as arrays.
        assert arrays == [name == "even" or i >= 16 for i in range(50)]
        assert all(r.vectors["emb"].dtype == np.float32 for r in records[16:])


def test_a_parquet_page_is_checked_as_one_matrix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The finite check runs once per page on its matrix: only a row it finds not finite
    goes through the per-record check, and is an invalid record, named as before."""
    from qmigrate import mapping
    from tests.conftest import run_job

    rows = [{"id": i, "emb": [float(i), 0.5, -1.0]} for i in range(50)]
    rows[9]["emb"] = [1.0, float("nan"), 0.0]
    path = write_parquet(tmp_path / "rows.parquet", rows)
    per_record: list[Any] = []
    original = mapping._dense

    def counted(name: str, value: Any, size: int | None) -> Any:
        per_record.append(value.tolist())
        return original(name, value, size)

    monkeypatch.setattr(mapping, "_dense", counted)
    document = {
        "version": 1,
        "name": "matrix",
        "source": {**CONFIG, "path": str(path), "vectors": {"emb": {"distance": "dot"}}},
        "target": {"path": str(tmp_path / "target"), "collection": "copy"},
        "mapping": {"vectors": {"emb": ""}},
        "on_invalid": {"action": "dead_letter", "path": str(tmp_path / "dead.jsonl")},
        "batch_size": 16,
    }
    summary = run_job(document, tmp_path)
    assert (summary.written, summary.invalid) == (49, 1)
    # Only the NaN row, left out by the page's check, is looked at again (to name why).
    assert len(per_record) == 1 and per_record[0][0] == 1.0
    (dead,) = (tmp_path / "dead.jsonl").read_text().splitlines()
    assert dead.startswith('{"id": 9, ')
    assert "vector 'emb' holds a value that is not finite in float32" in dead


def test_resuming_from_any_cursor_continues_exactly(data_file: Path) -> None:
    source = open_source("file", {**CONFIG, "path": str(data_file)}, batch_size=16)
    for partition in source.partitions(3):
        pages = list(source.read(partition, None))
        expected = [r.id for page in pages for r in page.records]
        for cut, page in enumerate(pages):
            done = [r.id for p in pages[: cut + 1] for r in p.records]
            rest = [r.id for p in source.read(partition, page.cursor) for r in p.records]
            assert done + rest == expected


def test_glob_reads_several_files(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "a.jsonl", ROWS[:100])
    write_parquet(tmp_path / "b.parquet", ROWS[100:])
    source = open_source("file", {**CONFIG, "path": str(tmp_path / "*")}, batch_size=32)
    assert source.describe().count == len(ROWS)
    assert sorted(read_all(source, 4)) == sorted(r["id"] for r in ROWS)


def test_no_matching_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(QmigrateError, match="no file matches"):
        open_source("file", {**CONFIG, "path": str(tmp_path / "*.jsonl")}, 10).describe()


def test_a_broken_line_names_its_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"id": 1, "emb": [1, 2]}\n\n{"id": 2, oops}\n')
    source = open_source("file", {**CONFIG, "path": str(path)}, 10)
    with pytest.raises(QmigrateError, match=r"bad.jsonl line 3: not a JSON line"):
        read_all(source, 1)


def test_deep_nesting_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "deep.jsonl"
    path.write_text('{"id": 1, "emb": [1, 2], "x": ' + "[" * 100_000 + "]" * 100_000 + "}\n")
    source = open_source("file", {**CONFIG, "path": str(path)}, 10)
    with pytest.raises(QmigrateError, match=r"deep.jsonl line 1: the JSON is nested too deeply"):
        read_all(source, 1)


def test_text_that_is_not_utf8_names_its_parquet_column(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "bad.parquet"
    table = pa.table(
        {
            "id": [1, 2],
            "emb": [[1.0, 2.0], [3.0, 4.0]],
            "title": pa.array([b"ok", b"\xff\xfe"], pa.binary()).cast(pa.string(), safe=False),
        }
    )
    pq.write_table(table, path)
    source = open_source("file", {**CONFIG, "path": str(path)}, 10)
    with pytest.raises(QmigrateError, match=r"bad.parquet row group 0: column 'title' holds text"):
        read_all(source, 1)


def test_plan_warns_of_a_filter_key_no_field_has(tmp_path: Path) -> None:
    import yaml

    from tests.conftest import run_cli

    rows = [{"id": i, "embedding": [i, 1.0], "meta": {"color": "red"}, "n": i} for i in range(3)]
    write_jsonl(tmp_path / "data.jsonl", rows)
    conditions = [
        {"key": "colour", "match": {"value": "red"}},
        {"key": "meta.color", "match": {"value": "red"}},
        {"is_empty": {"key": "n"}},
    ]
    document = {
        "version": 1,
        "name": "warn",
        "source": {
            "type": "file",
            "path": "data.jsonl",
            "vectors": {"embedding": {"distance": "cosine"}},
        },
        "target": {"path": "t", "collection": "c"},
        "filter": {"should": conditions, "must_not": [{"key": "size", "match": {"value": 1}}]},
    }
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(document))
    result = run_cli("plan", "job.yaml", cwd=tmp_path)
    assert result.code == 0, result.stderr
    warned = [line.split("'")[1] for line in result.stdout.splitlines() if "warning:" in line]
    assert warned == ["colour", "size"], result.stdout
