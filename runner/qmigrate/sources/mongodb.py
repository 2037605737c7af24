"""MongoDB (or a MongoDB wire-protocol server): one collection, read through pymongo.

Reading: keyset pages on `_id` (`{_id: {$gt: last}}` sorted by `_id`, one query a page), so
a changing collection neither skips nor repeats documents and a resume after a kill starts
right after the last acknowledged `_id`. `_id` values of four kinds are read: numbers,
strings, UUIDs (binary) and ObjectIds. MongoDB compares values of different kinds apart
(type bracketing), so each kind present is its own range, read in BSON order; every range
query carries `$type` as well, so a server without bracketing reads the same documents.
A document whose `_id` is of another kind (a date, an embedded document, NaN) is counted
in describe and refused there, naming the count, instead of being left out silently.
Partitions are `_id` ranges (after, upto] within one kind, cut at ranks of the `_id` index.

Vectors: the fields the job names in `vectors`, and those an Atlas vector search index
defines (`listSearchIndexes`, where the server has it), never every array. A vector is an
array of numbers or a BSON binary vector (subtype 9: float32, int8 or packed bits).

Payload: every other field, converted once per value (`payload_value`): ObjectId and UUID
as strings, dates as RFC 3339 (UTC, milliseconds), Decimal128 as a number where a float
holds it exactly, else its digits as a string, nested documents nested; BSON types JSON
has no form for keep their canonical Extended JSON form ({"$timestamp": ...}).
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Any

import numpy as np
import pymongo
from bson import json_util
from bson.binary import Binary, UuidRepresentation
from bson.datetime_ms import DatetimeMS
from bson.decimal128 import Decimal128
from bson.json_util import JSONMode, JSONOptions
from bson.objectid import ObjectId
from pymongo import errors

from qmigrate.errors import SourceError, TransientError
from qmigrate.records import DISTANCES, Page, Partition, Record, SourceInfo, VectorField
from qmigrate.redaction import without_credentials
from qmigrate.sources import kit

Query = dict[str, Any]


@dataclass(frozen=True)
class IdKind:
    """One kind of `_id` value: the `$type` alias of its BSON types, and its least value."""

    name: str
    type: str
    least: Any


# In BSON sort order: numbers < strings < binary < ObjectId.
ID_KINDS = [
    IdKind("number", "number", float("-inf")),  # int, long, double and decimal
    IdKind("string", "string", ""),
    IdKind("binary", "binData", Binary(b"", 0)),
    IdKind("objectId", "objectId", ObjectId("0" * 24)),
]
KINDS = {kind.name: kind for kind in ID_KINDS}

# Cursors and partition bounds: canonical Extended JSON keeps every BSON type exactly.
EXTENDED_JSON = JSONOptions(
    json_mode=JSONMode.CANONICAL, uuid_representation=UuidRepresentation.STANDARD, tz_aware=True
)
# Atlas vector index similarities -> Qdrant distances.
SIMILARITIES = {"cosine": "Cosine", "euclidean": "Euclid", "dotProduct": "Dot"}
# BSON binary vectors (subtype 9): the first byte names the element type.
VECTOR_SUBTYPE = 9
FLOAT32, INT8, PACKED_BIT = 0x27, 0x03, 0x10
UUID_SUBTYPES = (3, 4)
# Error codes: 13 Unauthorized, 18 AuthenticationFailed. Transient: the server is stepping
# down or shutting down, or a node is not primary (its retryable labels say the same).
TRANSIENT_CODES = {6, 7, 89, 91, 189, 262, 9001, 10107, 11600, 11602, 13435, 13436}


def _extended(value: Any) -> Any:
    """A BSON value as a JSON value (canonical Extended JSON) for cursors and specs."""
    return json.loads(json_util.dumps({"v": value}, json_options=EXTENDED_JSON))["v"]


def _bson(value: Any) -> Any:
    """The BSON value an `_extended` JSON value stands for."""
    return json_util.loads(json.dumps({"v": value}), json_options=EXTENDED_JSON)["v"]


class Source:
    def __init__(self, config: dict[str, Any], batch_size: int) -> None:
        self.uri: str = config["uri"]
        self.database_name: str | None = config.get("database")
        self.collection_name: str = config["collection"]
        self.id_field: str = config["id"]
        self.overrides: dict[str, dict[str, Any]] = config.get("vectors") or {}
        self.timeout: float = config["timeout"]
        self.batch_size = batch_size
        self.pushed: Query | None = None
        self._client: pymongo.MongoClient[dict[str, Any]] | None = None
        self._fields: dict[str, VectorField] = {}  # by document field path
        self._kind_counts: dict[str, int] = {}

    # --- connection -----------------------------------------------------------------

    @property
    def label(self) -> str:
        database = f"{self.database_name}." if self.database_name else ""
        where = without_credentials(self.uri)
        return f"MongoDB collection {database}{self.collection_name} at {where}"

    def explain(self, exc: Exception) -> str:
        if isinstance(exc, errors.ServerSelectionTimeoutError):
            # "host:port: [Errno 111] Connection refused (configured timeouts: ...), Timeout:
            # 2.0s, Topology Description: <...>": the first cause is what the user needs.
            text = re.sub(r" \(configured timeouts:[^)]*\)", "", str(exc))
            return f"cannot reach the server: {text.split(', Timeout:')[0]}"
        if isinstance(exc, errors.OperationFailure):
            message = (exc.details or {}).get("errmsg") or str(exc)
            return kit.first_line(Exception(message))
        return kit.first_line(exc)

    @property
    def client(self) -> pymongo.MongoClient[dict[str, Any]]:
        if self._client is None:
            milliseconds = int(self.timeout * 1000)
            self._client = pymongo.MongoClient(
                self.uri,
                appname="qmigrate",
                tz_aware=True,
                uuidRepresentation="standard",
                datetime_conversion="DATETIME_AUTO",
                serverSelectionTimeoutMS=milliseconds,
                connectTimeoutMS=milliseconds,
                socketTimeoutMS=milliseconds,
            )
        return self._client

    @functools.cached_property
    def collection(self) -> Any:
        """The collection, once it is known to exist (the first request connects)."""
        if self.database_name is None:
            try:
                self.database_name = self.client.get_default_database().name
            except errors.ConfigurationError:
                raise SourceError(
                    self.label, "no database: set `database`, or name one in the uri"
                ) from None
        database = self.client[self.database_name]
        # authorizedCollections: a user allowed to read only some collections may list them.
        names = database.list_collection_names(authorizedCollections=True)
        if self.collection_name not in names:
            shown = kit.some_of(names, "no collections")
            raise SourceError(
                self.label,
                f"collection {self.collection_name} does not exist in database "
                f"{self.database_name} (it has: {shown})",
            )
        return database[self.collection_name]

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        self.__dict__.pop("collection", None)

    # --- contract -------------------------------------------------------------------

    def push_down(self, filter: dict[str, Any] | None) -> dict[str, Any] | None:
        if not filter:
            return None
        excluded = {"_id", self.id_field.split(".")[0], *(f.split(".")[0] for f in self.overrides)}
        dialect = mongo_dialect(excluded, element_wise=not self._is_ferretdb)
        self.pushed, residual = kit.split_filter(filter, dialect)
        return residual

    @functools.cached_property
    def _is_ferretdb(self) -> bool:
        """FerretDB says so in buildInfo (its `$elemMatch` differs, see the pushdown)."""
        return "ferretdbVersion" in self.client.admin.command("buildInfo")

    def describe(self) -> SourceInfo:
        collection = self.collection
        indexed, index_note = self._vector_indexes(collection)
        self._fields = self._vector_fields(collection, indexed)
        counts = {
            kind.name: collection.count_documents({"_id": self._id_range(kind, None, None)})
            for kind in ID_KINDS
        }
        total = collection.count_documents({})
        if sum(counts.values()) != total:
            raise SourceError(
                self.label,
                f"{total - sum(counts.values()):,} documents have an _id that is not a number, "
                "string, UUID or ObjectId, which this source cannot page through",
            )
        self._kind_counts = {name: n for name, n in counts.items() if n}
        count = collection.count_documents(self.pushed) if self.pushed else total
        sample = list(collection.find(self.pushed or {}).limit(kit.SAMPLE_RECORDS))
        skipped = {"_id", *(f.split(".")[0] for f in self._fields)} - {self._id_payload_field}
        payload = kit.payload_fields([{k: 1 for k in doc if k not in skipped} for doc in sample])
        details: dict[str, Any] = {
            "ids": ", ".join(f"{n:,} {name}" for name, n in self._kind_counts.items())
            + f" _id values{'' if self.id_field == '_id' else f'; point IDs from {self.id_field}'}",
            "vector_fields": ", ".join(
                f"{path} -> {f.name or '(unnamed)'} ({f.size}, {f.distance or 'distance unknown'})"
                for path, f in self._fields.items()
            ),
            "vector_indexes": index_note,
        }
        if self.pushed:
            details["query"] = json_util.dumps(self.pushed, json_options=EXTENDED_JSON)
        return SourceInfo(
            count=count,
            vectors=list(self._fields.values()),
            payload_fields=payload,
            # A field MongoDB indexes is likely filtered on in Qdrant too.
            payload_indexes=payload_indexes(
                self._indexed_fields(collection) - skipped - {self.id_field}, sample
            ),
            details=details,
        )

    @staticmethod
    def _indexed_fields(collection: Any) -> set[str]:
        """Top-level fields that lead a MongoDB index (text, geo and hashed keys left out)."""
        fields = set()
        for index in collection.list_indexes():
            keys = list((index.get("key") or {}).items())
            if keys and keys[0][1] in (1, -1) and "." not in keys[0][0]:
                fields.add(keys[0][0])
        return fields

    def partitions(self, n: int) -> list[Partition]:
        """Per kind of `_id`, about n * its share ranges, cut at ranks of the `_id` index."""
        total = sum(self._kind_counts.values()) or 1
        specs: list[dict[str, Any]] = []
        for name, count in self._kind_counts.items():
            parts = max(1, min(count, round(n * count / total)))
            cuts = [self._id_at_rank(KINDS[name], count * i // parts - 1) for i in range(1, parts)]
            bounds: list[Any] = [None, *(_extended(c) for c in dict.fromkeys(cuts)), None]
            specs += [{"kind": name, "after": a, "upto": u} for a, u in itertools.pairwise(bounds)]
        if not specs:  # an empty collection: one partition that reads nothing
            specs = [{"kind": ID_KINDS[0].name, "after": None, "upto": None}]
        return [Partition(f"{i:04d}", spec) for i, spec in enumerate(specs)]

    def read(self, partition: Partition, cursor: Any) -> Iterator[Page]:
        kind = KINDS[partition.spec["kind"]]
        after = _bson(partition.spec["after"] if cursor is None else cursor)
        upto = _bson(partition.spec["upto"])
        collection = self.collection
        while True:
            query: Query = {"_id": self._id_range(kind, after, upto)}
            if self.pushed:
                query = {"$and": [self.pushed, query]}
            try:
                documents = list(
                    collection.find(query).sort("_id", pymongo.ASCENDING).limit(self.batch_size)
                )
            except errors.PyMongoError as exc:
                raise _transient_or_as_is(exc) from exc
            if not documents:
                return
            after = documents[-1]["_id"]
            yield Page([self._record(d) for d in documents], _extended(after))
            if len(documents) < self.batch_size:
                return

    # --- reading --------------------------------------------------------------------

    @staticmethod
    def _id_range(kind: IdKind, after: Any, upto: Any) -> Query:
        bounds: Query = {"$type": kind.type}
        if after is None:
            bounds["$gte"] = kind.least
        else:
            bounds["$gt"] = after
        if upto is not None:
            bounds["$lte"] = upto
        return bounds

    def _id_at_rank(self, kind: IdKind, rank: int) -> Any:
        found = list(
            self.collection.find({"_id": self._id_range(kind, None, None)}, {"_id": 1})
            .sort("_id", pymongo.ASCENDING)
            .skip(rank)
            .limit(1)
        )
        return found[0]["_id"]

    @property
    def _id_payload_field(self) -> str:
        """`_id` stays in the payload when the point IDs come from another field."""
        return "" if self.id_field == "_id" else "_id"

    def _record(self, document: dict[str, Any]) -> Record:
        raw_id = document.get("_id") if self.id_field == "_id" else _take(document, self.id_field)
        vectors: dict[str, Any] = {}
        problems: list[str] = []
        for path, field in self._fields.items():
            value = _take(document, path)
            if value is None:
                continue
            try:
                vectors[field.name] = vector_value(value)
            except ValueError as exc:
                problems.append(f"{path}: {exc}")
        if self.id_field == "_id":
            del document["_id"]
        payload: dict[str, Any] = {}
        for key, value in document.items():
            try:
                payload[key] = payload_value(value)
            except ValueError as exc:
                problems.append(f"{key}: {exc}")
        try:
            point = point_id(raw_id)
        except ValueError as exc:
            point, problems = str(raw_id), [*problems, f"{self.id_field}: {exc}"]
        return Record(point, vectors, payload, invalid="; ".join(problems) or None)

    # --- vectors --------------------------------------------------------------------

    def _vector_indexes(self, collection: Any) -> tuple[dict[str, dict[str, Any]], str]:
        """Vector fields of the Atlas vector search indexes: {path: {size, distance, index}}."""
        try:
            indexes = list(collection.list_search_indexes())
        except errors.OperationFailure as exc:
            return {}, (
                "this server does not list Atlas search indexes "
                f"({self.explain(exc)}): vectors come from the job's `vectors`"
            )
        found: dict[str, dict[str, Any]] = {}
        for index in indexes:
            definition = index.get("latestDefinition") or index.get("definition") or {}
            for field in definition.get("fields") or []:  # type: vectorSearch
                if field.get("type") == "vector" and field.get("path"):
                    found[field["path"]] = {
                        "size": field.get("numDimensions"),
                        "distance": SIMILARITIES.get(field.get("similarity", "")),
                        "index": index.get("name"),
                    }
            mapped = ((definition.get("mappings") or {}).get("fields")) or {}
            for path, spec in mapped.items():  # type: search, with the older knnVector field
                kinds = spec if isinstance(spec, list) else [spec]
                for kind in kinds:
                    if isinstance(kind, dict) and kind.get("type") == "knnVector":
                        found[path] = {
                            "size": kind.get("dimensions"),
                            "distance": SIMILARITIES.get(kind.get("similarity", "")),
                            "index": index.get("name"),
                        }
        names = sorted({str(v["index"]) for v in found.values()})
        note = f"Atlas vector search indexes: {', '.join(names)}" if names else "none found"
        return found, note

    def _vector_fields(
        self, collection: Any, indexed: dict[str, dict[str, Any]]
    ) -> dict[str, VectorField]:
        paths = list(dict.fromkeys([*indexed, *self.overrides]))
        if not paths:
            raise SourceError(
                self.label,
                "no vector fields: the server lists no Atlas vector search index for this "
                "collection; name them in `vectors` (e.g. vectors: {embedding: {distance: cosine}})",
            )
        fields: dict[str, VectorField] = {}
        for path in paths:
            override = self.overrides.get(path, {})
            known = indexed.get(path, {})
            distance = known.get("distance")
            if "distance" in override:
                distance = DISTANCES[override["distance"]]
            size, datatype = self._sample_vector(collection, path)
            if known.get("size"):
                size = known["size"]
            options = {"datatype": datatype} if datatype else {}
            name = str(override.get("name", path))
            fields[path] = VectorField(name, "dense", size, distance, options)
        return fields

    def _sample_vector(self, collection: Any, path: str) -> tuple[int, str | None]:
        """The size (and Qdrant datatype, for bits) of the first document's vector."""
        document = collection.find_one({path: {"$exists": True, "$ne": None}}, {path: 1})
        if document is None:
            raise SourceError(self.label, f"vectors.{path}: no document has this field")
        value = _take(document, path)
        try:
            vector = vector_value(value)
        except ValueError as exc:
            raise SourceError(self.label, f"vectors.{path}: {exc}") from None
        bits = isinstance(value, Binary) and value.subtype == VECTOR_SUBTYPE
        datatype = "uint8" if bits and bytes(value)[0] == PACKED_BIT else None
        return len(vector), datatype


