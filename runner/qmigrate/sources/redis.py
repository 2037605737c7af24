"""Redis (the query engine, RediSearch): one FT index over HASH or JSON documents.

Reading: SCAN over each index prefix (MATCH, a large COUNT) gives keys and a stateless
cursor that survives `kill -9`, but not a restart of the server: SCAN cursors follow its
hash table, whose seed is new in every server process. So a cursor carries the server's
`run_id` (asked in the pipeline of each SCAN), and a cursor from another server process
makes the engine read the partition again from its start (`CursorLost`). Each scanned
batch is checked with `FT.SEARCH idx <query> INKEYS ... NOCONTENT`, which answers exactly
which of those keys the index holds (a missing or malformed vector, or a document the
index FILTER excludes, is not held and does not move; the pushed-down filter goes in the
same query). The held documents are fetched with one pipelined HGETALL / JSON.GET round
trip.

Partitions: a SCAN cursor cannot be split, so each partition scans every key (keys only,
cheap) and keeps those whose CRC32 falls in its bucket; the expensive part, fetching
documents with their vectors, runs in parallel.
"""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from qmigrate.records import CursorLost, Page, Partition, Record, SourceInfo, VectorField
from qmigrate.sources import kit

DISTANCES = {"COSINE": "Cosine", "IP": "Dot", "L2": "Euclid"}
INDEX_TYPES = {"TAG": "keyword", "NUMERIC": "float", "TEXT": "text", "GEO": "geo"}
SCAN_COUNT = 1000
INKEYS_CHUNK = 1000


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _pairs(reply: Any) -> dict[str, Any]:
    """A RESP2 flat list [k, v, k, v, ...] or a RESP3 dict, as a dict with str keys."""
    if isinstance(reply, dict):
        return {_text(k): v for k, v in reply.items()}
    return {_text(reply[i]): reply[i + 1] for i in range(0, len(reply) - 1, 2)}


def decode_vector(blob: bytes, data_type: str) -> np.ndarray:
    """A HASH vector blob (little-endian) as an array over the blob itself; BFLOAT16 is the
    top half of a float32."""
    if data_type == "BFLOAT16":
        halves = np.frombuffer(blob, dtype="<u2").astype(np.uint32) << 16
        return halves.view(np.float32)
    dtype = {"FLOAT32": "<f4", "FLOAT64": "<f8", "FLOAT16": "<f2"}[data_type]
    return np.frombuffer(blob, dtype=dtype)


def encode_vector(vector: list[float], data_type: str) -> bytes:
    """The blob FT.SEARCH KNN takes: `decode_vector` backwards."""
    if data_type == "BFLOAT16":
        return (np.asarray(vector, "<f4").view("<u4") >> 16).astype("<u2").tobytes()
    dtype = {"FLOAT32": "<f4", "FLOAT64": "<f8", "FLOAT16": "<f2"}[data_type]
    return np.asarray(vector, dtype=dtype).tobytes()


def number(text: str) -> int | float:
    """NUMERIC values: integers when integral, floats otherwise."""
    value = float(text)
    return int(value) if value.is_integer() and "e" not in text.lower() else value


class Attribute:
    """One attribute of the index as FT.INFO describes it."""

    def __init__(self, reply: Any) -> None:
        fields = _pairs(reply)
        self.identifier = _text(fields["identifier"])  # field name, or JSON path
        self.name = _text(fields["attribute"])  # the AS alias (or the identifier)
        self.type = _text(fields["type"])
        self.separator = _text(fields.get("SEPARATOR", ","))
        flags = {_text(v) for v in (reply.values() if isinstance(reply, dict) else reply)}
        self.case_sensitive = "CASESENSITIVE" in flags
        self.data_type = _text(fields.get("data_type", "FLOAT32")).upper()
        self.dim = int(fields["dim"]) if "dim" in fields else None
        self.metric = _text(fields.get("distance_metric", "")).upper()

    @property
    def json_key(self) -> list[str] | None:
        """The path of a simple JSON attribute ($.a.b -> [a, b]); None for anything fancier."""
        match = re.fullmatch(r"\$((?:\.[A-Za-z_][A-Za-z0-9_]*)+)", self.identifier)
        return match.group(1)[1:].split(".") if match else None


