"""Milvus and Zilliz Cloud (a server URI) or a milvus-lite file, read through pymilvus.

Reading: keyset pages on the primary key (`pk > last`, the smallest `batch_size` keys the
server returns), never deep offsets; the cursor is the last key read. Consistency: a page
needs pymilvus's `iterator` flag (for the smallest keys), and with it pymilvus sends the
collection's default consistency whatever level is asked for; Milvus 2.3 returns no session
timestamp to pin pages to either. So describe's count(*) runs at Strong (no flag): its wait
makes the query node consume every write acknowledged before it, and the pages that follow
see them (seen on the standalone 2.3 server, one query node; with replicas, not tested).
Partitions are key ranges crossed with the selected Milvus partitions. Their boundaries
come from one key-only scan when the job is planned, and are stored with the checkpoint
(a Partition's spec), so a resumed job reads the same ranges.

Vectors: every vector field becomes a named vector of the same name. FLOAT16 keeps
Qdrant's float16 datatype; BFLOAT16 and INT8 (Qdrant has neither) become float32;
BINARY is unpacked into 0/1 values in a uint8 vector with Manhattan distance, which on
0/1 vectors equals Milvus's Hamming. Distances come from each field's index metric.

IDs: non-negative INT64 keys stay integers. Negative keys become their decimal string and
VARCHAR keys stay strings: both then follow the engine's ID policy (UUIDv5, original kept).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from pymilvus import DataType, MilvusClient, MilvusException

from qmigrate.errors import SourceError, TransientError
from qmigrate.records import Page, Partition, Record, SourceInfo, SparseVector, VectorField
from qmigrate.retry import TRANSIENT_GRPC
from qmigrate.sources import kit

METRICS = {"COSINE": "Cosine", "IP": "Dot", "L2": "Euclid", "HAMMING": "Manhattan"}
DENSE_TYPES = {
    DataType.FLOAT_VECTOR: None,
    DataType.FLOAT16_VECTOR: "float16",
    DataType.BFLOAT16_VECTOR: None,
    DataType.INT8_VECTOR: None,
    DataType.BINARY_VECTOR: "uint8",
}
INDEX_SCHEMAS = {
    DataType.BOOL: "bool",
    DataType.INT8: "integer",
    DataType.INT16: "integer",
    DataType.INT32: "integer",
    DataType.INT64: "integer",
    DataType.FLOAT: "float",
    DataType.DOUBLE: "float",
    DataType.VARCHAR: "keyword",
}
INTEGER_TYPES = {DataType.INT8, DataType.INT16, DataType.INT32, DataType.INT64}
# Milvus refuses a query whose limit exceeds this (queryNode.maxQueryResultWindow).
MAX_QUERY_WINDOW = 16384
CONNECT_ATTEMPTS = 3
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
COLLECTION_NOT_LOADED = 101  # Milvus's code for a query on a released collection


def _grpc_name(error: MilvusException) -> str:
    """UNAVAILABLE for a lost connection, RESOURCE_EXHAUSTED for a rate limit, else UNKNOWN.

    The gRPC error, when there is one, sits anywhere in the chain: pymilvus wraps its own
    exceptions when its retries of a lost connection run out (some `raise e from e`)."""
    chain: list[BaseException] = []
    link: BaseException | None = error
    while link is not None and link not in chain:
        chain.append(link)
        cause_code = getattr(link, "code", None)
        if callable(cause_code):
            with contextlib.suppress(Exception):
                return str(cause_code().name)
        link = link.__cause__ or link.__context__
    message = (error.message or "").lower()
    if "unavailable" in message or "connect" in message:
        return "UNAVAILABLE"
    if error.code == COLLECTION_NOT_LOADED:  # still so after `_query` loaded it again: a
        return "UNAVAILABLE"  # restarted server not ready yet; the engine backs off, re-reads
    if "rate limit" in message or error.code == 8:
        return "RESOURCE_EXHAUSTED"
    return "UNKNOWN"


def _request(call: Callable[[], Any]) -> Any:
    """A pymilvus call whose lost connections and rate limits the engine retries: Milvus
    keeps its own integer codes, which `retry.is_transient` cannot read."""
    try:
        return call()
    except MilvusException as exc:
        if _grpc_name(exc) in TRANSIENT_GRPC:
            message = f"{type(exc).__name__}: {exc.message} (code {exc.code})"
            raise TransientError(message) from exc
        raise


class Source:
    def __init__(self, config: dict[str, Any], batch_size: int) -> None:
        self.config = config
        self.uri: str = config["uri"]
        self.name: str = config["collection"]
        self.db_name: str = config["db_name"]
        self.selected: list[str] | None = config.get("partitions")
        self.partition_field: str | None = config.get("partition_field")
        self.timeout: float | None = config.get("timeout")
        self.batch_size = min(batch_size, MAX_QUERY_WINDOW)
        self.expression: str | None = None
        self._client: MilvusClient | None = None
        # pymilvus logs every failed request with a traceback; the engine reports errors.
        logging.getLogger("pymilvus").setLevel(logging.CRITICAL)
        self._schema: dict[str, Any] | None = None

    # --- connection -----------------------------------------------------------------

    @property
    def label(self) -> str:
        return f"Milvus at {self.uri}"

    def explain(self, exc: Exception) -> str:
        return kit.first_line(exc)

    @property
    def is_lite(self) -> bool:
        return not self.uri.startswith(("http://", "https://", "tcp://", "unix:", "grpc://"))

    @property
    def client(self) -> MilvusClient:
        if self._client is not None:
            return self._client
        if self.is_lite and not Path(self.uri).exists():
            # MilvusClient would create an empty milvus-lite database there: refuse instead.
            raise SourceError(self.label, "no milvus-lite database there")
        options: dict[str, Any] = {"uri": self.uri, "db_name": self.db_name}
        if self.config.get("token"):
            options["token"] = self.config["token"]
        if self.timeout is not None:
            options["timeout"] = self.timeout
        for attempt in range(1, CONNECT_ATTEMPTS + 1):
            try:
                # pymilvus shares one gRPC channel per server between clients, and milvus-lite
                # may drop it (GOAWAY "too_many_pings"): after a failure, a channel of its own.
                self._client = MilvusClient(**options, dedicated=attempt > 1)
                return self._client
            except MilvusException as exc:
                if attempt == CONNECT_ATTEMPTS or _grpc_name(exc) != "UNAVAILABLE":
                    raise self._connect_error(exc, options) from None
                time.sleep(attempt)
        raise AssertionError("unreachable")

    def _connect_error(self, exc: MilvusException, options: dict[str, Any]) -> SourceError:
        if exc.code == 2 and "token" in options:
            # pymilvus says the same for a wrong token and an unreachable server.
            return SourceError(
                self.label,
                "the server is unreachable or rejected the token (user:password or API key)",
            )
        return SourceError(self.label, kit.first_line(exc))

    @property
    def schema(self) -> dict[str, Any]:
        """The collection's description; a missing collection is an error, never created."""
        if self._schema is not None:
            return self._schema
        client = self.client
        if not client.has_collection(self.name):
            names = client.list_collections()
            shown = kit.some_of(names, "no collections")
            raise SourceError(
                self.label,
                f"collection '{self.name}' does not exist in database '{self.db_name}' "
                f"(it has: {shown})",
            )
        self._schema = client.describe_collection(self.name)
        # A reopened milvus-lite collection, or an unloaded server one, cannot be queried.
        client.load_collection(self.name)
        return self._schema

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
            self._schema = None

    # --- schema ---------------------------------------------------------------------

    @property
    def fields(self) -> list[dict[str, Any]]:
        return list(self.schema["fields"])

    @property
    def primary(self) -> dict[str, Any]:
        return next(f for f in self.fields if f.get("is_primary"))

    def _vector_fields(self) -> list[dict[str, Any]]:
        kinds = {*DENSE_TYPES, DataType.SPARSE_FLOAT_VECTOR, DataType._ARRAY_OF_VECTOR}
        return [f for f in self.fields if f["type"] in kinds]

    def _scalar_fields(self) -> list[dict[str, Any]]:
        vectors = {f["name"] for f in self._vector_fields()}
        return [f for f in self.fields if f["name"] not in vectors and not f.get("is_primary")]

    def _index_metrics(self) -> tuple[dict[str, str], dict[str, str]]:
        """(metric of each indexed vector field, Qdrant index schema of each indexed scalar)."""
        client = self.client
        vectors = {f["name"] for f in self._vector_fields()}
        types = {f["name"]: f for f in self.fields}
        metrics: dict[str, str] = {}
        indexes: dict[str, str] = {}
        for index_name in client.list_indexes(self.name):
            index = client.describe_index(self.name, index_name)
            field = index.get("field_name", index_name)
            if field in vectors:
                metrics[field] = str(index.get("metric_type", "")).upper()
            elif field in types:
                schema = _index_schema(types[field])
                if schema is not None:
                    indexes[field] = schema
        return metrics, indexes

    # --- contract -------------------------------------------------------------------

    def describe(self) -> SourceInfo:
        schema = self.schema
        metrics, indexes = self._index_metrics()
        count = self._count()
        sample = self._query("", None, limit=kit.SAMPLE_RECORDS, output_fields=["*"])
        vectors = [_vector_field(f, metrics.get(f["name"])) for f in self._vector_fields()]
        keys = {f["name"] for f in self._scalar_fields()}
        if schema.get("enable_dynamic_field"):
            known = {f["name"] for f in self.fields}
            keys |= {key for row in sample for key in row if key not in known}
        keys.discard("$meta")
        if self.partition_field:
            keys.add(self.partition_field)
        details: dict[str, Any] = {
            "uri": self.uri,
            "database": self.db_name,
            "collection": self.name,
            "primary_key": f"{self.primary['name']} ({self.primary['type'].name})",
            "partitions": ", ".join(self._milvus_partitions()),
            "consistency": "Strong for the count, the collection's default for pages",
        }
        binary = [f["name"] for f in self._vector_fields() if f["type"] == DataType.BINARY_VECTOR]
        if binary:
            details["binary_vectors"] = (
                f"{', '.join(binary)}: unpacked to 0/1 uint8 values with Manhattan distance, "
                "which equals Milvus's Hamming"
            )
        if not self.is_lite:
            details["load"] = "the collection is loaded into Milvus memory to be queried"
        if self.expression is not None:
            details["expression"] = self.expression
        return SourceInfo(
            count=count,
            vectors=vectors,
            payload_fields=sorted(keys),
            payload_indexes=indexes,
            details=details,
        )

    def push_down(self, filter: dict[str, Any] | None) -> dict[str, Any] | None:
        if not filter:
            return None
        fields = {f["name"]: f for f in self._scalar_fields()}
        self.expression, residual = kit.split_filter(filter, expression_dialect(fields))
        return residual

    def partitions(self, n: int) -> list[Partition]:
        """Key ranges of about equal size in each selected Milvus partition."""
        milvus_partitions = self._per_partition()
        per_partition = max(1, math.ceil(n / len(milvus_partitions)))
        result: list[Partition] = []
        for milvus_partition in milvus_partitions:
            keys = self._all_keys(milvus_partition)
            for after, upto in kit.key_ranges(keys, per_partition):
                spec = {"partition": milvus_partition, "after": after, "upto": upto}
                result.append(Partition(f"{len(result):04d}", spec))
        return result

    def read(self, partition: Partition, cursor: Any) -> Iterator[Page]:
        spec = partition.spec
        after = spec["after"] if cursor is None else cursor
        milvus_partition: str | None = spec["partition"]
        key = self.primary["name"]
        vector_fields = self._vector_fields()
        while True:
            rows = self._page(after, spec["upto"], milvus_partition, self.expression)
            if not rows:
                return
            rows.sort(key=lambda row: row[key])
            after = rows[-1][key]
            records = [self._record(row, key, vector_fields, milvus_partition) for row in rows]
            yield Page(records, after, matrices=kit.page_matrices(records))
            if len(rows) < self.batch_size:
                return

    # --- reading --------------------------------------------------------------------

    def _milvus_partitions(self) -> list[str]:
        existing = self.client.list_partitions(self.name)
        if self.selected is None:
            return list(existing)
        missing = [p for p in self.selected if p not in existing]
        if missing:
            raise SourceError(
                self.label,
                f"collection '{self.name}' has no partition {', '.join(missing)} "
                f"(it has: {', '.join(existing)})",
            )
        return list(self.selected)

    def _per_partition(self) -> list[str | None]:
        """Milvus partitions read one by one (None: the whole collection in one go)."""
        if self.selected is None and self.partition_field is None:
            return [None]
        return list(self._milvus_partitions())

    def _count(self) -> int:
        """count(*) with Strong consistency: collection stats leave out unflushed rows."""
        total = 0
        for milvus_partition in self._per_partition():
            # Never an empty filter: milvus-lite counts the whole collection for one, even
            # when partitions are named.
            everything = self._every_key()
            rows = self._query(
                _and(everything, self.expression), milvus_partition, output_fields=["count(*)"]
            )
            total += int(rows[0]["count(*)"])
        return total

    def _every_key(self) -> str:
        """A condition every key meets. Milvus cannot parse -2**63 as a literal, so the
        INT64 condition bounds the keys from above, where 2**63 - 1 is the largest."""
        if self.primary["type"] == DataType.VARCHAR:
            return f'{self.primary["name"]} >= ""'
        return f"{self.primary['name']} <= {INT64_MAX}"

    def _all_keys(self, milvus_partition: str | None) -> list[Any]:
        """Every key the filter selects, in key order: one key-only keyset scan."""
        key = self.primary["name"]
        keys: list[Any] = []
        after = None
        while True:
            rows = self._query(
                _and(self._after(after), self.expression),
                milvus_partition,
                limit=MAX_QUERY_WINDOW,
                output_fields=[key],
                iterator="True",  # a string: pymilvus sends it as a query parameter
            )
            page = sorted(row[key] for row in rows)
            keys.extend(page)
            if len(page) < MAX_QUERY_WINDOW:
                return keys
            after = page[-1]

    def _page(
        self, after: Any, upto: Any, milvus_partition: str | None, expression: str | None
    ) -> list[dict[str, Any]]:
        bounds = _and(self._after(after), self._upto(upto))
        return self._query(
            _and(bounds, expression),
            milvus_partition,
            limit=self.batch_size,
            output_fields=["*"],
            # Without it, Milvus returns any `limit` matches, not the smallest keys.
            iterator="True",  # a string: pymilvus sends it as a query parameter
            # FLOAT_VECTOR fields as one float32 array per page, each row's vector a view of
            # it: pymilvus otherwise slices a list of Python floats per row, which `_vector`
            # then converted (together about a quarter of the client CPU per point).
            strict_float32=True,
        )

    def search(self, vector_name: str, vector: list[float], k: int) -> list[Any]:
        """Record IDs of the k nearest rows the job reads: a Milvus search within the
        pushed-down expression and the selected partitions (for verify's search agreement).
        Float vector fields only: other kinds are not searched with the values read."""
        field = next(f for f in self._vector_fields() if f["name"] == vector_name)
        if field["type"] != DataType.FLOAT_VECTOR:
            return []
        client = self.client
        hits = _request(
            lambda: client.search(
                self.name,
                data=[vector],
                anns_field=vector_name,
                limit=k,
                filter=self.expression or "",
                partition_names=self.selected,
                consistency_level="Strong",
            )
        )
        key = self.primary["name"]
        ids = [hit[key] if key in hit else hit["id"] for hit in hits[0]]
        return [str(i) if isinstance(i, int) and i < 0 else i for i in ids]

    def _query(
        self, expression: str, milvus_partition: str | None, **options: Any
    ) -> list[dict[str, Any]]:
        client = self.client
        names = [milvus_partition] if milvus_partition is not None else self.selected

        def query() -> list[dict[str, Any]]:
            return list(
                _request(
                    lambda: client.query(
                        self.name,
                        filter=expression,
                        partition_names=names,
                        consistency_level="Strong",
                        **options,
                    )
                )
            )

        try:
            return query()
        except TransientError as exc:
            if getattr(exc.__cause__, "code", None) != COLLECTION_NOT_LOADED:
                raise
        # A restarted server (or milvus-lite) has released the collection: load it again.
        _request(lambda: client.load_collection(self.name))
        return query()

    def _after(self, key: Any) -> str:
        if key is None:
            return ""
        if key == INT64_MIN:  # not a literal Milvus parses: the same keys, one step up
            return f"{self.primary['name']} >= {INT64_MIN + 1}"
        return f"{self.primary['name']} > {_literal(key)}"

    def _upto(self, key: Any) -> str:
        if key is None:
            return ""
        if key == INT64_MIN:
            return f"{self.primary['name']} < {INT64_MIN + 1}"
        return f"{self.primary['name']} <= {_literal(key)}"

    def _record(
        self,
        row: dict[str, Any],
        key_name: str,
        vector_fields: list[dict[str, Any]],
        milvus_partition: str | None,
    ) -> Record:
        """One row as a Record; the key's name and the vector fields come from the caller,
        which looks them up in the schema once per read, not once per row."""
        key = row.pop(key_name)
        record_id = str(key) if isinstance(key, int) and key < 0 else key
        vectors = {}
        for field in vector_fields:
            value = row.pop(field["name"], None)
            if value is not None:
                vectors[field["name"]] = _vector(field, value)
        meta = row.pop("$meta", None)
        if isinstance(meta, dict):
            row.update(meta)
        if self.partition_field:
            row[self.partition_field] = milvus_partition
        return Record(record_id, vectors, row)


