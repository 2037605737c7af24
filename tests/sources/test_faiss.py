"""The FAISS source: exact and lossy index types, IDs and payload sidecars, metric checks,
one-line errors, search, and kill -9 then resume."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from qmigrate.errors import SourceError
from qmigrate.records import Record
from qmigrate.sources.base import Source
from tests.conftest import (
    apply_resumed,
    kill_mid_apply,
    open_source,
    read_collection,
)

DIM = 8


def vectors(count: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (count, DIM)).astype(np.float32)


def write(index: Any, path: Path) -> str:
    faiss.write_index(index, str(path))
    return str(path)


def read_all(opened: Source, n: int = 3) -> list[Record]:
    opened.push_down(None)
    opened.describe()
    return [r for p in opened.partitions(n) for page in opened.read(p, None) for r in page.records]


def test_an_ivf_index_reads_exactly_with_an_ids_file_and_a_parquet_sidecar(
    tmp_path: Path,
) -> None:
    data = vectors(300)
    index = faiss.IndexIVFFlat(faiss.IndexFlatL2(DIM), DIM, 4)
    index.train(data)
    index.add(data)
    ids = [f"doc-{i}" for i in range(300)]
    np.save(tmp_path / "ids.npy", np.asarray(ids))
    pq.write_table(
        pa.table({"n": range(300), "tag": [["a", "b"][i % 2] for i in range(300)]}),
        tmp_path / "payload.parquet",
        row_group_size=64,
    )
    config = {
        "index": write(index, tmp_path / "ivf.faiss"),
        "ids": str(tmp_path / "ids.npy"),
        "payload": str(tmp_path / "payload.parquet"),
        "distance": "euclid",
    }
    opened = open_source("faiss", config, 50)
    records = read_all(opened)
    assert [r.id for r in records] == ids
    assert all(np.array_equal(r.vectors[""], data[i]) for i, r in enumerate(records))
    assert records[0].vectors[""].dtype == np.float32
    assert [r.payload for r in records[63:66]] == [
        {"n": i, "tag": "ab"[i % 2]} for i in (63, 64, 65)
    ]
    info = opened.describe()
    assert (info.count, info.payload_fields, info.vectors[0].distance) == (
        300,
        ["n", "tag"],
        "Euclid",
    )
    assert "vectors" not in info.details  # exact: no approximation noted


def test_hnsw_flat_with_a_text_ids_file_and_positions_as_ids(tmp_path: Path) -> None:
    data = vectors(100)
    index = faiss.IndexHNSWFlat(DIM, 8, faiss.METRIC_INNER_PRODUCT)
    index.add(data)
    path = write(index, tmp_path / "hnsw.faiss")
    (tmp_path / "ids.txt").write_text("".join(f"{i * 7}\n" for i in range(100)))
    with_ids = open_source(
        "faiss", {"index": path, "ids": str(tmp_path / "ids.txt"), "distance": "dot"}, 16
    )
    records = read_all(with_ids)
    assert [r.id for r in records] == [i * 7 for i in range(100)]
    assert all(np.array_equal(r.vectors[""], data[i]) for i, r in enumerate(records))
    positions = open_source("faiss", {"index": path, "distance": "cosine"}, 16)
    assert [r.id for r in read_all(positions)] == list(range(100))


def lossy_indexes() -> list[Any]:
    ivfpq = faiss.IndexIVFPQ(faiss.IndexFlatL2(DIM), DIM, 2, 2, 4)
    return [
        faiss.IndexPQ(DIM, 2, 4),
        ivfpq,
        faiss.IndexScalarQuantizer(DIM, faiss.ScalarQuantizer.QT_8bit),
        faiss.IndexHNSWSQ(DIM, faiss.ScalarQuantizer.QT_8bit, 8),
    ]


@pytest.mark.parametrize("index", lossy_indexes(), ids=lambda i: type(i).__name__)
def test_a_lossy_index_is_refused_unless_allowed_and_then_plan_says_so(
    tmp_path: Path, index: Any
) -> None:
    data = vectors(300)
    index.train(data)
    index.add(data)
    path = write(index, tmp_path / "lossy.faiss")
    refused = open_source("faiss", {"index": path, "distance": "euclid"}, 64)
    with pytest.raises(SourceError, match=r"keeps compressed codes.*set allow_lossy: true"):
        refused.describe()
    allowed = open_source("faiss", {"index": path, "distance": "euclid", "allow_lossy": True}, 64)
    records = read_all(allowed)
    assert len(records) == 300 and "approximations" in allowed.describe().details["vectors"]
    error = np.abs(np.stack([r.vectors[""] for r in records]) - data).max()
    assert 0 < error < 1, "approximations, close to the vectors added"


@pytest.mark.parametrize(
    ("index", "distance", "message"),
    [
        (faiss.IndexFlatL2(DIM), "cosine", "cosine contradicts the index's L2 metric"),
        (faiss.IndexFlatL2(DIM), "dot", "dot contradicts the index's L2 metric"),
        (faiss.IndexFlatIP(DIM), "euclid", "euclid contradicts the index's inner product metric"),
    ],
)
def test_a_distance_that_contradicts_the_metric_is_one_line(
    tmp_path: Path, index: Any, distance: str, message: str
) -> None:
    path = write(index, tmp_path / "flat.faiss")
    with pytest.raises(SourceError, match=f"source.distance: {message}"):
        open_source("faiss", {"index": path, "distance": distance}, 8).describe()


def test_file_problems_are_one_line(tmp_path: Path) -> None:
    flat = faiss.IndexFlatL2(DIM)
    flat.add(vectors(5))
    path = write(flat, tmp_path / "flat.faiss")
    mapped = faiss.IndexIDMap(faiss.IndexFlatL2(DIM))
    mapped.add_with_ids(vectors(5), np.arange(5))
    mapped_path = write(mapped, tmp_path / "mapped.faiss")
    ivf = faiss.IndexIVFFlat(faiss.IndexFlatL2(DIM), DIM, 2)
    ivf.train(vectors(50))
    ivf.add_with_ids(vectors(5), np.arange(5) * 10)
    ivf_path = write(ivf, tmp_path / "ivf.faiss")
    (tmp_path / "ids.txt").write_text("a\nb\n")
    (tmp_path / "payload.jsonl").write_text('{"a": 1}\n' * 6)
    cases = [
        ({"index": str(tmp_path / "none.faiss")}, "no file .*none.faiss"),
        ({"index": path, "ids": str(tmp_path / "ids.txt")}, "ids.txt holds 2 IDs for 5 vectors"),
        ({"index": path, "payload": str(tmp_path / "p.jsonl")}, "no file .*p.jsonl"),
        ({"index": path, "payload": str(tmp_path / "payload.jsonl")}, "holds 6 rows for 5"),
        ({"index": mapped_path, "ids": str(tmp_path / "ids.txt")}, "carries its IDs: drop"),
        ({"index": ivf_path}, r"IndexIVFFlat was given IDs of its own \(add_with_ids\)"),
    ]
    for config, message in cases:
        with pytest.raises(SourceError, match=message) as caught:
            open_source("faiss", {"distance": "euclid", **config}, 8).describe()
        assert "\n" not in str(caught.value)


def test_search_returns_the_ids_of_the_exact_nearest_vectors(tmp_path: Path) -> None:
    data = vectors(400)
    ivf = faiss.IndexIVFFlat(faiss.IndexFlatIP(DIM), DIM, 8, faiss.METRIC_INNER_PRODUCT)
    ivf.train(data)
    ivf.add(data)
    mapped = faiss.IndexIDMap2(faiss.IndexFlatIP(DIM))
    mapped.add_with_ids(data, np.arange(400) + 1000)
    for index, offset in ((ivf, 0), (mapped, 1000)):
        opened = open_source(
            "faiss", {"index": write(index, tmp_path / "i.faiss"), "distance": "dot"}, 8
        )
        opened.describe()
        for query in data[:20]:
            nearest = np.argsort(-(data @ query))[:10] + offset
            assert opened.search("", query.tolist(), 10) == nearest.tolist()  # type: ignore[attr-defined]


def test_resumes_after_kill_9_with_every_point_equal(tmp_path: Path) -> None:
    count = 1500
    data = vectors(count, seed=3)
    index = faiss.IndexIDMap2(faiss.IndexFlatIP(DIM))
    index.add_with_ids(data, np.arange(count) * 2 + 1)
    payloads = [{"n": i, "color": ["red", "blue"][i % 2]} for i in range(count)]
    (tmp_path / "payload.jsonl").write_text("".join(json.dumps(p) + "\n" for p in payloads))
    checkpoint = tmp_path / "checkpoint.json"
    job = {
        "version": 1,
        "name": "faiss",
        "source": {
            "type": "faiss",
            "index": write(index, tmp_path / "index.faiss"),
            "payload": str(tmp_path / "payload.jsonl"),
            "distance": "dot",
        },
        "target": {"path": str(tmp_path / "t"), "collection": "copy"},
        "batch_size": 50,
        "parallelism": 2,
        "checkpoint": {"store": "file", "path": str(checkpoint)},
    }
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(job))
    kill_mid_apply(path, checkpoint, after_points=300, count=count)
    apply_resumed(path, count)
    points = read_collection(tmp_path / "t", "copy")
    assert sorted(points) == [i * 2 + 1 for i in range(count)]
    for i in range(count):
        point = points[i * 2 + 1]
        assert point.vector == data[i].tolist() and point.payload == payloads[i], i