class Source:
    def __init__(self, config: dict[str, Any], batch_size: int) -> None:
        self.config = config
        self.index: str = config["index"]
        self.use_full_key = config["id"] == "key"
        self.index_overrides: dict[str, str | None] = config.get("payload_indexes", {})
        self.batch_size = batch_size
        self.query = "*"
        self._client: redis.Redis | None = None
        self._described = False
        self.on_json = False
        self.prefixes: list[str] = []
        self.filter_expression: str | None = None
        self.attributes: list[Attribute] = []
        self.num_docs = 0
        self.indexing_failures = 0
        self._sampled: list[Record] | None = None

    # --- connection -----------------------------------------------------------------

    @property
    def location(self) -> str:
        """The URL without its password."""
        return re.sub(r"//([^:@/]*):[^@/]*@", r"//\1:***@", self.config["url"])

    @property
    def label(self) -> str:
        return f"Redis at {self.location}"

    @property
    def client(self) -> redis.Redis:
        if self._client is None:
            # No retries of redis-py's own (10 by default, each as long as the timeout): the
            # engine's are bounded by retry.give_up_after, and resume from the saved cursor.
            options: dict[str, Any] = {"protocol": 2, "retry": Retry(NoBackoff(), 0)}
            for key in ("username", "password"):
                if key in self.config:
                    options[key] = self.config[key]
            options["socket_timeout"] = options["socket_connect_timeout"] = self.config["timeout"]
            self._client = redis.Redis.from_url(self.config["url"], **options)
        return self._client

    def explain(self, exc: Exception) -> str:
        """Connection and discovery failures in words, never with a password."""
        if isinstance(exc, redis.AuthenticationError):
            return "the server rejected the username or password"
        message = kit.first_line(exc)
        if isinstance(exc, redis.ResponseError):
            lowered = message.lower()
            if "unknown command" in lowered:
                return (
                    "the server has no search module (FT.* commands are unknown): "
                    "load RediSearch (Redis Stack, Redis 8 or valkey with redisearch.so)"
                )
            if "no such index" in lowered or "unknown index" in lowered:
                names = [_text(n) for n in self.client.execute_command("FT._LIST")]
                shown = kit.some_of(names, "no indexes")
                return f"index '{self.index}' does not exist (it has: {shown})"
        return message

    def _discover(self) -> None:
        if self._described:
            return
        info = _pairs(self.client.execute_command("FT.INFO", self.index))
        definition = _pairs(info["index_definition"])
        self.on_json = _text(definition["key_type"]) == "JSON"
        self.prefixes = [_text(p) for p in definition.get("prefixes", [])] or [""]
        expression = definition.get("filter")
        self.filter_expression = _text(expression) if expression else None
        self.attributes = [Attribute(a) for a in info["attributes"]]
        self.num_docs = int(info["num_docs"])
        self.indexing_failures = int(info.get("hash_indexing_failures", 0))
        self._described = True

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    # --- contract -------------------------------------------------------------------

    @property
    def vector_attributes(self) -> list[Attribute]:
        return [a for a in self.attributes if a.type == "VECTOR"]

    def describe(self) -> SourceInfo:
        self._discover()
        vectors = [
            VectorField(a.name, "dense", a.dim, DISTANCES.get(a.metric))
            for a in self.vector_attributes
        ]
        return SourceInfo(
            count=self.num_docs,
            vectors=vectors,
            # Keys as they land: JSON attributes under their path (`meta.cat`), not their alias.
            payload_fields=kit.payload_fields(
                (r.payload for r in self._sample()),
                *(self._payload_key(a) for a in self.attributes if a.type != "VECTOR"),
            ),
            payload_indexes=self._payload_indexes(),
            details={
                "location": self.location,
                "index": self.index,
                "documents": "JSON" if self.on_json else "HASH",
                "prefixes": self.prefixes,
                "index_filter": self.filter_expression,
                "query": self.query,
                # Keys under the prefixes the index refused (e.g. a malformed vector): not read.
                "indexing_failures": self.indexing_failures,
                "reading": "SCAN + FT.SEARCH INKEYS (indexed keys only) + pipelined "
                + ("JSON.GET" if self.on_json else "HGETALL"),
            },
            duplicate_ids_advice=self._duplicate_ids_advice(),
        )

    def _duplicate_ids_advice(self) -> str | None:
        """Keys of two prefixes that differ only in the prefix become one ID: keeping the
        whole key keeps both documents, where on_duplicate: last_wins would drop one."""
        if self.use_full_key or len(self.prefixes) < 2:
            return None
        first, second = self.prefixes[:2]
        return (
            f"the index has several key prefixes ({', '.join(map(repr, self.prefixes))}) and "
            f"IDs are keys without them, so '{first}1' and '{second}1' are one ID: set "
            "source.id: key to keep every document under its whole key "
            "(on_duplicate: last_wins would drop all but one of them)"
        )

    def push_down(self, filter: dict[str, Any] | None) -> dict[str, Any] | None:
        if not filter:
            return None
        self._discover()
        attributes = {a.name: a for a in self.attributes}
        pushed, residual = kit.split_filter(filter, query_dialect(attributes, self.on_json))
        if pushed is not None:
            self.query = pushed
        return residual

    def search(self, vector_name: str, vector: list[float], k: int) -> list[Any]:
        """Record IDs of the k nearest documents the job reads: FT.SEARCH KNN, within the
        pushed-down query (for verify's search agreement)."""
        attribute = next(a for a in self.vector_attributes if a.name == vector_name)
        scope = "*" if self.query == "*" else f"({self.query})"
        reply = self.client.execute_command(
            "FT.SEARCH", self.index, f"{scope}=>[KNN {k} @{attribute.name} $vector]",
            "PARAMS", 2, "vector", encode_vector(vector, attribute.data_type),
            "NOCONTENT", "LIMIT", 0, k, "DIALECT", 2,
        )  # fmt: skip
        ids = []
        for key in reply[1:]:
            name = key.decode(errors="backslashreplace")
            prefix = next((p for p in self.prefixes if name.startswith(p)), "")
            ids.append(name if self.use_full_key else name[len(prefix) :])
        return ids

    def partitions(self, n: int) -> list[Partition]:
        n = max(1, n)
        return [Partition(f"{i:04d}", {"bucket": i, "buckets": n}) for i in range(n)]

    def read(self, partition: Partition, cursor: Any) -> Iterator[Page]:
        """Pages of one bucket; the cursor is (prefix number, SCAN cursor after the page, the
        server process that cursor belongs to)."""
        self._discover()
        bucket, buckets = partition.spec["bucket"], partition.spec["buckets"]
        position = cursor or {"prefix": 0, "scan": 0}
        prefix_number, scan, run = position["prefix"], position["scan"], position.get("run")
        while prefix_number < len(self.prefixes):
            prefix = self.prefixes[prefix_number]
            pattern = _glob_escape(prefix) + "*"
            keys: list[bytes] = []
            while True:
                # Each bucket keeps 1/buckets of what SCAN returns: ask for that much more.
                count = max(SCAN_COUNT, self.batch_size * buckets)
                pipeline = self.client.pipeline(transaction=False)
                pipeline.info("server")
                pipeline.scan(scan, match=pattern, count=count)
                # Pipelined: the SCAN ran on the server process the INFO names, even when
                # redis-py reconnected on its own to a restarted server.
                server, (next_scan, found) = pipeline.execute()
                if scan != 0 and run is not None and server["run_id"] != run:
                    raise CursorLost(
                        "the Redis server restarted, and a SCAN cursor means nothing to "
                        "another server process"
                    )
                run, scan = server["run_id"], next_scan
                keys.extend(k for k in found if in_bucket(k, bucket, buckets))
                if scan == 0 or len(keys) >= self.batch_size:
                    break
            held = self._held(keys)
            records = self._fetch(held, prefix)
            if scan == 0:
                prefix_number += 1
            yield Page(
                records,
                {"prefix": prefix_number, "scan": scan, "run": run},
                len(keys) - len(held),
                matrices=kit.page_matrices(records),
            )

    # --- reading --------------------------------------------------------------------

    def _held(self, keys: list[bytes]) -> list[bytes]:
        """The keys the index holds (and the pushed-down query selects), in scan order.

        One pipelined round trip of FT.SEARCH calls, each within the server's default
        10,000-result cap (MAXSEARCHRESULTS).
        """
        pipeline = self.client.pipeline(transaction=False)
        for start in range(0, len(keys), INKEYS_CHUNK):
            chunk = keys[start : start + INKEYS_CHUNK]
            pipeline.execute_command(
                "FT.SEARCH", self.index, self.query, "INKEYS", len(chunk), *chunk,
                "NOCONTENT", "LIMIT", 0, len(chunk), "DIALECT", 2,
            )  # fmt: skip
        held = {key for reply in pipeline.execute() for key in reply[1:]}
        return [k for k in keys if k in held]

    def _fetch(self, keys: list[bytes], prefix: str) -> list[Record]:
        pipeline = self.client.pipeline(transaction=False)
        for key in keys:
            if self.on_json:
                pipeline.execute_command("JSON.GET", key, "$")
            else:
                pipeline.hgetall(key)
        documents = pipeline.execute()
        return [
            self._record(key, document, prefix)
            for key, document in zip(keys, documents, strict=True)
            if document  # deleted since the scan
        ]

    def _record(self, key: bytes, document: Any, prefix: str) -> Record:
        name = key.decode(errors="backslashreplace")
        record_id = name if self.use_full_key else name[len(prefix) :]
        try:
            if self.on_json:
                return self._json_record(record_id, json.loads(document)[0])
            return self._hash_record(record_id, document)
        except UnicodeDecodeError:
            return Record(
                record_id, {}, {}, invalid=f"key '{name}' holds a value that is not UTF-8"
            )
        except ValueError as exc:
            return Record(record_id, {}, {}, invalid=f"key '{name}': {exc}")

    def _hash_record(self, record_id: str, fields: dict[bytes, bytes]) -> Record:
        by_name = {a.identifier: a for a in self.attributes}
        vectors: dict[str, Any] = {}
        payload: dict[str, Any] = {}
        for raw_name, raw_value in fields.items():
            name = raw_name.decode()
            attribute = by_name.get(name)
            if attribute is not None and attribute.type == "VECTOR":
                vectors[attribute.name] = decode_vector(raw_value, attribute.data_type)
                continue
            text = raw_value.decode()
            if attribute is None:
                payload[name] = text
            elif attribute.type == "NUMERIC":
                payload[attribute.name] = number(text)
            elif attribute.type == "TAG":
                tags = (t.strip() for t in text.split(attribute.separator))
                payload[attribute.name] = [t for t in tags if t]
            elif attribute.type == "GEO":
                lon, lat = text.split(",")
                payload[attribute.name] = {"lon": float(lon), "lat": float(lat)}
            else:
                payload[attribute.name] = text
        return Record(record_id, vectors, payload, skipped=not vectors)

    def _json_record(self, record_id: str, document: Any) -> Record:
        vectors: dict[str, Any] = {}
        for attribute in self.vector_attributes:
            path = attribute.json_key
            if path is None:
                continue
            parent = document
            for part in path[:-1]:
                parent = parent.get(part) if isinstance(parent, dict) else None
            if isinstance(parent, dict) and path[-1] in parent:
                vectors[attribute.name] = parent.pop(path[-1])
        payload = document if isinstance(document, dict) else {}
        return Record(record_id, vectors, payload, skipped=not vectors)

    def _payload_indexes(self) -> dict[str, str]:
        """TAG/NUMERIC/TEXT/GEO as Qdrant indexes on the payload key, then the job's overrides."""
        indexed = [a for a in self.attributes if a.type in INDEX_TYPES and self._payload_key(a)]
        integral = self._integral([a for a in indexed if a.type == "NUMERIC"])
        indexes: dict[str, str | None] = {
            a.name: "integer" if a.name in integral else INDEX_TYPES[a.type] for a in indexed
        }
        indexes.update(self.index_overrides)
        keys = {a.name: self._payload_key(a) or a.name for a in self.attributes}
        return {keys.get(n, n): s for n, s in indexes.items() if s is not None}

    def _payload_key(self, attribute: Attribute) -> str | None:
        """Where the attribute's value lands in the payload (a dotted path for JSON)."""
        if not self.on_json:
            return attribute.name
        path = attribute.json_key
        return ".".join(path) if path else None

    def _sample(self) -> list[Record]:
        """Some documents of the index, for what describe says of payloads."""
        if self._sampled is None:
            reply = self.client.execute_command(
                "FT.SEARCH", self.index, "*", "NOCONTENT", "LIMIT", 0, kit.SAMPLE_RECORDS
            )
            self._sampled = self._fetch(reply[1:], "")
        return self._sampled

    def _integral(self, numeric: list[Attribute]) -> set[str]:
        """NUMERIC attributes whose sampled values are all integral."""
        if not numeric:
            return set()
        records = self._sample()
        integral = set()
        for attribute in numeric:
            path = (self._payload_key(attribute) or attribute.name).split(".")
            values = [_at(r.payload, path) for r in records]
            if all(isinstance(v, int) for v in values if v is not None):
                integral.add(attribute.name)
        return integral