def _transient_or_as_is(exc: errors.PyMongoError) -> Exception:
    """Connection trouble, timeouts and a primary stepping down are worth another try."""
    transient = isinstance(exc, (errors.ConnectionFailure, errors.ExecutionTimeout))
    if isinstance(exc, errors.OperationFailure):
        transient = exc.code in TRANSIENT_CODES or exc.has_error_label("RetryableError")
    if transient:
        return TransientError(f"{type(exc).__name__}: {kit.first_line(exc)}")
    return exc


def _take(document: dict[str, Any], path: str) -> Any:
    """Remove and return the value at a dotted path (None where it is missing)."""
    *parents, leaf = path.split(".")
    holder: Any = document
    for part in parents:
        holder = holder.get(part) if isinstance(holder, dict) else None
    return holder.pop(leaf, None) if isinstance(holder, dict) else None


# --- values ---------------------------------------------------------------------------


def point_id(value: Any) -> Any:
    """An `_id` (or id field) as the engine's raw point ID: non-negative integers stay,
    everything else becomes a string (UUID strings become UUID point IDs)."""
    if isinstance(value, bool):
        raise ValueError("a boolean is not an ID")
    if isinstance(value, Decimal128):
        number = value.to_decimal()
        value = (
            int(number)
            if number.is_finite() and number == number.to_integral_value()
            else str(number)
        )
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int):
        return value if value >= 0 else str(value)
    if isinstance(value, (str, ObjectId, uuid.UUID, float)):
        return str(value)
    if isinstance(value, Binary) and value.subtype in UUID_SUBTYPES and len(value) == 16:
        return str(uuid.UUID(bytes=bytes(value)))
    if value is None:
        return None  # the engine's "it has no ID"
    raise ValueError(f"an ID of type {type(value).__name__} has no point ID form")


