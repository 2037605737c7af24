"""LanceDB tables: one table version, read in offset ranges of a scan.

A run reads one version of the table: `version` if the job names one, else the latest at
the first run. Partitions carry that version, so a resume reads the same rows even after
the table got new ones. Vector columns are the fixed-size lists of floats; every other
column but the ID is payload, in the forms of `arrow_values`.

A pushed-down filter becomes the scan's SQL `where`. Lance applies a scan's offset after
its filter, so partitions are offset ranges of the filtered scan of the pinned version:
the same rows in the same order on every run, since the filter is in the job's fingerprint.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from qmigrate.errors import SourceError
from qmigrate.records import DISTANCES, Page, Partition, Record, SourceInfo, VectorField
from qmigrate.sources import arrow_values, kit

# A vector index's metric (list_indices) as Qdrant's distance; a table stores none itself.
INDEX_METRICS = {"L2": "Euclid", "COSINE": "Cosine", "DOT": "Dot"}
# Qdrant's distance as LanceDB's distance_type, for search(); Manhattan has none.
SEARCH_METRICS = {"Euclid": "l2", "Cosine": "cosine", "Dot": "dot"}


class Source:
    def __init__(self, config: dict[str, Any], batch_size: int) -> None:
        self.uri = config["uri"]
        self.name = config["table"]
        self.version: int | None = config.get("version")
        self.id_field = config["id_field"]
        self.vector_config: dict[str, dict[str, Any]] = config.get("vectors") or {}
        self.batch_size = batch_size
        self.label = f"LanceDB table '{self.name}' at {self.uri}"
        self.where: str | None = None
        self._table: Any = None  # at the pinned version, once opened
        self.fields: list[VectorField] = []

    # --- connecting -----------------------------------------------------------------

    def _open(self, version: int | None) -> Any:
        """The table, checked out at `version` (None: the latest)."""
        import lancedb

        if "://" not in self.uri and not Path(self.uri).is_dir():
            raise SourceError(self.label, f"no directory {self.uri}")
        db = lancedb.connect(self.uri)
        try:
            table = db.open_table(self.name)
        except ValueError:
            shown = kit.some_of(db.list_tables().tables, "no tables")
            raise SourceError(
                self.label, f"table '{self.name}' does not exist (it has: {shown})"
            ) from None
        if version is not None:
            try:
                table.checkout(version)
            except ValueError:
                versions = [v["version"] for v in table.list_versions()]
                raise SourceError(
                    self.label,
                    f"table '{self.name}' has no version {version} (it has "
                    f"{min(versions)} to {max(versions)}, less any cleaned up)",
                ) from None
        return table

    @property
    def table(self) -> Any:
        if self._table is None:
            self._table = self._open(self.version)
        return self._table

    # --- contract -------------------------------------------------------------------

    def push_down(self, filter: dict[str, Any] | None) -> dict[str, Any] | None:
        if not filter:
            return None
        self.where, residual = kit.split_filter(filter, _dialect(self.table.schema))
        return residual

    def resume_from(self, partitions: list[Partition]) -> None:
        """A resumed run reads the version its partitions pinned at the first run."""
        if partitions and self.version != partitions[0].spec["version"]:
            self.version, self._table = partitions[0].spec["version"], None

    def describe(self) -> SourceInfo:
        table = self.table
        self.version = table.version  # pinned: partitions carry it
        schema = table.schema
        if self.id_field not in schema.names:
            raise SourceError(
                self.label,
                f"source.id_field: the table has no column '{self.id_field}' "
                f"(it has: {kit.some_of(schema.names, 'no columns')})",
            )
        self.fields = self._vector_fields(schema, table.list_indices())
        vectors = {f.name for f in self.fields}
        payload = [c for c in schema if c.name != self.id_field and c.name not in vectors]
        details: dict[str, Any] = {"uri": self.uri, "table": self.name, "version": self.version}
        if self.where is not None:
            details["where"] = self.where
        forms = {c.name: arrow_values.describe(c.type) for c in payload}
        if any(form for form, _ in forms.values()):
            details["payload_forms"] = {k: form for k, (form, _) in forms.items() if form}
        if any(problem for _, problem in forms.values()):
            details["columns_not_carried"] = {
                k: f"{problem}: rows holding a value are invalid"
                for k, (_, problem) in forms.items()
                if problem
            }
        return SourceInfo(
            count=table.count_rows(),
            vectors=self.fields,
            payload_fields=sorted(c.name for c in payload),
            details=details,
        )

    def _vector_fields(self, schema: pa.Schema, indices: list[Any]) -> list[VectorField]:
        """Every fixed-size list of floats; its distance from the job, else from a vector
        index's metric (LanceDB keeps none on the column)."""
        metrics = {
            index.columns[0]: INDEX_METRICS.get(
                str((index.index_details or {}).get("metric_type", "")).upper()
            )
            for index in indices
            if len(index.columns) == 1
        }
        for name in self.vector_config:
            if name not in schema.names:
                raise SourceError(
                    self.label,
                    f"source.vectors: the table has no column '{name}' "
                    f"(it has: {kit.some_of(schema.names, 'no columns')})",
                )
            if not _is_vector(schema.field(name).type):
                raise SourceError(
                    self.label,
                    f"source.vectors.{name}: column '{name}' is {schema.field(name).type}, "
                    "not a fixed-size list of floats",
                )
        fields = []
        for column in schema:
            kind = column.type
            if not _is_vector(kind):
                continue
            configured = self.vector_config.get(column.name, {}).get("distance")
            distance = DISTANCES[configured] if configured else metrics.get(column.name)
            if distance is None:
                raise SourceError(
                    self.label,
                    f"vector column '{column.name}': no vector index names its metric; set "
                    f"source.vectors.{column.name}.distance",
                )
            options = {"datatype": "float16"} if pa.types.is_float16(kind.value_type) else {}
            fields.append(VectorField(column.name, "dense", kind.list_size, distance, options))
        if not fields:
            raise SourceError(self.label, "the table has no vector column (fixed-size float list)")
        return fields

    def partitions(self, n: int) -> list[Partition]:
        total = self.table.count_rows(self.where)
        return [
            Partition(f"{i:04d}", {"version": self.version, "start": start, "end": end})
            for i, (start, end) in enumerate(kit.even_ranges(0, total, n))
        ]

    def read(self, partition: Partition, cursor: Any) -> Iterator[Page]:
        """Pages of scan offsets [start, end) of the partition's version; the cursor is the
        next offset."""
        spec = partition.spec
        offset, end = (spec["start"] if cursor is None else cursor), spec["end"]
        if offset >= end:
            return
        query = self._open(spec["version"]).search()
        if self.where is not None:
            query = query.where(self.where)
        batches = query.offset(offset).limit(end - offset).to_batches(self.batch_size)
        for batch in batches:
            offset += batch.num_rows
            yield self._page(batch, offset)

    def _page(self, batch: pa.RecordBatch, cursor: int) -> Page:
        vectors: dict[str, list[Any] | np.ndarray] = {}
        matrices: dict[str, np.ndarray] = {}
        for field in self.fields:
            column = batch.column(field.name)
            matrix = arrow_values.float_matrix(column)
            if matrix is not None:
                matrices[field.name] = matrix
            vectors[field.name] = column.to_pylist() if matrix is None else matrix
        others = [n for n in batch.schema.names if n != self.id_field and n not in vectors]
        payload, invalid = arrow_values.payload_columns(batch, others)
        records = []
        for i, record_id in enumerate(batch.column(self.id_field).to_pylist()):
            record = Record(
                record_id,
                {name: values[i] for name, values in vectors.items()},
                {name: values[i] for name, values in payload.items()},
            )
            record.invalid = invalid[i]
            records.append(record)
        return Page(records, cursor, matrices=matrices)

    def search(self, vector_name: str, vector: list[float], k: int) -> list[Any]:
        """IDs of the k nearest rows the job reads: an exact LanceDB search (past any
        approximate index) of the pinned version within the pushed-down `where`."""
        field = next(f for f in self.fields if f.name == vector_name)
        metric = SEARCH_METRICS.get(field.distance or "")
        if metric is None:
            return []
        query = (
            self.table.search(np.asarray(vector, np.float32), vector_column_name=vector_name)
            .distance_type(metric)
            .bypass_vector_index()
        )
        if self.where is not None:
            query = query.where(self.where, prefilter=True)
        # _distance named: Lance warns on stderr of every search that leaves it out
        hits = query.select([self.id_field, "_distance"]).limit(k).to_arrow()
        return list(hits.column(self.id_field).to_pylist())

    def explain(self, exc: Exception) -> str:
        return kit.first_line(exc)

    def close(self) -> None:
        self._table = None