def _index_schema(field: dict[str, Any]) -> str | None:
    if field["type"] == DataType.ARRAY:
        return INDEX_SCHEMAS.get(field.get("element_type"))
    return INDEX_SCHEMAS.get(field["type"])


def _vector_field(field: dict[str, Any], metric: str | None) -> VectorField:
    kind = field["type"]
    name = field["name"]
    distance = METRICS.get(metric or "")
    if kind == DataType.SPARSE_FLOAT_VECTOR:
        return VectorField(name, "sparse")
    dim = int(field.get("params", {}).get("dim", 0)) or None
    if kind == DataType._ARRAY_OF_VECTOR:
        return VectorField(name, "multi", dim, distance)
    if kind == DataType.BINARY_VECTOR:
        return VectorField(name, "dense", dim, "Manhattan", {"datatype": "uint8"})
    datatype = DENSE_TYPES[kind]
    return VectorField(name, "dense", dim, distance, {"datatype": datatype} if datatype else {})


def _vector(field: dict[str, Any], value: Any) -> Any:
    """A Milvus vector as the engine takes it: a 1-D float32 array (dense kinds), a
    SparseVector, or a list of lists (multi). Dense ones stay arrays, never lists of Python
    floats: a FLOAT_VECTOR arrives as a view of its page's array and is not copied."""
    kind = field["type"]
    if kind == DataType.SPARSE_FLOAT_VECTOR:
        items = sorted((int(i), float(v)) for i, v in dict(value).items())
        return SparseVector([i for i, _ in items], [v for _, v in items])
    if kind == DataType._ARRAY_OF_VECTOR:
        return [np.asarray(v, dtype=np.float32).tolist() for v in value]
    if isinstance(value, list) and value and isinstance(value[0], bytes):
        value = b"".join(value)
    if kind == DataType.BINARY_VECTOR:
        return np.unpackbits(np.frombuffer(value, dtype=np.uint8)).astype(np.float32)
    if isinstance(value, bytes):
        if kind == DataType.FLOAT16_VECTOR:
            return np.frombuffer(value, dtype=np.float16).astype(np.float32)
        if kind == DataType.BFLOAT16_VECTOR:
            halves = np.frombuffer(value, dtype=np.uint16).astype(np.uint32) << 16
            return halves.view(np.float32)
        if kind == DataType.INT8_VECTOR:
            return np.frombuffer(value, dtype=np.int8).astype(np.float32)
    return np.asarray(value, dtype=np.float32)