def vector_value(value: Any) -> np.ndarray:
    """An array of numbers, or a BSON binary vector, as a float32 array."""
    if isinstance(value, Binary) and value.subtype == VECTOR_SUBTYPE:
        return binary_vector(bytes(value))
    if isinstance(value, list) and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in value
    ):
        return np.asarray(value, dtype=np.float32)
    raise ValueError(
        f"a {_bson_type(value)} is not a vector (an array of numbers or a binary vector)"
    )


def binary_vector(data: bytes) -> np.ndarray:
    """BSON binary subtype 9: a dtype byte, a padding byte (unused bits of the last byte of
    packed bits), then little-endian float32, int8 or packed bits (the first bit highest)."""
    if len(data) < 2:
        raise ValueError("a binary vector shorter than its two header bytes")
    dtype, padding = data[0], data[1]
    if dtype == FLOAT32:
        if (len(data) - 2) % 4:
            raise ValueError("a float32 binary vector whose length is not a multiple of 4")
        return np.frombuffer(data, dtype="<f4", offset=2).astype(np.float32)
    if dtype == INT8:
        return np.frombuffer(data, dtype=np.int8, offset=2).astype(np.float32)
    if dtype == PACKED_BIT:
        bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8, offset=2))
        if padding > 7 or padding > len(bits):
            raise ValueError(f"a packed-bit binary vector with padding {padding}")
        return bits[: len(bits) - padding].astype(np.float32)
    raise ValueError(f"a binary vector of unknown element type 0x{dtype:02x}")


