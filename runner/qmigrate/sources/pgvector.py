"""PostgreSQL with pgvector: a table (or a SELECT) read through psycopg 3.

Reading: keyset pages on the ID column (`WHERE id > last ORDER BY id LIMIT n`), each page in
its own autocommit statement; the cursor is the last ID read, so resuming is exact after a
kill. Partitions are ID ranges (after, upto] cut at quantiles of the IDs (`percentile_disc`),
which works for integer, text and uuid keys alike. Results come in PostgreSQL's binary
format: vectors arrive as pgvector objects whose values numpy reads without parsing text.

Vectors: every `vector`, `halfvec` and `sparsevec` column, found in the catalog; the size is
the type modifier, the distance the operator class of an index on the column (or the job's
`vectors`). halfvec keeps Qdrant's float16 datatype. sparsevec indices are pgvector-python's
0-based positions (the text form `{1:0.5}/n` counts from 1). A `bit(n)` column becomes 0/1
values in a uint8 vector with Manhattan distance, which on 0/1 equals pgvector's Hamming
(a column indexed for Jaccard, which Qdrant has not, is refused).

Every other column is payload, each type converted by one function chosen at describe time;
a type without a faithful JSON form is refused, naming the column, before data moves.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

import numpy as np
import psycopg
from pgvector.psycopg import register_vector
from psycopg import sql

from qmigrate.errors import SourceError, TransientError
from qmigrate.records import (
    DISTANCES,
    Page,
    Partition,
    Record,
    SourceInfo,
    SparseVector,
    VectorField,
)
from qmigrate.redaction import without_credentials
from qmigrate.sources import kit

VECTOR_TYPES = {"vector": None, "halfvec": "float16", "sparsevec": None, "bit": "uint8"}
# The suffix of a pgvector operator class -> (Qdrant distance, the SQL distance operator).
OPCLASS_DISTANCES = {
    "_cosine_ops": ("Cosine", "<=>"),
    "_l2_ops": ("Euclid", "<->"),
    "_ip_ops": ("Dot", "<#>"),
    "_l1_ops": ("Manhattan", "<+>"),
}
DISTANCE_OPERATORS = dict(OPCLASS_DISTANCES.values())
HAMMING = "<~>"  # bit vectors' distance operator: Manhattan on their 0/1 values
INTEGER_TYPES = {"int2", "int4", "int8"}
TEXT_TYPES = {"text", "varchar"}
KEY_TYPES = INTEGER_TYPES | TEXT_TYPES | {"uuid"}
# Types psycopg already loads as their JSON form.
AS_IS = {"bool", "float4", "float8", "bpchar", "name", "json", "jsonb"} | INTEGER_TYPES | TEXT_TYPES
DATETIMES = {"timestamptz", "timestamp", "date"}
FLOAT_DIGITS = 15  # numeric(p, s) with p up to this fits a float exactly
LARGE_TABLE = 10_000_000  # rows (planner estimate) above which plan warns that count(*) is slow
# SQLSTATE classes worth another try: connection lost (08), insufficient resources (53),
# operator intervention (57: shutdown, statement timeout), transaction rollback (40).
TRANSIENT_SQLSTATE_CLASSES = {"08", "53", "57", "40"}


Pushed = tuple[sql.Composable, list[Any]]


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # the type's name; for an array, its element type's
    array: bool
    modifier: int  # the type modifier: a vector's dimension, numeric's precision and scale

    @property
    def shown(self) -> str:
        return self.type + ("[]" if self.array else "")


def _is_transient(exc: psycopg.Error) -> bool:
    if not isinstance(exc, psycopg.OperationalError):
        return False
    return exc.sqlstate is None or exc.sqlstate[:2] in TRANSIENT_SQLSTATE_CLASSES


class Source:
    def __init__(self, config: dict[str, Any], batch_size: int) -> None:
        self.dsn: str = config["dsn"]
        self.table: str | None = config.get("table")
        self.query: str | None = config.get("query")
        self.id_name: str | None = config.get("id_column")
        self.overrides: dict[str, dict[str, Any]] = config.get("vectors") or {}
        self.timeout: float = config["timeout"]
        self.batch_size = batch_size
        self.where: Pushed | None = None  # the pushed-down filter: SQL and its parameters
        self._connection: psycopg.Connection[Any] | None = None
        self._columns: list[Column] | None = None
        self._relation: sql.Composable | None = None
        self._oid: int | None = None  # the table's, once resolved
        self._distances: dict[str, str] = {}
        self._converters: dict[str, Callable[[Any], Any]] = {}

    # --- connection -----------------------------------------------------------------

    @property
    def label(self) -> str:
        what = f"table {self.table}" if self.table else "query"
        return f"PostgreSQL {what} at {without_credentials(self.dsn)}"

    def explain(self, exc: Exception) -> str:
        return kit.first_line(exc)

    def _connect(self) -> psycopg.Connection[Any]:
        connection = psycopg.connect(
            self.dsn, autocommit=True, connect_timeout=max(1, int(self.timeout))
        )
        # Timestamps come back in UTC; a statement that hangs fails in time to be retried.
        connection.execute(
            "SELECT set_config('TimeZone', 'UTC', false), "
            "set_config('statement_timeout', %s, false)",
            [str(int(self.timeout * 1000))],
        )
        register_vector(connection)
        return connection

    @property
    def connection(self) -> psycopg.Connection[Any]:
        if self._connection is None or self._connection.closed:
            self._connection = self._connect()
        return self._connection

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    # --- schema ---------------------------------------------------------------------

    def _resolve_relation(self) -> sql.Composable:
        if self.query is not None:
            # A literal % of the query must not read as a placeholder.
            text = self.query.strip().rstrip(";").replace("%", "%%")
            return sql.SQL("({}) AS source").format(sql.SQL(text))
        row = self.connection.execute(
            "SELECT n.nspname, c.relname, c.oid FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = to_regclass(%s)",
            [self.table],
        ).fetchone()
        if row is None:
            names = self.connection.execute(
                "SELECT table_schema || '.' || table_name FROM information_schema.tables "
                "WHERE table_schema NOT IN ('pg_catalog', 'information_schema')"
            ).fetchall()
            shown = kit.some_of([n for (n,) in names], "no tables")
            raise SourceError(self.label, f"table {self.table} does not exist (it has: {shown})")
        self._oid = row[2]
        return sql.Identifier(row[0], row[1])

    @property
    def relation(self) -> sql.Composable:
        if self._relation is None:
            self._relation = self._resolve_relation()
        return self._relation

    @property
    def columns(self) -> list[Column]:
        """Every column of the table or query, with its type from the catalog."""
        if self._columns is not None:
            return self._columns
        cursor = self.connection.cursor()
        cursor.execute(sql.SQL("SELECT * FROM {} LIMIT 0").format(self.relation))
        result = cursor.pgresult
        assert result is not None and cursor.description is not None
        oids = [column.type_code for column in cursor.description]
        rows = self.connection.execute(
            "SELECT t.oid, coalesce(e.typname, t.typname), e.oid IS NOT NULL "
            "FROM pg_type t LEFT JOIN pg_type e ON e.oid = t.typelem AND t.typcategory = 'A' "
            "WHERE t.oid = ANY(%s)",
            [oids],
        ).fetchall()
        types = {oid: (name, array) for oid, name, array in rows}
        self._columns = [
            Column(column.name, *types[column.type_code], result.fmod(i))
            for i, column in enumerate(cursor.description)
        ]
        return self._columns

    @functools.cached_property
    def id_column(self) -> Column:
        """Known once described: reads never ask the shared connection."""
        by_name = {c.name: c for c in self.columns}
        name = self.id_name or self._primary_key()
        column = by_name.get(name)
        if column is None:
            shown = kit.some_of(by_name, "no columns")
            raise SourceError(self.label, f"no column {name} (it has: {shown})")
        if column.type not in KEY_TYPES or column.array:
            raise SourceError(
                self.label,
                f"id_column {name} is {column.shown}: IDs are read from integer, text or uuid columns",
            )
        return column

    def _primary_key(self) -> str:
        if self.query is not None:
            raise SourceError(self.label, "a query needs id_column: the column its IDs are in")
        self.relation  # noqa: B018 - resolves the table's oid
        keys = self.connection.execute(
            "SELECT a.attname FROM pg_index i JOIN pg_attribute a "
            "ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) "
            "WHERE i.indrelid = %s AND i.indisprimary",
            [self._oid],
        ).fetchall()
        if len(keys) != 1:
            problem = "no primary key" if not keys else "a primary key of several columns"
            raise SourceError(self.label, f"table {self.table} has {problem}: set id_column")
        return str(keys[0][0])

    @functools.cached_property
    def _indexed(self) -> list[tuple[str, str]]:
        """(column, operator class) of every index column of the table (none for a query)."""
        if self.query is not None:
            return []
        return self.connection.execute(
            "SELECT a.attname, o.opcname FROM pg_index i, "
            "unnest(i.indkey::int2[], i.indclass::oid[]) AS k(attnum, opclass) "
            "JOIN pg_opclass o ON o.oid = k.opclass "
            "JOIN pg_attribute a ON a.attrelid = %s AND a.attnum = k.attnum "
            "WHERE i.indrelid = %s",
            [self._oid, self._oid],
        ).fetchall()

    def _index_distances(self) -> dict[str, str]:
        """The Qdrant distance of each vector column, from its indexes' operator classes."""
        found: dict[str, set[str]] = {}
        for column, opclass in self._indexed:
            for suffix, (distance, _) in OPCLASS_DISTANCES.items():
                if opclass.endswith(suffix):
                    found.setdefault(column, set()).add(distance)
        return {column: d.pop() for column, d in found.items() if len(d) == 1}

    def _bit_distances(self) -> dict[str, str]:
        """Manhattan for every bit column, unless one is indexed for Jaccard."""
        bits = {c.name for c in self._vector_columns() if c.type == "bit"}
        jaccard = [c for c, opclass in self._indexed if c in bits and opclass == "bit_jaccard_ops"]
        if jaccard and "distance" not in self.overrides.get(jaccard[0], {}):
            raise SourceError(
                self.label,
                f"column {jaccard[0]} is indexed for Jaccard distance, which Qdrant has not: "
                f"set vectors.{jaccard[0]}.distance (Hamming is manhattan)",
            )
        return dict.fromkeys(bits, "Manhattan")

    def _vector_columns(self) -> list[Column]:
        return [c for c in self.columns if c.type in VECTOR_TYPES and not c.array]

    def _payload_columns(self) -> list[Column]:
        vectors = {c.name for c in self._vector_columns()}
        key = self.id_column.name
        return [c for c in self.columns if c.name not in vectors and c.name != key]

    def _vector_name(self, column: str) -> str:
        return str(self.overrides.get(column, {}).get("name", column))

    # --- contract -------------------------------------------------------------------

    def push_down(self, filter: dict[str, Any] | None) -> dict[str, Any] | None:
        if not filter:
            return None
        columns = {c.name: c for c in self._payload_columns()}
        self.where, residual = kit.split_filter(filter, sql_dialect(columns))
        return residual

    def describe(self) -> SourceInfo:
        key = self.id_column
        self._distances = {**self._index_distances(), **self._bit_distances()}
        for column, override in self.overrides.items():
            if column not in {c.name for c in self._vector_columns()}:
                shown = kit.some_of([c.name for c in self._vector_columns()], "none")
                raise SourceError(self.label, f"vectors.{column}: no such vector column ({shown})")
            if "distance" in override:
                self._distances[column] = DISTANCES[override["distance"]]
        vectors = [self._vector_field(c) for c in self._vector_columns()]
        payload = self._payload_columns()
        self._converters = {c.name: self._converter(c) for c in payload}
        details: dict[str, Any] = {"id_column": f"{key.name} ({key.shown})"}
        details["vectors"] = ", ".join(
            f"{c.name} {c.type}({c.modifier}) {self._distances.get(c.name, 'distance unknown')}"
            for c in self._vector_columns()
        )
        details["payload"] = ", ".join(f"{c.name} ({payload_kind(c)})" for c in payload)
        bits = [c.name for c in self._vector_columns() if c.type == "bit"]
        if bits:
            details["bit_vectors"] = (
                f"{', '.join(bits)}: 0/1 values in uint8 vectors with Manhattan distance, "
                "which equals pgvector's Hamming"
            )
        inexact = [c.name for c in payload if _scalar_converter(c) is _number]
        if inexact:
            details["numeric"] = (
                f"{', '.join(inexact)}: a number where a float holds the value exactly, "
                "else a string"
            )
        if self.query is None:
            estimate = self.connection.execute(
                "SELECT reltuples::bigint FROM pg_class WHERE oid = %s", [self._oid]
            ).fetchone()
            if estimate and estimate[0] > LARGE_TABLE:
                details["count"] = f"exact count(*) over about {estimate[0]:,} rows: slow"
        details["sql"] = self._page_sql(True, True).as_string(self.connection)
        count_sql = sql.SQL("SELECT count(*) FROM {} WHERE {}").format(self.relation, self._where())
        row = self.connection.execute(count_sql, self._parameters()).fetchone()
        return SourceInfo(
            count=int(row[0]) if row else 0,
            vectors=vectors,
            payload_fields=[c.name for c in payload],
            # A column PostgreSQL indexes is likely filtered on in Qdrant too.
            payload_indexes={
                c.name: PAYLOAD_KINDS[c.type]
                for c in payload
                if c.type in PAYLOAD_KINDS and c.name in {column for column, _ in self._indexed}
            },
            details=details,
        )

    def partitions(self, n: int) -> list[Partition]:
        """ID ranges cut at quantiles, open at both ends for rows written later."""
        key = sql.Identifier(self.id_column.name)
        fractions = [i / n for i in range(1, n)]
        cuts: list[Any] = []
        if fractions:
            query = sql.SQL(
                "SELECT percentile_disc(%s::float8[]) WITHIN GROUP (ORDER BY {key}) FROM {rel}"
            ).format(key=key, rel=self.relation)
            row = self.connection.execute(query, [fractions]).fetchone()
            # In the server's order (its collation, for text), without repeats.
            cuts = list(dict.fromkeys(_key(v) for v in (row[0] if row and row[0] else [])))
        bounds: list[Any] = [None, *cuts, None]
        return [
            Partition(f"{i:04d}", {"after": after, "upto": upto})
            for i, (after, upto) in enumerate(zip(bounds, bounds[1:], strict=False))
        ]

    def read(self, partition: Partition, cursor: Any) -> Iterator[Page]:
        after = partition.spec["after"] if cursor is None else cursor
        upto = partition.spec["upto"]
        index = {c.name: i for i, c in enumerate(self.columns)}
        vectors = [
            (index[c.name], self._vector_name(c.name), c.type) for c in self._vector_columns()
        ]
        converters = [
            (index[c.name], c.name, self._converters[c.name]) for c in self._payload_columns()
        ]
        key = index[self.id_column.name]
        try:
            connection = self._connect()
        except psycopg.Error as exc:
            raise _transient_or_as_is(exc) from exc
        try:
            while True:
                rows = self._fetch(connection, after, upto)
                if not rows:
                    return
                after = _key(rows[-1][key])
                records = [_record(row, key, vectors, converters) for row in rows]
                yield Page(records, after, matrices=kit.page_matrices(records))
                if len(rows) < self.batch_size:
                    return
        finally:
            connection.close()

    def search(self, vector_name: str, vector: list[float], k: int) -> list[Any]:
        """IDs of the k nearest rows the job reads, by the column's distance operator, within
        the pushed-down filter (for verify's search agreement). Dense columns only."""
        column = next(c for c in self._vector_columns() if self._vector_name(c.name) == vector_name)
        distance = self._distances.get(column.name)
        if column.type == "sparsevec" or distance is None:
            return []
        operator = HAMMING if column.type == "bit" else DISTANCE_OPERATORS[distance]
        if column.type == "bit" and distance != "Manhattan":
            return []
        key = self.id_column.name
        query = sql.SQL(
            "SELECT {key} FROM {rel} WHERE {where} ORDER BY {col} {op} %s::{type} LIMIT %s"
        ).format(
            key=sql.Identifier(key),
            rel=self.relation,
            where=self._where(),
            col=sql.Identifier(column.name),
            op=sql.SQL(operator),
            # bit without a length is bit(1): the query's bits need the column's length.
            type=sql.SQL(f"bit({column.modifier})" if column.type == "bit" else column.type),
        )
        if column.type == "bit":
            text = "".join("1" if x else "0" for x in vector)
        else:
            text = "[" + ",".join(repr(float(x)) for x in vector) + "]"
        rows = self.connection.execute(query, [*self._parameters(), text, k]).fetchall()
        return [_record_id(row[0]) for row in rows]

    # --- reading --------------------------------------------------------------------

    def _page_sql(self, after: bool, upto: bool) -> sql.Composed:
        """A page's SELECT; its parameters: the pushed filter's, after, upto, the limit."""
        key = sql.Identifier(self.id_column.name)
        names = sql.SQL(", ").join(sql.Identifier(c.name) for c in self.columns)
        bounds = [sql.SQL("{} > %s").format(key)] if after else []
        bounds += [sql.SQL("{} <= %s").format(key)] if upto else []
        query = sql.SQL("SELECT {names} FROM {rel} WHERE {where} ORDER BY {key} LIMIT %s")
        return query.format(
            names=names,
            rel=self.relation,
            key=key,
            where=sql.SQL(" AND ").join([self._where(), *bounds]),
        )

    def _where(self) -> sql.Composable:
        return self.where[0] if self.where else sql.SQL("true")

    def _parameters(self) -> list[Any]:
        return list(self.where[1]) if self.where else []

    def _fetch(
        self, connection: psycopg.Connection[Any], after: Any, upto: Any
    ) -> list[tuple[Any, ...]]:
        query = self._page_sql(after is not None, upto is not None)
        bounds = [b for b in (after, upto) if b is not None]
        try:
            cursor = connection.cursor(binary=True)
            return cursor.execute(query, [*self._parameters(), *bounds, self.batch_size]).fetchall()
        except psycopg.Error as exc:
            raise _transient_or_as_is(exc) from exc

    def _vector_field(self, column: Column) -> VectorField:
        name = self._vector_name(column.name)
        if column.type == "sparsevec":
            return VectorField(name, "sparse")
        size = column.modifier if column.modifier > 0 else None
        datatype = VECTOR_TYPES[column.type]
        options = {"datatype": datatype} if datatype else {}
        return VectorField(name, "dense", size, self._distances.get(column.name), options)

    def _converter(self, column: Column) -> Callable[[Any], Any]:
        convert = _scalar_converter(column)
        if convert is None:
            raise SourceError(
                self.label,
                f"column {column.name} is {column.shown}, which has no payload form: "
                "leave it out or cast it in a query",
            )
        if not column.array:
            return convert
        return lambda value: _each(value, convert)


