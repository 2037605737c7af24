"""IDs, vectors and payload of a record turned into a point; the client-side filter."""

from __future__ import annotations

import uuid

import numpy as np
import pytest
from qdrant_client import QdrantClient, models

from qmigrate.mapping import ID_NAMESPACE, ClientFilter, InvalidRecord, Mapper, point_id
from qmigrate.records import Record, SparseVector, VectorField
from qmigrate.spec import MappingSpec

LAYOUT = {
    "dense": VectorField("dense", "dense", 3, "Cosine"),
    "text": VectorField("text", "sparse"),
    "multi": VectorField("multi", "multi", 2, "Dot"),
}


def test_unsigned_integers_and_uuids_are_kept() -> None:
    assert point_id(0) == (0, None)
    assert point_id(2**64 - 1) == (2**64 - 1, None)
    upper = "550E8400-E29B-41D4-A716-446655440000"
    assert point_id(upper) == (upper.lower(), None)


@pytest.mark.parametrize(
    "other_form",
    [
        "{550e8400-e29b-41d4-a716-446655440000}",
        "urn:uuid:550e8400-e29b-41d4-a716-446655440000",
        "550e8400e29b41d4a716446655440000",
    ],
)
def test_only_the_hyphenated_uuid_form_is_kept(other_form: str) -> None:
    qdrant_id, original = point_id(other_form)
    assert qdrant_id != "550e8400-e29b-41d4-a716-446655440000", "distinct IDs stay distinct"
    assert original == other_form


def test_other_strings_become_stable_uuid5_with_the_original_kept() -> None:
    qdrant_id, original = point_id("doc-1")
    assert qdrant_id == str(uuid.uuid5(ID_NAMESPACE, "doc-1"))
    assert original == "doc-1"
    assert point_id("doc-1") == point_id("doc-1")
    assert point_id("123")[1] == "123", "a numeric string is still a string"


@pytest.mark.parametrize("bad", [-1, 2**64, True, None, "", 1.5])
def test_ids_that_cannot_be_points_are_invalid(bad: object) -> None:
    with pytest.raises(InvalidRecord):
        point_id(bad)


def test_mapping_renames_and_filters_payload() -> None:
    spec = MappingSpec(
        keep_original_id_as="source_id",
        vectors={"embedding": "dense"},
        include=("a", "b", "secret"),
        exclude=("secret",),
        rename={"a": "alpha"},
        set={"origin": "test", "b": "overridden"},
    )
    mapper = Mapper(spec, {"dense": LAYOUT["dense"]})
    point = mapper.to_point(
        Record("x-1", {"embedding": [1, 2.0, 3]}, {"a": 1, "b": 2, "c": 3, "secret": 4})
    )
    assert point.id == str(uuid.uuid5(ID_NAMESPACE, "x-1"))
    assert point.vector["dense"].tolist() == [1, 2.0, 3]
    assert list(point.vector) == ["dense"]
    assert point.payload == {"alpha": 1, "b": "overridden", "origin": "test", "source_id": "x-1"}


def test_original_id_can_be_dropped() -> None:
    mapper = Mapper(MappingSpec(keep_original_id_as=None), {"": LAYOUT["dense"]})
    point = mapper.to_point(Record("x-1", {"": [1.0, 2.0, 3.0]}, {"k": "v"}))
    assert point.payload == {"k": "v"}
    assert point.vector.tolist() == [1.0, 2.0, 3.0], "a lone unnamed vector is sent unnamed"


def test_sparse_and_multi_vectors_are_checked_and_converted() -> None:
    mapper = Mapper(MappingSpec(), LAYOUT)
    point = mapper.to_point(
        Record(
            7,
            {
                "dense": [0.1, 0.2, 0.3],
                "text": SparseVector([1, 4], [0.5, 0.25]),
                "multi": [[1.0, 2.0], [3.0, 4.0]],
            },
        )
    )
    assert point.vector["text"].indices == [1, 4]
    assert [row.tolist() for row in point.vector["multi"]] == [[1.0, 2.0], [3.0, 4.0]]
    dict_sparse = mapper.to_point(Record(8, {"text": {"indices": [2], "values": [1.0]}}))
    assert dict_sparse.vector["text"].values == [1.0]


