"""The LanceDB source: vector columns and types, one pinned table version, exact filter
pushdown with NULLs, search, one-line errors, and kill -9 then resume."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import lancedb
import numpy as np
import pyarrow as pa
import pytest
import yaml
from lancedb.index import IvfFlat

from qmigrate.errors import SourceError
from qmigrate.mapping import ClientFilter
from qmigrate.records import Record
from qmigrate.sources.base import Source
from tests.conftest import (
    apply_and_kill,
    checkpoint_points,
    open_source,
    read_collection,
    run_cli,
)
from tests.sources.reference import selected_ids

DIM = 8


def make_table(count: int, start: int = 0, seed: int = 0, half: bool = False) -> pa.Table:
    rng = np.random.default_rng(seed)
    values = rng.uniform(-1, 1, count * DIM).astype(np.float16 if half else np.float32)
    colors = ["red", "blue", None, "it's"]
    return pa.table(
        {
            "id": pa.array(range(start, start + count), pa.int64()),
            "emb": pa.FixedSizeListArray.from_arrays(pa.array(values), DIM),
            "color": [colors[i % 4] for i in range(start, start + count)],
            "n": [None if i % 5 == 0 else i % 7 for i in range(start, start + count)],
            "score": [float("nan") if i % 9 == 0 else i * 0.5 for i in range(start, start + count)],
            "at": pa.array(
                [
                    datetime.datetime(2024, 1, 1) + datetime.timedelta(seconds=i)
                    for i in range(count)
                ],
                pa.timestamp("us", "UTC"),
            ),
        }
    )


def create(path: Path, data: pa.Table, name: str = "items") -> Any:
    return lancedb.connect(str(path)).create_table(name, data)


def source(path: Path, batch_size: int = 16, **config: Any) -> Source:
    config = {"uri": str(path), "table": "items", "vectors": {"emb": {"distance": "dot"}}, **config}
    return open_source("lancedb", config, batch_size)


def read_all(opened: Source, n: int = 3) -> list[Record]:
    return [r for p in opened.partitions(n) for page in opened.read(p, None) for r in page.records]


def test_vectors_arrive_as_float32_rows_and_columns_in_their_payload_forms(
    tmp_path: Path,
) -> None:
    data = make_table(40, half=True)
    create(tmp_path, data)
    opened = source(tmp_path)
    opened.push_down(None)
    info = opened.describe()
    (field,) = info.vectors
    assert (field.name, field.size, field.distance, field.options) == (
        "emb",
        DIM,
        "Dot",
        {"datatype": "float16"},
    )
    assert info.count == 40 and info.payload_fields == ["at", "color", "n", "score"]
    assert info.details["version"] == 1
    records = read_all(opened)
    assert [r.id for r in records] == list(range(40))
    first = records[1]
    assert isinstance(first.vectors["emb"], np.ndarray) and first.vectors["emb"].dtype == np.float32
    expected = data.column("emb")[1].values.to_numpy().astype(np.float32)
    assert first.vectors["emb"].tolist() == expected.tolist()
    assert first.payload == {
        "color": "blue",
        "n": 1,
        "score": 0.5,
        "at": "2024-01-01T00:00:01.000000Z",
    }


def test_the_distance_comes_from_a_vector_index_else_the_job(tmp_path: Path) -> None:
    table = create(tmp_path, make_table(300))
    without = open_source("lancedb", {"uri": str(tmp_path), "table": "items"}, 16)
    with pytest.raises(SourceError, match=r"vector column 'emb'.*set source.vectors.emb.distance"):
        without.describe()
    table.create_index("emb", config=IvfFlat(distance_type="dot", num_partitions=1))
    indexed = open_source("lancedb", {"uri": str(tmp_path), "table": "items"}, 16)
    assert indexed.describe().vectors[0].distance == "Dot"


def test_a_run_reads_the_version_it_pinned_and_a_named_one(tmp_path: Path) -> None:
    table = create(tmp_path, make_table(30))
    opened = source(tmp_path)
    opened.push_down(None)
    opened.describe()
    partitions = opened.partitions(2)
    table.add(make_table(10, start=30))  # versions 2 and 3, after the run started
    table.delete("id < 5")
    assert [r.id for r in read_all_of(opened, partitions)] == list(range(30))
    resumed = source(tmp_path)  # a resume: another process, the saved partition specs
    resumed.push_down(None)
    assert resumed.describe().count == 35  # the latest now; the partitions say version 1
    assert [r.id for r in read_all_of(resumed, partitions)] == list(range(30))
    named = source(tmp_path, version=1)
    named.push_down(None)
    assert named.describe().count == 30
    assert len(read_all(named)) == 30


def read_all_of(opened: Source, partitions: list[Any]) -> list[Record]:
    return [r for p in partitions for page in opened.read(p, None) for r in page.records]


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"version": 7}, r"table 'items' has no version 7 \(it has 1 to 1"),
        ({"table": "nope"}, r"table 'nope' does not exist \(it has: items\)"),
        ({"id_field": "key"}, r"source.id_field: the table has no column 'key' \(it has: at,"),
        ({"vectors": {"color": {"distance": "dot"}}}, r"source.vectors.color: column 'color' is"),
        ({"vectors": {"embx": {"distance": "dot"}}}, r"source.vectors: the table has no column"),
        ({"uri": "/nonexistent/lance"}, r"no directory /nonexistent/lance"),
    ],
)
def test_errors_are_one_line(tmp_path: Path, config: dict[str, Any], message: str) -> None:
    create(tmp_path, make_table(5))
    opened = source(tmp_path, **config)
    with pytest.raises(SourceError, match=message) as caught:
        opened.push_down(None)
        opened.describe()
    assert "\n" not in str(caught.value)


FILTERS = [
    pytest.param({"must_not": [{"key": "color", "match": {"value": "red"}}]}, True, id="not-null"),
    pytest.param({"must_not": [{"key": "n", "range": {"gte": 3}}]}, True, id="not-range-null"),
    pytest.param({"must": [{"key": "score", "range": {"gt": 3.0}}]}, True, id="float-nan"),
    pytest.param({"must_not": [{"key": "score", "range": {"lt": 5.0}}]}, True, id="not-float-nan"),
    pytest.param({"must": [{"key": "color", "match": {"value": "it's"}}]}, True, id="quote"),
    pytest.param({"must": [{"key": "n", "match": {"any": [1, 2]}}]}, True, id="any"),
    pytest.param({"must": [{"key": "n", "match": {"value": "1"}}]}, False, id="wrong-type"),
    pytest.param({"must": [{"key": "n", "range": {"gt": 2.5}}]}, False, id="int-float-bound"),
]


@pytest.mark.parametrize(("flt", "pushed"), FILTERS)
def test_pushdown_keeps_qdrants_answer_with_nulls_and_nan(
    tmp_path: Path, flt: dict[str, Any], pushed: bool
) -> None:
    create(tmp_path, make_table(60))
    everything = source(tmp_path)
    everything.push_down(None)
    everything.describe()
    expected = selected_ids(read_all(everything), flt)
    opened = source(tmp_path)
    residual = opened.push_down(flt)
    assert (residual is None) is pushed, residual
    opened.describe()
    kept = ClientFilter(residual) if residual else None
    got = {r.id for r in read_all(opened) if kept is None or kept.matches(r)}
    assert got == expected, (opened.where, residual)  # type: ignore[attr-defined]


def test_search_finds_the_nearest_rows_within_the_pushed_filter(tmp_path: Path) -> None:
    data = make_table(50)
    create(tmp_path, data)
    opened = source(tmp_path)
    opened.push_down({"must": [{"key": "color", "match": {"value": "blue"}}]})
    opened.describe()
    query = data.column("emb")[9].values.to_numpy().tolist()  # row 9 is blue
    vectors = data.column("emb").combine_chunks().flatten().to_numpy().reshape(50, DIM)
    blue = [i for i in range(50) if i % 4 == 1]
    nearest = sorted(blue, key=lambda i: -float(vectors[i] @ np.asarray(query)))[:5]
    assert opened.search("emb", query, 5) == nearest  # type: ignore[attr-defined]


def test_resumes_after_kill_9_and_leaves_out_rows_added_meanwhile(tmp_path: Path) -> None:
    count = 1500
    data = make_table(count).drop_columns(["score"])  # NaN payloads are invalid records
    table = create(tmp_path / "db", data)
    checkpoint = tmp_path / "checkpoint.json"
    job = {
        "version": 1,
        "name": "lance",
        "source": {
            "type": "lancedb",
            "uri": str(tmp_path / "db"),
            "table": "items",
            "vectors": {"emb": {"distance": "dot"}},
        },
        "target": {"path": str(tmp_path / "t"), "collection": "copy"},
        "batch_size": 50,
        "parallelism": 2,
        "checkpoint": {"store": "file", "path": str(checkpoint)},
    }
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(job))
    assert apply_and_kill(path, checkpoint, after_points=300), run_cli("apply", str(path)).stderr
    assert 300 <= checkpoint_points(checkpoint) < count
    table.add(make_table(100, start=count).drop_columns(["score"]))
    table.delete("id % 100 = 0")  # rows before and after the cursors
    result = run_cli("apply", "--output", "json", str(path), cwd=tmp_path)
    summary = result.json()["jobs"][0]
    assert summary["read"] < count, "the second run resumed instead of starting over"
    # The rows of version 1, exactly, and the count check counts version 1 (resume_from).
    assert (summary["total_points"], summary["target_count"]) == (count, count)
    assert result.code == 0, result.stderr
    assert summary["count_check"] == "ok"
    points = read_collection(tmp_path / "t", "copy")
    assert sorted(points) == list(range(count))
    vectors = data.column("emb").combine_chunks().flatten().to_numpy().reshape(count, DIM)
    for i, row in enumerate(data.drop_columns(["emb", "at"]).to_pylist()):
        assert points[i].vector == {"emb": vectors[i].tolist()}, i
        assert {k: points[i].payload[k] for k in ("id", "color", "n") if k != "id"} == {
            "color": row["color"],
            "n": row["n"],
        }, i


def test_an_object_store_uri_is_not_made_a_local_path(tmp_path: Path) -> None:
    from qmigrate import spec

    document = {
        "version": 1,
        "name": "s3",
        "source": {"type": "lancedb", "uri": "s3://bucket/lance", "table": "items"},
        "target": {"path": "t", "collection": "c"},
    }
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(document))
    job = spec.load(tmp_path / "job.yaml", {})
    assert job.source_paths == {}