def _transient_or_as_is(exc: psycopg.Error) -> Exception:
    if _is_transient(exc):
        return TransientError(f"{type(exc).__name__}: {kit.first_line(exc)}")
    return exc


def _key(value: Any) -> Any:
    """An ID as a JSON cursor: integers stay, uuids become their text."""
    return value if isinstance(value, (int, str)) else str(value)


def _record_id(value: Any) -> Any:
    """Non-negative integers stay point IDs; negative ones and text follow the ID policy."""
    if isinstance(value, int):
        return value if value >= 0 else str(value)
    return str(value)


def _record(
    row: tuple[Any, ...],
    key: int,
    vectors: list[tuple[int, str, str]],
    converters: list[tuple[int, str, Callable[[Any], Any]]],
) -> Record:
    """One row as a Record; the positions of its columns come from the caller, once a read."""
    record_vectors: dict[str, Any] = {}
    for column, name, kind in vectors:
        value = row[column]
        if value is None:
            continue
        if kind == "sparsevec":
            record_vectors[name] = SparseVector(value.indices(), value.values())
        elif kind == "bit":  # no loader: the binary form, a 4-byte length and packed bits
            length = int.from_bytes(value[:4], "big")
            bits = np.unpackbits(np.frombuffer(value, dtype=np.uint8, offset=4), count=length)
            record_vectors[name] = bits.astype(np.float32)
        else:
            record_vectors[name] = value.to_numpy().astype(np.float32, copy=False)
    payload = {
        name: None if row[column] is None else convert(row[column])
        for column, name, convert in converters
    }
    return Record(_record_id(row[key]), record_vectors, payload)