@pytest.mark.parametrize(
    ("vectors", "reason"),
    [
        ({"dense": [1.0, 2.0]}, "has 2 dimensions, expected 3"),
        ({"dense": [1.0, "x", 2.0]}, "not a number"),
        ({"dense": "1,2,3"}, "not a list"),
        ({"text": {"indices": [1, 2], "values": [1.0]}}, "2 indices but 1 values"),
        ({"text": {"indices": [-1], "values": [1.0]}}, "not an unsigned integer"),
        ({"multi": [[1.0, 2.0], [1.0]]}, "has 1 dimensions, expected 2"),
        ({"other": [1.0]}, "not described by the source"),
        ({}, "no vector"),
        # Not finite in float32: Qdrant would store them and rank the point first, score NaN.
        ({"dense": [1.0, float("inf"), 2.0]}, "not finite in float32"),
        ({"dense": [1.0, float("-inf"), 2.0]}, "not finite in float32"),
        ({"dense": [1.0, float("nan"), 2.0]}, "not finite in float32"),
        ({"dense": [1.0, 1e39, 2.0]}, "not finite in float32"),
        ({"dense": [1.0, -4e38, 2.0]}, "not finite in float32"),
        ({"text": {"indices": [1], "values": [float("nan")]}}, "not finite in float32"),
        ({"text": {"indices": [1], "values": ["x"]}}, "not a number"),
        ({"multi": [[1.0, 2.0], [1.0, float("inf")]]}, "not finite in float32"),
        # JSON booleans are not numbers here, although Python counts True as 1.
        ({"dense": [True, False, True]}, "not a number"),
        ({"dense": [1.0, True, 0.5]}, "not a number"),
        ({"text": {"indices": [True], "values": [1.0]}}, "not an unsigned integer"),
        ({"text": {"indices": [1], "values": [False]}}, "not a number"),
    ],
)
def test_records_that_cannot_be_mapped_say_why(vectors: dict, reason: str) -> None:
    with pytest.raises(InvalidRecord, match=reason):
        Mapper(MappingSpec(), LAYOUT).to_point(Record(1, vectors))


def test_largest_float32_values_are_kept() -> None:
    biggest = 3.4028234e38
    point = Mapper(MappingSpec(), LAYOUT).to_point(Record(1, {"dense": [biggest, -biggest, 0]}))
    assert point.vector["dense"].tolist() == np.float32([biggest, -biggest, 0]).tolist()


def test_client_filter_follows_qdrant_semantics() -> None:
    flt = ClientFilter(
        {
            "must": [
                {"key": "tags", "match": {"any": ["sale"]}},
                {"key": "price", "range": {"lt": 100}},
                {"key": "meta.origin", "match": {"value": "eu"}},
            ],
            "must_not": [{"is_empty": {"key": "name"}}],
        }
    )

    def record(**payload: object) -> Record:
        return Record(1, {"": [1.0]}, payload)

    good = {"tags": ["new", "sale"], "price": 10, "meta": {"origin": "eu"}, "name": "n"}
    assert flt.matches(record(**good))
    assert not flt.matches(record(**{**good, "tags": ["new"]}))
    assert not flt.matches(record(**{**good, "price": 150}))
    assert not flt.matches(record(**{**good, "meta": {"origin": "us"}}))
    assert not flt.matches(record(**{**good, "name": None}))
    assert not flt.matches(record(price=10))


def test_client_filter_should_and_min_should() -> None:
    flt = ClientFilter(
        {"should": [{"key": "a", "match": {"value": 1}}, {"key": "b", "match": {"value": 2}}]}
    )
    assert flt.matches(Record(1, {}, {"a": 1}))
    assert not flt.matches(Record(1, {}, {"a": 2, "b": 1}))
    two = ClientFilter(
        {
            "min_should": {
                "conditions": [
                    {"key": "a", "match": {"value": 1}},
                    {"key": "b", "match": {"value": 2}},
                    {"key": "c", "match": {"value": 3}},
                ],
                "min_count": 2,
            }
        }
    )
    assert two.matches(Record(1, {}, {"a": 1, "c": 3}))
    assert not two.matches(Record(1, {}, {"a": 1}))