def in_bucket(key: bytes, bucket: int, buckets: int) -> bool:
    """Partition arithmetic: a key belongs to one of `buckets` by CRC32 (stable across runs)."""
    return zlib.crc32(key) % buckets == bucket


def _at(payload: Any, path: list[str]) -> Any:
    for part in path:
        payload = payload.get(part) if isinstance(payload, dict) else None
    return payload


def _glob_escape(prefix: str) -> str:
    """A prefix as a literal SCAN MATCH pattern."""
    return re.sub(r"([*?\\[\]])", r"\\\1", prefix)


# --- filter pushdown ------------------------------------------------------------------
#
# Pushed down only where the FT query selects exactly what Qdrant's filter selects:
# - `range` on a NUMERIC attribute of a HASH index: the payload holds the one number the
#   index holds. (JSON attributes may hold arrays and other types: client-side.)
# - `match value`/`match any` of strings on a CASESENSITIVE TAG attribute of a HASH index:
#   the payload is the list of tags the index holds, and Qdrant matches any element.
#   Without CASESENSITIVE, RediSearch folds case and Qdrant does not: client-side.
# - `must_not` of those is the exact complement (`-(...)`), missing fields included.
# Everything else (TEXT, GEO, nested filters, min_should, JSON indexes) stays client-side.