def _each(value: Any, convert: Callable[[Any], Any]) -> Any:
    if isinstance(value, list):
        return [_each(v, convert) for v in value]
    return None if value is None else convert(value)


def _scalar_converter(column: Column) -> Callable[[Any], Any] | None:
    if column.type in AS_IS:
        return _identity
    if column.type in DATETIMES or column.type == "uuid":
        return _text
    if column.type == "numeric":
        precision, scale = ((column.modifier - 4) >> 16) & 0xFFFF, (column.modifier - 4) & 0xFFFF
        if column.modifier > 0 and scale == 0 and precision <= 18:
            return int
        if column.modifier > 0 and precision <= FLOAT_DIGITS:
            return float
        return _number
    return None


def _identity(value: Any) -> Any:
    return value


def _text(value: Any) -> str:
    return value.isoformat() if isinstance(value, date) else str(value)


def _number(value: Decimal) -> Any:
    """A numeric as a JSON number where that is exact, else its digits as a string."""
    if value == value.to_integral_value() and abs(value) < 2**63:
        return int(value)
    as_float = float(value)
    return as_float if Decimal(repr(as_float)) == value else str(value)


PAYLOAD_KINDS = {
    "bool": "bool",
    "int2": "integer",
    "int4": "integer",
    "int8": "integer",
    "float4": "float",
    "float8": "float",
    "text": "keyword",
    "varchar": "keyword",
    "uuid": "uuid",
    "timestamptz": "datetime",
    "timestamp": "datetime",
    "date": "datetime",
}