def _is_vector(kind: pa.DataType) -> bool:
    return pa.types.is_fixed_size_list(kind) and pa.types.is_floating(kind.value_type)


# --- filter pushdown ------------------------------------------------------------------


def _dialect(schema: pa.Schema) -> kit.FilterDialect[str]:
    """Conditions on scalar columns whose SQL result equals Qdrant's: a value's type must
    fit the column's (SQL would cast), a negation keeps NULLs (Qdrant's must_not passes a
    missing value), and a float range leaves out NaN (DataFusion orders NaN above all)."""
    types = {column.name: column.type for column in schema}

    def condition(c: kit.Condition) -> str | None:
        key = kit.plain_key(c)
        if key is None or key not in types:
            return None
        column, kind = f"`{key}`", types[key]
        if "match" in c:
            match = c["match"]
            if "value" in match:
                literal = _literal(match["value"], kind)
                return None if literal is None else f"{column} = {literal}"
            if "any" in match and match["any"]:
                literals = [_literal(v, kind) for v in match["any"]]
                known = [lit for lit in literals if lit is not None]
                return f"{column} IN ({', '.join(known)})" if len(known) == len(literals) else None
            return None
        if "range" in c and (pa.types.is_integer(kind) or pa.types.is_floating(kind)):
            bounds = {k: v for k, v in c["range"].items() if v is not None}
            if not bounds or not all(_finite_number(v) for v in bounds.values()):
                return None
            if pa.types.is_integer(kind) and any(type(v) is not int for v in bounds.values()):
                return None  # Lance refuses a float literal against an integer column
            parts = [f"{column} {RANGE_OPERATORS[k]} {v!r}" for k, v in bounds.items()]
            if pa.types.is_floating(kind):
                parts.append(f"NOT isnan({column})")
            return " AND ".join(parts)
        return None

    def negation(c: kit.Condition) -> str | None:
        pushed = condition(c)
        if pushed is None:
            return None
        return f"(`{c['key']}` IS NULL OR NOT ({pushed}))"

    return kit.FilterDialect(
        condition=condition,
        all_of=lambda parts: " AND ".join(f"({p})" for p in parts),
        any_of=lambda parts: " OR ".join(f"({p})" for p in parts),
        negation=negation,
    )


RANGE_OPERATORS = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}


def _finite_number(value: Any) -> bool:
    return type(value) in (int, float) and bool(np.isfinite(value))


def _literal(value: Any, kind: pa.DataType) -> str | None:
    """`value` as a SQL literal if it matches exactly what Qdrant's match would in a column
    of this type, else None."""
    if isinstance(value, bool):
        return ("true" if value else "false") if pa.types.is_boolean(kind) else None
    if isinstance(value, int):
        return str(value) if pa.types.is_integer(kind) else None
    if isinstance(value, str) and (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
        return "'" + value.replace("'", "''") + "'"
    return None
