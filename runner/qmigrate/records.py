"""What flows from a source to the engine: records, pages, partitions and the source's self-description."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

VectorKind = Literal["dense", "sparse", "multi"]
DISTANCES = {"cosine": "Cosine", "dot": "Dot", "euclid": "Euclid", "manhattan": "Manhattan"}


# A payload index as a job writes it: its type ("keyword"), or {"type": ..., "is_tenant":
# true} / {"type": ..., "is_principal": true} for Qdrant's tenant and principal indexes.
IndexSpec = str | dict[str, Any]


def index_text(spec: IndexSpec) -> str:
    """An index as plan says it: "keyword", "keyword, tenant", "datetime, principal"."""
    if isinstance(spec, str):
        return spec
    flags = [name for name in ("tenant", "principal") if spec.get(f"is_{name}")]
    return ", ".join([spec["type"], *flags])


@dataclass(frozen=True)
class SparseVector:
    indices: list[int]
    values: list[float]


Vector = list[float] | np.ndarray | SparseVector | list[list[float]]
"""A dense vector is best handed over as a 1-D numpy array when the source's client has
one (a float32 array goes to the wire uncopied); a list of numbers works too."""


@dataclass
class Record:
    """One point as the source holds it. Vector name "" is the unnamed (default) vector."""

    id: Any
    vectors: dict[str, Vector]
    payload: dict[str, Any] = field(default_factory=dict)
    # Where the record came from (a file and line...), for messages: str() is shown.
    origin: Any = field(default=None, compare=False)
    # Why the source could not read this record (e.g. a value that is not UTF-8): the
    # mapper rejects it with this reason, so on_invalid stops the job or dead-letters it.
    invalid: str | None = None
    # The source holds it but it must not move (a Redis document the index holds without
    # any vector): counted as filtered, so it still adds up to the source's count.
    skipped: bool = False


@dataclass(frozen=True)
class VectorField:
    """A vector the source holds. `distance` is Qdrant's spelling (Cosine, Dot, Euclid, Manhattan)."""

    name: str
    kind: VectorKind = "dense"
    size: int | None = None
    distance: str | None = None
    # Further Qdrant vector params (on_disk, datatype, hnsw_config, ...) a Qdrant source keeps.
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class SourceInfo:
    """What `describe()` learns before any data moves; `plan` prints it."""

    count: int | None
    vectors: list[VectorField]
    payload_fields: list[str] = field(default_factory=list)
    payload_indexes: Mapping[str, IndexSpec] = field(default_factory=dict)
    # Collection settings a Qdrant-native source can hand to the target on create.
    collection_settings: dict[str, Any] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    # What to change when records share an ID, where the source knows why they can (Redis:
    # several key prefixes, each stripped); None: the generic advice.
    duplicate_ids_advice: str | None = None
    # The shard keys of a source collection with custom sharding (a Qdrant server's): each
    # partition then reads one key, named in its spec's "shard_key", and its points keep it.
    shard_keys: list[str | int] | None = None


@dataclass(frozen=True)
class Partition:
    """A stable, serialisable slice of the source: `spec` is stored with the checkpoint."""

    key: str
    spec: dict[str, Any]

    @property
    def shard_key(self) -> str | int | None:
        """The source shard key this partition reads, and its points keep (`SourceInfo.shard_keys`)."""
        return self.spec.get("shard_key")


@dataclass
class Page:
    """Records read in one request, and the cursor that resumes right after them."""

    records: list[Record]
    cursor: Any
    # Entries the source came across but does not hold, so never moves or counts (Redis:
    # keys under the index prefix that the index left out); the summary reports them.
    passed_over: int = 0
    # A dense vector every record holds as a row of one float32 matrix (record i's
    # vectors[name] is matrices[name][i]): its finite check runs once for the page.
    matrices: dict[str, np.ndarray] = field(default_factory=dict)
    # Links the source held but the job leaves out (Weaviate cross-references with
    # `references: drop`); the summary reports them.
    references_dropped: int = 0


class CursorLost(Exception):
    """Raised by `read` when a cursor it yielded no longer names a position (a Redis SCAN
    cursor means nothing to a restarted server): the engine reads the partition again from
    its start, its counts reset. Upserts are idempotent, so re-reading is harmless."""