def payload_kind(column: Column) -> str:
    kind = PAYLOAD_KINDS.get(column.type, "json" if column.type in ("json", "jsonb") else "")
    kind = kind or ("number or string" if column.type == "numeric" else column.type)
    return f"{column.shown} -> {kind}{'[]' if column.array else ''}"


# --- filter pushdown ------------------------------------------------------------------
#
# A condition is pushed where SQL selects exactly what Qdrant does: on columns of a known
# type (a match is typed: 1 never meets 1.0 or "1"), arrays element by element, and JSON
# columns through a lax-mode jsonpath, which unwraps arrays at each step as Qdrant's key
# paths do. Values are always bound parameters. A negation is `NOT coalesce(C, false)`:
# a NULL column (Qdrant: null or missing) fails C and so passes the must_not, as in Qdrant.

MATCH_TYPES: dict[type, set[str]] = {bool: {"bool"}, int: INTEGER_TYPES, str: TEXT_TYPES}
RANGE_OPERATORS = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}


def sql_dialect(columns: dict[str, Column]) -> kit.FilterDialect[Pushed]:
    def negation(condition: dict[str, Any]) -> Pushed | None:
        pushed = _condition(condition, columns)
        if pushed is None:
            return None
        return sql.SQL("NOT coalesce(({}), false)").format(pushed[0]), pushed[1]

    return kit.FilterDialect(
        lambda condition: _condition(condition, columns),
        all_of=lambda parts: _join(parts, " AND "),
        any_of=lambda parts: _join(parts, " OR "),
        negation=negation,
    )


