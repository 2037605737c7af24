"""JSONL and Parquet files: the way in for systems without a source of their own.

One row per point: an ID column, the vector columns named in the job, everything else is
payload. Partitions are byte ranges of JSONL files and row-group ranges of Parquet files,
so a file of any size streams in bounded memory and splits across workers.
"""

from __future__ import annotations

import glob
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from qmigrate.errors import QmigrateError
from qmigrate.line_ranges import READ_BUFFER, file_identity, lines_in_range
from qmigrate.records import DISTANCES, Page, Partition, Record, SourceInfo, VectorField
from qmigrate.sources import kit

if TYPE_CHECKING:  # numpy is imported only where Parquet is read
    import numpy as np


class Source:
    def __init__(self, config: dict[str, Any], batch_size: int) -> None:
        self.pattern = config["path"]
        self.format = config.get("format")
        self.id_field = config["id_field"]
        self.vector_config: dict[str, dict[str, Any]] = config["vectors"]
        self.batch_size = batch_size
        self.label = f"file {self.pattern}"

    # --- files ----------------------------------------------------------------------

    def _files(self) -> list[Path]:
        matches = (
            sorted(glob.glob(self.pattern)) if glob.has_magic(self.pattern) else [self.pattern]
        )
        files = [Path(m) for m in matches if Path(m).is_file()]
        if not files:
            raise QmigrateError(f"source.path: no file matches {self.pattern}")
        return files

    def _format(self, file: Path) -> str:
        if self.format:
            return self.format
        if file.suffix in (".parquet", ".pq"):
            return "parquet"
        if file.suffix in (".jsonl", ".ndjson", ".json"):
            return "jsonl"
        raise QmigrateError(
            f"source.format: cannot tell the format of {file}; set jsonl or parquet"
        )

    # --- contract -------------------------------------------------------------------

    def describe(self) -> SourceInfo:
        files = self._files()
        count = 0
        sample: list[dict[str, Any]] = []
        for file in files:
            if self._format(file) == "parquet":
                count += _parquet(file).metadata.num_rows
            else:
                count += _count_lines(file)
            if len(sample) < kit.SAMPLE_RECORDS:
                whole = Partition(key=str(file), spec=self._whole_file(file))
                for page in self.read(whole, None):
                    sample.extend(self._row_of(r) for r in page.records)
                    break
        vectors = [self._vector_field(name, sample) for name in self.vector_config]
        payload_fields = sorted(
            {k for row in sample for k in row if k != self.id_field and k not in self.vector_config}
        )
        details: dict[str, Any] = {"files": [str(f) for f in files]}
        details.update(self._parquet_forms(files))
        return SourceInfo(
            count=count, vectors=vectors, payload_fields=payload_fields, details=details
        )

    def _parquet_forms(self, files: list[Path]) -> dict[str, Any]:
        """The Parquet columns whose payload form is not the plain one, and those that
        cannot be carried, for `plan` to name."""
        forms: dict[str, str] = {}
        refused: dict[str, str] = {}
        for file in files:
            if self._format(file) != "parquet":
                continue  # JSONL needs no pyarrow, which only the parquet extra brings
            from qmigrate.sources import arrow_values

            for column in _parquet(file).schema_arrow:
                if column.name == self.id_field or column.name in self.vector_config:
                    continue
                form, problem = arrow_values.describe(column.type)
                if form:
                    forms[column.name] = form
                if problem:
                    refused[column.name] = f"{problem}: rows holding a value are invalid"
        found: dict[str, Any] = {}
        if forms:
            found["payload_forms"] = forms
        if refused:
            found["columns_not_carried"] = refused
        return found

    def _row_of(self, record: Record) -> dict[str, Any]:
        return {self.id_field: record.id, **record.vectors, **record.payload}

    def _vector_field(self, name: str, sample: list[dict[str, Any]]) -> VectorField:
        config = self.vector_config[name]
        kind = config.get("kind", "dense")
        if kind == "sparse":
            return VectorField(name=name, kind="sparse")
        size = config.get("size")
        if size is None:
            first = next((row[name] for row in sample if row.get(name) is not None), None)
            if first is None:
                raise QmigrateError(
                    f"source.vectors.{name}: no value in the first rows to tell the size; set size"
                )
            size = len(first[0]) if kind == "multi" else len(first)
        return VectorField(name=name, kind=kind, size=size, distance=DISTANCES[config["distance"]])

    def resume_identity(self) -> dict[str, Any]:
        """Size and modification time of every matched file: cursors are byte offsets and
        row positions, which mean nothing in a file that changed."""
        return {key: value for file in self._files() for key, value in file_identity(file).items()}

    def push_down(self, filter: dict[str, Any] | None) -> dict[str, Any] | None:
        return filter  # files have no query engine: the engine filters every row

    def explain(self, exc: Exception) -> str:
        return kit.first_line(exc)

    def partitions(self, n: int) -> list[Partition]:
        files = self._files()
        sizes = {f: max(1, f.stat().st_size) for f in files}
        total = sum(sizes.values())
        parts: list[Partition] = []
        for file in files:
            share = max(1, round(n * sizes[file] / total))
            for index, spec in enumerate(self._split(file, share)):
                parts.append(Partition(key=f"{file}#{index}", spec=spec))
        return parts

    def _whole_file(self, file: Path) -> dict[str, Any]:
        if self._format(file) == "parquet":
            return {"file": str(file), "row_groups": [0, _parquet(file).num_row_groups]}
        return {"file": str(file), "bytes": [0, file.stat().st_size]}

    def _split(self, file: Path, share: int) -> list[dict[str, Any]]:
        whole = self._whole_file(file)
        kind = "row_groups" if "row_groups" in whole else "bytes"
        start, end = whole[kind]
        return [{"file": str(file), kind: [a, b]} for a, b in kit.even_ranges(start, end, share)]

    def read(self, partition: Partition, cursor: Any) -> Iterator[Page]:
        spec = partition.spec
        first, last = spec["row_groups"] if "row_groups" in spec else spec["bytes"]
        if "row_groups" in spec:
            yield from self._read_parquet(Path(spec["file"]), first, last, cursor)
        else:
            yield from self._read_jsonl(Path(spec["file"]), first, last, cursor)

    def close(self) -> None:
        pass

    # --- JSONL ----------------------------------------------------------------------

    def _read_jsonl(self, file: Path, start: int, end: int, cursor: Any) -> Iterator[Page]:
        def lines() -> Iterator[tuple[list[Record], int]]:
            for line, position in lines_in_range(file, start, end, cursor):
                if not line.strip():
                    continue
                origin = LineOrigin(file, position - len(line))
                row = _json_line(line, origin, self.vector_config)
                yield [self._record(row, origin)], position

        for records, position in kit.gather(lines(), self.batch_size):
            yield Page(records, position)

    # --- Parquet --------------------------------------------------------------------

    def _read_parquet(self, file: Path, first: int, last: int, cursor: Any) -> Iterator[Page]:
        group, skip = cursor if cursor is not None else (first, 0)
        parquet = _parquet(file)
        for index in range(group, last):
            table = parquet.read_row_group(index)
            rows = table.num_rows
            offset = skip if index == group else 0
            while offset < rows:
                rows_slice, invalid, matrices = self._parquet_rows(
                    table.slice(offset, self.batch_size), file, index
                )
                records = [
                    self._record(row, f"{file} row group {index}, row {offset + n}")
                    for n, row in enumerate(rows_slice)
                ]
                for record, reason in zip(records, invalid, strict=True):
                    record.invalid = reason
                offset += len(rows_slice)
                next_cursor = [index, offset] if offset < rows else [index + 1, 0]
                yield Page(records, next_cursor, matrices=matrices)

    def _parquet_rows(
        self, table: Any, file: Path, group: int
    ) -> tuple[list[dict[str, Any]], list[str | None], dict[str, np.ndarray]]:
        """Rows as dicts, why each cannot be read (None: it can), and the dense vector
        columns of floats as float32 matrices: each row's vector a view of one, never a list
        of Python floats; other columns in their payload form (arrow_values)."""
        from qmigrate.sources import arrow_values  # needs pyarrow, as Parquet does

        replaced: dict[str, Any] = {}
        matrices: dict[str, np.ndarray] = {}
        for name, config in self.vector_config.items():
            if config.get("kind", "dense") == "dense" and name in table.column_names:
                matrix = arrow_values.float_matrix(table.column(name))
                if matrix is not None:
                    replaced[name] = matrices[name] = matrix
        invalid: list[str | None] = [None] * table.num_rows
        for column in table.schema:
            if column.name in replaced or column.name == self.id_field:
                continue
            _, problem = arrow_values.describe(column.type)
            if problem:
                held = table.column(column.name).is_valid().to_pylist()
                invalid = [
                    reason or (f"column '{column.name}' is {problem}" if has else None)
                    for reason, has in zip(invalid, held, strict=True)
                ]
                continue  # the dead letter shows its values as read
            values = arrow_values.column_values(table.column(column.name))
            if values is not None:
                replaced[column.name] = values
        rows = _rows(table.drop_columns(list(replaced)), file, group)
        for name, values in replaced.items():
            for row, value in zip(rows, values, strict=True):
                row[name] = value
        return rows, invalid, matrices

    # --- rows -----------------------------------------------------------------------

    def _record(self, row: dict[str, Any], origin: Any = None) -> Record:
        row = dict(row)
        record_id = row.pop(self.id_field, None)
        vectors = {name: row.pop(name, None) for name in self.vector_config}
        return Record(id=record_id, vectors=vectors, payload=row, origin=origin)


