"""What the target collection must look like: the source's vectors renamed by the mapping,
with the job's overrides, and the parameters Qdrant is asked to create them with."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any, cast

from qdrant_client import models

from qmigrate.errors import QmigrateError
from qmigrate.records import DISTANCES, IndexSpec, SourceInfo, VectorField
from qmigrate.spec import MappingSpec, TargetSpec

Layout = dict[str, VectorField]
"""Target vector name -> what it holds; "" is the unnamed dense vector."""


def target_layout(info: SourceInfo, mapping: MappingSpec, spec: TargetSpec) -> Layout:
    """The target's vectors: the source's, renamed by the mapping, with the job's overrides."""
    source_names = {v.name for v in info.vectors}
    for name in mapping.vectors:
        if name not in source_names:
            raise QmigrateError(
                f"mapping.vectors.{written(name)}: the source has no vector '{name}' "
                f"(it has: {names(source_names)})"
            )
    layout: Layout = {}
    for vector in info.vectors:
        name = mapping.vectors.get(vector.name, vector.name)
        if name in layout:
            raise QmigrateError(f"mapping.vectors: two source vectors map to '{name}'")
        layout[name] = replace(vector, name=name)
    for section, kinds in (("vectors", ("dense", "multi")), ("sparse_vectors", ("sparse",))):
        overrides: dict[str, dict[str, Any]] = getattr(spec, section)
        for name, override in overrides.items():
            field = layout.get(name)
            if field is None or field.kind not in kinds:
                matching = [n for n, f in layout.items() if f.kind in kinds]
                raise QmigrateError(
                    f"target.{section}.{written(name)}: no such vector comes from the source "
                    f"(it brings: {names(matching)})"
                )
            options = dict(field.options)
            for key in ("on_disk", "memory", "datatype", "modifier"):
                if key in override:
                    options[key] = override[key]
            layout[name] = replace(
                field,
                size=override.get("size", field.size),
                distance=DISTANCES[override["distance"]]
                if "distance" in override
                else field.distance,
                options=options,
            )
    for name, field in layout.items():
        if field.kind != "sparse" and (field.size is None or field.distance is None):
            missing = "size" if field.size is None else "distance"
            raise QmigrateError(
                f"vector '{name}': the source does not tell its {missing}; "
                f"set target.vectors.{written(name)}.{missing}"
            )
    dense = [n for n, f in layout.items() if f.kind != "sparse"]
    if "" in dense and len(dense) > 1:
        raise QmigrateError(
            "the unnamed vector cannot sit beside named dense vectors: name it with mapping.vectors"
        )
    if not layout:
        raise QmigrateError("the source has no vectors to migrate")
    return layout


def written(name: str) -> str:
    """A vector name as it is written in a job file."""
    return name or '""'


def names(names: Any) -> str:
    shown = [f"'{n}'" if n else '"" (unnamed)' for n in sorted(names)]
    return ", ".join(shown) or "none"


def vector_params(field: VectorField) -> models.VectorParams:
    options = {k: v for k, v in field.options.items() if k != "modifier"}
    if field.kind == "multi":
        options.setdefault(
            "multivector_config", {"comparator": models.MultiVectorComparator.MAX_SIM}
        )
    size = cast(int, field.size)  # target_layout refused a dense vector without one
    return models.VectorParams(size=size, distance=models.Distance(field.distance), **options)


def sparse_params(field: VectorField) -> models.SparseVectorParams:
    options = dict(field.options)
    modifier = options.pop("modifier", None)
    on_disk = options.pop("on_disk", None)
    index = options.pop("index", None) or {}
    if on_disk is not None:
        index = {**index, "on_disk": on_disk}
    return models.SparseVectorParams(
        index=models.SparseIndexParams(**index) if index else None,
        modifier=models.Modifier(modifier) if modifier else None,
    )


def quantization(config: dict[str, Any]) -> models.QuantizationConfig:
    kinds: dict[str, Callable[[dict[str, Any]], models.QuantizationConfig]] = {
        "scalar": models.ScalarQuantization.model_validate,
        "product": models.ProductQuantization.model_validate,
        "binary": models.BinaryQuantization.model_validate,
    }
    (kind,) = config
    return kinds[kind](config)


INDEX_PARAMS: dict[str, Any] = {
    "keyword": models.KeywordIndexParams,
    "integer": models.IntegerIndexParams,
    "float": models.FloatIndexParams,
    "datetime": models.DatetimeIndexParams,
    "uuid": models.UuidIndexParams,
}


def index_schema(spec: IndexSpec) -> models.PayloadSchemaType | Any:
    """What create_payload_index is given: the plain type, or its parameters where the job
    marks the index as a tenant's or the principal one (the schema allows those flags only
    on the types that take them)."""
    if isinstance(spec, str):
        return models.PayloadSchemaType(spec)
    return INDEX_PARAMS[spec["type"]](**spec)