def _join(parts: list[Pushed], word: str) -> Pushed:
    joined = sql.SQL(word).join(sql.SQL("({})").format(p[0]) for p in parts)
    return sql.SQL("({})").format(joined), [v for p in parts for v in p[1]]


def _condition(condition: dict[str, Any], columns: dict[str, Column]) -> Pushed | None:
    key = condition.get("key")
    for name in ("is_null", "is_empty"):
        if isinstance(condition.get(name), dict):
            column = columns.get(condition[name].get("key", ""))
            return _emptiness(name, column) if column is not None else None
    if not isinstance(key, str):
        return None
    head, _, path = key.partition(".")
    column = columns.get(head.removesuffix("[]"))
    if column is None:
        return None
    if column.type in ("json", "jsonb"):
        return _json_condition(condition, column, key.split(".")[1:] if path else [])
    if path or head != column.name:
        return None
    ident = sql.Identifier(column.name)
    value = sql.SQL("e") if column.array else ident
    pushed = _typed_condition(condition, column, value)
    if pushed is None or not column.array:
        return pushed
    return (
        sql.SQL("EXISTS (SELECT 1 FROM unnest({}) AS e WHERE {})").format(ident, pushed[0]),
        pushed[1],
    )


def _emptiness(name: str, column: Column) -> Pushed | None:
    ident = sql.Identifier(column.name)
    if column.type in ("json", "jsonb"):
        return None
    if not column.array:
        return sql.SQL("{} IS NULL").format(ident), []
    if name == "is_null":  # an array holding a null element counts as null (qdrant#10101)
        return sql.SQL("{0} IS NULL OR array_position({0}, NULL) IS NOT NULL").format(ident), []
    return sql.SQL("{0} IS NULL OR cardinality({0}) = 0").format(ident), []