def test_numpy_scalars_are_numbers_but_numpy_booleans_are_not() -> None:
    mapper = Mapper(MappingSpec(), LAYOUT)
    values = [np.float32(0.5), np.float64(1.5), np.int64(2)]
    assert mapper.to_point(Record(1, {"dense": values})).vector["dense"].tolist() == values
    with pytest.raises(InvalidRecord, match="not a number"):
        mapper.to_point(Record(1, {"dense": [np.bool_(True), 1.0, 2.0]}))


def test_float32_arrays_pass_through_uncopied() -> None:
    """Vectors cost no copy between the source and the wire encoder."""
    mapper = Mapper(MappingSpec(), {"": LAYOUT["dense"]})
    vector = np.asarray([0.5, 1.5, 2.5], dtype=np.float32)
    assert mapper.to_point(Record(1, {"": vector})).vector is vector


@pytest.mark.parametrize(
    ("vector", "reason"),
    [
        (np.asarray([1.0, np.nan, 2.0], dtype=np.float32), "not finite in float32"),
        (np.asarray([1.0, 1e39, 2.0]), "not finite in float32"),
        (np.asarray([True, False, True]), "not a number"),
        (np.asarray(["1", "2", "3"]), "not a number"),
        (np.zeros((3, 1), dtype=np.float32), "is a 2-D array, not one vector"),
        (np.zeros(4, dtype=np.float32), "has 4 dimensions, expected 3"),
    ],
)
def test_arrays_that_cannot_be_vectors_say_why(vector: np.ndarray, reason: str) -> None:
    with pytest.raises(InvalidRecord, match=reason):
        Mapper(MappingSpec(), LAYOUT).to_point(Record(1, {"dense": vector}))


def test_other_arrays_become_float32() -> None:
    mapper = Mapper(MappingSpec(), LAYOUT)
    for vector in (
        np.asarray([1.0, 2.0, 3.0]),
        np.arange(3),
        np.asarray([1.0, 2, 3], dtype=object),
    ):
        dense = mapper.to_point(Record(1, {"dense": vector})).vector["dense"]
        assert dense.dtype == np.float32 and dense.flags.c_contiguous
        assert dense.tolist() == np.asarray(vector, dtype=np.float32).tolist()


def test_client_has_id_selects_what_qdrant_selects_once_the_ids_land() -> None:
    """has_id names point IDs: a record is tested by the ID it becomes, as Qdrant would."""
    upper = "6C0B1E8A-3F7D-4E0C-9A51-8D7F3C2B1A90"
    source_ids: list[int | str] = [
        upper,
        upper.lower(),
        "sku-1",
        7,
        "5f0e2c1a-0000-4000-8000-0000000000aa",
    ]
    wanted: list[int | str] = [upper.lower(), str(uuid.uuid5(ID_NAMESPACE, "sku-1")), 7]
    client = QdrantClient(":memory:")
    client.create_collection("c", models.VectorParams(size=1, distance=models.Distance.DOT))
    client.upsert("c", [models.PointStruct(id=point_id(i)[0], vector=[1.0]) for i in source_ids])
    for has_id in (wanted, [upper, *wanted[1:]]):
        flt = {"must": [{"has_id": has_id}]}
        landed, _ = client.scroll("c", scroll_filter=models.Filter.model_validate(flt))
        expected = {p.id for p in landed}
        client_filter = ClientFilter(flt)
        kept = {point_id(i)[0] for i in source_ids if client_filter.matches(Record(i, {}, {}))}
        assert kept == expected == {upper.lower(), str(uuid.uuid5(ID_NAMESPACE, "sku-1")), 7}