# --- filter pushdown ------------------------------------------------------------------
#
# Only conditions on schema scalar fields are pushed down, where a Milvus expression selects
# exactly what Qdrant's filter does: those fields hold one value (never a list, which
# Qdrant's `match` would search element by element), and their type equals the
# condition's, so `1` never meets `1.0`. Negations are pushed only for fields that cannot be
# null: Milvus evaluates `not (x == 1)` on a null x as false, Qdrant's must_not as true.
# JSON paths, dynamic keys and ARRAY fields stay client-side.


def expression_dialect(fields: dict[str, dict[str, Any]]) -> kit.FilterDialect[str]:
    return kit.FilterDialect(
        lambda condition: _condition(condition, fields),
        all_of=lambda parts: " and ".join(f"({p})" for p in parts),
        any_of=lambda alternatives: "(" + " or ".join(f"({a})" for a in alternatives) + ")",
        negation=lambda condition: _condition(condition, fields, negate=True),
    )


def _condition(
    condition: dict[str, Any], fields: dict[str, dict[str, Any]], negate: bool = False
) -> str | None:
    """One Qdrant field condition (or its negation) as a Milvus expression, or None where
    semantics differ."""
    field = fields.get(condition.get("key", ""))
    if field is None:
        return None
    kind = field["type"]
    name = field["name"]
    if negate and field.get("nullable"):
        return None
    match = condition.get("match")
    expression: str | None = None
    if isinstance(match, dict) and "value" in match:
        value = match["value"]
        if _same_type(kind, value):
            expression = f"{name} == {_literal(value)}"
    elif isinstance(match, dict) and "any" in match:
        values = match["any"]
        if values and all(_same_type(kind, v) and not isinstance(v, bool) for v in values):
            expression = f"{name} in [{', '.join(_literal(v) for v in values)}]"
    elif isinstance(condition.get("range"), dict) and (
        kind in INTEGER_TYPES or kind == DataType.DOUBLE
    ):
        bounds = condition["range"]
        operators = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
        parts = []
        for key, value in bounds.items():
            if value is None:
                continue
            if key not in operators or isinstance(value, bool):
                return None
            if not isinstance(value, int) and kind in INTEGER_TYPES:
                return None
            parts.append(f"{name} {operators[key]} {_literal(value)}")
        expression = " and ".join(parts) if parts else None
    if expression is None:
        return None
    return f"not ({expression})" if negate else expression


def _same_type(kind: DataType, value: Any) -> bool:
    if isinstance(value, bool):
        return kind == DataType.BOOL
    if isinstance(value, int):
        return kind in INTEGER_TYPES
    if isinstance(value, str):
        return kind == DataType.VARCHAR
    return False


def _literal(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return repr(value)


def _and(*parts: str | None) -> str:
    present = [p for p in parts if p]
    if len(present) <= 1:
        return present[0] if present else ""
    return " and ".join(f"({p})" for p in present)