def _typed_condition(
    condition: dict[str, Any], column: Column, value: sql.Composable
) -> Pushed | None:
    match = condition.get("match")
    if isinstance(match, dict):
        for word, template in (("value", "{} = %s"), ("any", "{} = ANY(%s)")):
            if word in match and _all_match(match[word], column.type):
                return sql.SQL(template).format(value), [match[word]]
        if "except" in match and _all_match(match["except"], column.type):
            return sql.SQL("{} <> ALL(%s)").format(value), [match["except"]]
        return None
    bounds = condition.get("range")
    if not isinstance(bounds, dict):
        return None
    present = {k: v for k, v in bounds.items() if v is not None}
    if not present or set(present) - set(RANGE_OPERATORS):
        return None
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present.values())
    if numbers and column.type in INTEGER_TYPES | {"float4", "float8"}:
        cast = sql.SQL("")
    elif all(isinstance(v, str) for v in present.values()) and column.type in DATETIMES:
        cast, value = sql.SQL("::timestamptz"), sql.SQL("{}::timestamptz").format(value)
    else:
        return None
    parts = [
        sql.SQL("{} {} %s{}").format(value, sql.SQL(RANGE_OPERATORS[k]), cast) for k in present
    ]
    return sql.SQL(" AND ").join(parts), list(present.values())