class LineOrigin:
    """A JSONL record's place, named by line number, counted only when a message needs it."""

    def __init__(self, file: Path, offset: int) -> None:
        self.file = file
        self.offset = offset

    def __str__(self) -> str:
        with self.file.open("rb") as handle:
            line = handle.read(self.offset).count(b"\n") + 1
        return f"{self.file} line {line}"


def _json_line(line: bytes, origin: LineOrigin, vectors: Any) -> dict[str, Any]:
    try:
        value = orjson.loads(line)  # several times faster than json; strict JSON only
    except orjson.JSONDecodeError:
        value = None
    if isinstance(value, dict) and _may_hold_a_rounded_integer(value, vectors):
        value = None
    try:
        if value is None:  # NaN, Infinity or integers past 64 bits: the mapper judges them
            value = json.loads(line)
    except ValueError as exc:
        raise QmigrateError(f"{origin}: not a JSON line ({exc})") from None
    except RecursionError:
        raise QmigrateError(f"{origin}: the JSON is nested too deeply to read") from None
    if not isinstance(value, dict):
        raise QmigrateError(f"{origin}: a line must be a JSON object")
    return value


ROUNDED_FROM = 2.0**63  # below -2**63 or above 2**64 - 1, orjson reads integers as floats


def _may_hold_a_rounded_integer(row: dict[str, Any], vectors: Any) -> bool:
    """True if an ID or payload value is a float as large as an integer orjson may have
    rounded; the line is then read again exactly. Vectors are left out: they become
    float32 anyway, and walking them would cost more than the parse."""
    nested = []
    for key, value in row.items():  # most values are flat: no list of them is built
        kind = type(value)
        if kind is float:
            if not -ROUNDED_FROM < value < ROUNDED_FROM:
                return True
        elif (kind is dict or kind is list) and key not in vectors:
            nested.append(value)
    while nested:
        value = nested.pop()
        kind = type(value)
        if kind is float:
            if not -ROUNDED_FROM < value < ROUNDED_FROM:
                return True
        elif kind is dict:
            nested.extend(value.values())
        elif kind is list:
            nested.extend(value)
    return False


def _rows(table: Any, file: Path, group: int) -> list[dict[str, Any]]:
    try:
        return table.to_pylist()
    except UnicodeDecodeError:
        for name in table.column_names:  # find the column to name
            try:
                table.column(name).to_pylist()
            except UnicodeDecodeError as exc:
                raise QmigrateError(
                    f"{file} row group {group}: column '{name}' holds text that is not UTF-8 "
                    f"({exc.reason} at byte {exc.start})"
                ) from None
        raise


def _count_lines(file: Path) -> int:
    """Rows in a JSONL file; blank lines are skipped when reading, so they are not counted."""
    with file.open("rb", buffering=READ_BUFFER) as handle:
        return sum(1 for line in handle if line.strip())


def _parquet(file: Path) -> Any:
    try:
        import pyarrow.parquet as pq
    except ModuleNotFoundError:
        raise QmigrateError(
            "reading Parquet needs pyarrow: run pip install 'qmigrate[parquet]'"
        ) from None
    return pq.ParquetFile(os.fspath(file))