def query_dialect(attributes: dict[str, Attribute], on_json: bool) -> kit.FilterDialect[str]:
    def condition(condition: dict[str, Any]) -> str | None:
        return None if on_json else translate(condition, attributes)

    def negation(condition_: dict[str, Any]) -> str | None:
        query = condition(condition_)
        return None if query is None else f"-({query})"

    return kit.FilterDialect(
        condition,
        all_of=" ".join,
        any_of=lambda alternatives: "(" + " | ".join(f"({q})" for q in alternatives) + ")",
        negation=negation,
        nested=False,
    )


def translate(condition: dict[str, Any], attributes: dict[str, Attribute]) -> str | None:
    """One Qdrant field condition as an FT query clause, or None when it is not exact."""
    attribute = attributes.get(condition.get("key", ""))
    if attribute is None or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", attribute.name):
        return None
    if attribute.type == "NUMERIC" and "range" in condition:
        bounds = condition["range"] or {}
        low = _bound(bounds, "gte", "gt", "-inf")
        high = _bound(bounds, "lte", "lt", "+inf")
        if low is None or high is None:
            return None
        return f"@{attribute.name}:[{low} {high}]"
    match = condition.get("match") or {}
    if attribute.type == "TAG" and attribute.case_sensitive:
        values = [match["value"]] if "value" in match else match.get("any")
        if not values or not all(isinstance(v, str) and v for v in values):
            return None
        if any(attribute.separator in v or v != v.strip() for v in values):
            return None
        return f"@{attribute.name}:{{{' | '.join(_tag_escape(v) for v in values)}}}"
    return None


def _bound(bounds: dict[str, Any], inclusive: str, exclusive: str, open_end: str) -> str | None:
    """One end of a NUMERIC range; both inclusive and exclusive given: the tighter one."""
    value_in, value_ex = bounds.get(inclusive), bounds.get(exclusive)
    if value_in is None and value_ex is None:
        return open_end
    for value in (value_in, value_ex):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            return None
    if value_in is not None and value_ex is not None:
        return None  # rare; left to the client rather than picking the tighter bound here
    if value_in is not None:
        return repr(float(value_in))
    return f"({float(value_ex)!r}" if value_ex is not None else open_end


def _tag_escape(value: str) -> str:
    return re.sub(r"([^A-Za-z0-9_])", r"\\\1", value)