def _all_match(value: Any, column_type: str) -> bool:
    values = value if isinstance(value, list) else [value]
    return bool(values) and all(column_type in MATCH_TYPES.get(type(v), ()) for v in values)


def _json_condition(condition: dict[str, Any], column: Column, path: list[str]) -> Pushed | None:
    """A match on a string or boolean, or a numeric range, at a key path into a JSON column."""
    steps = []
    for part in path:
        name = part.removesuffix("[]")
        if not name or any(c in name for c in "[]"):
            return None
        steps.append("." + json.dumps(name))
    match = condition.get("match")
    bounds = condition.get("range")
    if isinstance(match, dict) and isinstance(match.get("value"), (str, bool)):
        test, variables = "@ == $v", {"v": match["value"]}
    elif isinstance(bounds, dict) and bounds:
        present = {k: v for k, v in bounds.items() if v is not None}
        if set(present) - set(RANGE_OPERATORS) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in present.values()
        ):
            return None
        test = " && ".join(f"@ {RANGE_OPERATORS[k]} ${k}" for k in present)
        variables = present
    else:
        return None
    jsonpath = f"${''.join(steps)}[*] ? ({test})"
    return (
        sql.SQL("jsonb_path_exists({}::jsonb, %s::jsonpath, %s::jsonb)").format(
            sql.Identifier(column.name)
        ),
        [jsonpath, json.dumps(variables)],
    )