def decimal_value(value: Decimal128) -> Any:
    """A Decimal128 as a float where the float is exactly its value, else its digits as a
    string. Never an integer: a pushed integer match leaves decimals out (see below)."""
    number = value.to_decimal()
    if not number.is_finite():
        return str(number)
    as_float = float(number)
    return as_float if Decimal(repr(as_float)) == number else str(number)


def rfc3339(value: datetime) -> str:
    """A BSON date (UTC, milliseconds) as RFC 3339: 2024-05-01T10:00:00.250Z."""
    value = value.astimezone(timezone.utc)
    return value.strftime("%Y-%m-%dT%H:%M:%S") + f".{value.microsecond // 1000:03d}Z"


def payload_value(value: Any) -> Any:
    """A BSON value as the JSON value Qdrant keeps (ValueError: none that is faithful)."""
    if value is None or isinstance(value, (str, bool, float)):
        return value
    if isinstance(value, int):
        return int(value)  # Int64 too
    if isinstance(value, dict):
        return {k: payload_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [payload_value(v) for v in value]
    convert = CONVERTERS.get(type(value))
    if convert is not None:
        return convert(value)
    return _extended_form(value)


def _binary(value: Binary) -> Any:
    if value.subtype == VECTOR_SUBTYPE:
        return binary_vector(bytes(value)).tolist()
    if value.subtype in UUID_SUBTYPES and len(value) == 16:
        return str(uuid.UUID(bytes=bytes(value)))
    return _extended_form(value)


def _date_out_of_range(value: DatetimeMS) -> Any:
    raise ValueError(f"a date outside years 1-9999 ({int(value)} ms after 1970)")


def _extended_form(value: Any) -> Any:
    """The canonical Extended JSON of a BSON value JSON has no form for ($timestamp...)."""
    return _extended(value)


CONVERTERS: dict[type, Callable[[Any], Any]] = {
    ObjectId: str,
    uuid.UUID: str,
    datetime: rfc3339,
    Decimal128: decimal_value,
    Binary: _binary,
    bytes: lambda value: _extended_form(Binary(value, 0)),
    DatetimeMS: _date_out_of_range,
}


# BSON values' Python types -> the Qdrant payload index that holds them once converted
# (bool before int: a bool is an int to Python; Int64 is an int).
INDEX_KINDS: list[tuple[type, str]] = [
    (bool, "bool"),
    (int, "integer"),
    (float, "float"),
    (str, "keyword"),
    (ObjectId, "keyword"),
    (uuid.UUID, "uuid"),
    (datetime, "datetime"),
]


def _index_kind(value: Any) -> str:
    return next((kind for cls, kind in INDEX_KINDS if isinstance(value, cls)), "other")


def payload_indexes(fields: set[str], sample: list[dict[str, Any]]) -> dict[str, str]:
    """The Qdrant index for each indexed field whose sampled values (array elements too) are
    all of one kind (integers among floats count as floats); none where they mix."""
    indexes = {}
    for field in sorted(fields):
        kinds = set()
        for document in sample:
            value = document.get(field)
            for item in value if isinstance(value, list) else [value]:
                if item is not None:
                    kinds.add(_index_kind(item))
        if kinds == {"integer", "float"}:
            kinds = {"float"}
        if len(kinds) == 1 and "other" not in kinds:
            indexes[field] = kinds.pop()
    return indexes


def _bson_type(value: Any) -> str:
    names: dict[type, str] = {str: "string", dict: "document", list: "array"}
    return names.get(type(value), type(value).__name__)


# --- filter pushdown ------------------------------------------------------------------
#
# A condition is pushed where MongoDB's query selects exactly what Qdrant's filter selects
# over the converted payload. Plain top-level keys only (not `_id`, the id field or a
# vector field, which are not payload as stored). A string match also matches the BSON
# values that convert to that string (an ObjectId, a UUID, a date); a string that reads as
# a number is left to the engine (many Decimal128 values print as it). Numeric ranges and
# integer matches hold element by element: `$elemMatch` for arrays, the plain form for
# other values, so [1, 10] is not in range 3..7 as its two elements would make it alone.
# Type bracketing keeps a numeric range to numbers; an integer match also needs the
# element to be an integer (Qdrant's match 4 does not select 4.0). FerretDB 1.24 tests each
# operator of an `$elemMatch` against any element (seen: [1, 10] matched 3..7), so on
# FerretDB numeric conditions stay client-side; strings and booleans, one test each, do not
# need `$elemMatch` and are pushed everywhere.
# A negation is `$nor`, which (as Qdrant's must_not) selects documents missing the field.

INTEGER_TYPES = ["int", "long"]
RANGE_OPERATORS = {"gt": "$gt", "gte": "$gte", "lt": "$lt", "lte": "$lte"}
DATE_TEXT = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


def mongo_dialect(excluded: set[str], element_wise: bool = True) -> kit.FilterDialect[Query]:
    """`element_wise`: whether the server's `$elemMatch` holds all its tests for one element."""

    def condition(c: dict[str, Any]) -> Query | None:
        key = kit.plain_key(c)
        if key is None or key in excluded or key.startswith("$"):
            return None
        return _condition(key, c, element_wise)

    def negation(c: dict[str, Any]) -> Query | None:
        pushed = condition(c)
        return None if pushed is None else {"$nor": [pushed]}

    return kit.FilterDialect(
        condition,
        all_of=lambda parts: parts[0] if len(parts) == 1 else {"$and": parts},
        any_of=lambda parts: parts[0] if len(parts) == 1 else {"$or": parts},
        negation=negation,
    )


def _condition(key: str, condition: dict[str, Any], element_wise: bool) -> Query | None:
    match = condition.get("match")
    if isinstance(match, dict):
        values = [match["value"]] if "value" in match else match.get("any")
        if not isinstance(values, list) or not values or set(match) - {"value", "any"}:
            return None
        if all(isinstance(v, str) for v in values):
            stored = [s for v in values for s in _stored_as(v)]
            return None if not stored else {key: {"$in": stored}}
        if all(isinstance(v, bool) for v in values):
            return {key: {"$in": values}}
        integers = all(isinstance(v, int) and not isinstance(v, bool) for v in values)
        if integers and element_wise:
            return _element_wise(key, {"$in": values, "$type": INTEGER_TYPES})
        return None
    bounds = condition.get("range")
    if not isinstance(bounds, dict) or not element_wise:
        return None
    present = {k: v for k, v in bounds.items() if v is not None}
    if not present or set(present) - set(RANGE_OPERATORS):
        return None
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present.values()):
        return None
    return _element_wise(key, {RANGE_OPERATORS[k]: v for k, v in present.items()})


def _element_wise(key: str, test: Query) -> Query:
    """`test` held by one value: an element of an array, or the field's value itself."""
    return {
        "$or": [
            {key: {"$elemMatch": test}},
            {key: {**test, "$not": {"$type": "array"}}},
        ]
    }


def _stored_as(text: str) -> list[Any]:
    """Every BSON value that converts to `text` in the payload; [] when that is not known."""
    try:
        Decimal(text)
        return []  # "1.50", "1E3": Decimal128 values that print so are not listed here
    except InvalidOperation:
        pass
    values: list[Any] = [text]
    if ObjectId.is_valid(text) and str(ObjectId(text)) == text:
        values.append(ObjectId(text))
    try:
        as_uuid = uuid.UUID(text)
    except ValueError:
        as_uuid = None
    if as_uuid is not None and str(as_uuid) == text:
        values += [as_uuid, Binary(as_uuid.bytes, 3)]
    if DATE_TEXT.fullmatch(text):
        with contextlib.suppress(ValueError):
            moment = datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ")
            values.append(moment.replace(tzinfo=timezone.utc))
    return values
