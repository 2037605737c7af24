"""Elasticsearch and OpenSearch: one index (or alias, or pattern) read through a point in time.

Reading: one point-in-time (PIT) is opened when the job first describes the index, and
every partition reads it, so a run sees one view of the index however it changes
meanwhile. Pages are `search_after` on the PIT's tiebreaker (`_shard_doc`; OpenSearch
before 3.3 has none, so `_index` + `_id` there); partitions are sliced PIT searches
(`slice: {field: _seq_no, id, max}`): `_seq_no` rather than the default `_shard_doc`
slicing, because a document keeps its sequence number in a new PIT while its Lucene doc
id may not, so a partition read again through another PIT still holds the same documents.
The cursor is the PIT id and the sort values of the last hit: after a kill -9 the next run
reads on from there in the same view while the PIT lives (every search extends it by
`keep_alive`). A PIT that expired makes a partition with a cursor raise `CursorLost`: the
engine reads it again from its start, through a new PIT (shared by every partition of the
process that lost the same one).

Vectors: found in the mapping. Elasticsearch `dense_vector` (float, byte: float32 values;
bit: 0/1 values in a uint8 vector with Manhattan distance, which on 0/1 is the Hamming
distance Elasticsearch uses), `sparse_vector` (token -> weight; integer tokens are the
indices, any other token its CRC32), OpenSearch `knn_vector`. Index options (`int8_hnsw`,
`bbq`, OpenSearch's mode and compression) quantise the index only: the stored floats are
read. A vector left out of `_source` is read from doc values (`docvalue_fields`) where the
engine keeps them; a `sparse_vector` has none, and is refused in one line.

Payload: the rest of `_source`, objects and nested objects as they are; multi-fields
(`.keyword`) are not in `_source`, so not repeated.
"""

from __future__ import annotations

import contextlib
import fnmatch
import re
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from qmigrate.errors import SourceError, TransientError
from qmigrate.records import (
    DISTANCES,
    CursorLost,
    Page,
    Partition,
    Record,
    SourceInfo,
    SparseVector,
    VectorField,
)
from qmigrate.redaction import without_credentials
from qmigrate.sources import kit

# Elasticsearch `similarity` / OpenSearch `space_type` -> Qdrant distance. max_inner_product
# ranks as the inner product does (only its score is rescaled). OpenSearch's linf has no
# Qdrant distance: the job names one.
SIMILARITIES = {
    "cosine": "Cosine",
    "dot_product": "Dot",
    "max_inner_product": "Dot",
    "l2_norm": "Euclid",
    "l2": "Euclid",
    "innerproduct": "Dot",
    "cosinesimil": "Cosine",
    "l1": "Manhattan",
    "hamming": "Manhattan",
    "hammingbit": "Manhattan",
}
INTEGER_TYPES = {"long", "integer", "short", "byte", "unsigned_long"}
# Numbers whose indexed value is the JSON value (float and half_float round it, scaled_float
# scales it: a range there could differ from Qdrant's on the _source value).
EXACT_NUMBER_TYPES = INTEGER_TYPES | {"double"}
OBJECT_TYPES = {"object", "nested"}
PIT_LOST = ("search_context_missing_exception", "No search context found")


@dataclass
class VectorMapping:
    path: str  # dotted path in _source
    kind: str  # dense_vector, sparse_vector, knn_vector
    dims: int | None
    element: str  # float, byte, bit (binary for OpenSearch)
    similarity: str | None
    in_source: bool = True
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def sparse(self) -> bool:
        return self.kind == "sparse_vector"

    @property
    def bits(self) -> bool:
        return self.element in ("bit", "binary")


@dataclass
class FieldMapping:
    path: str
    type: str
    ignore_above: int | None = None
    normalizer: str | None = None
    keyword_subfield: str | None = None  # a text field's `.keyword`, usable for terms
    indexed: bool = True


class Source:
    flavour = "Elasticsearch"

    def __init__(self, config: dict[str, Any], batch_size: int) -> None:
        self.config = config
        self.index: str = config["index"]
        self.hosts: list[str] = [config["url"]] if "url" in config else list(config["hosts"])
        self.overrides: dict[str, dict[str, Any]] = config.get("vectors") or {}
        id_setting = config["id"]
        self.id_field: str | None = id_setting["field"] if isinstance(id_setting, dict) else None
        self.integer_ids: bool = config["integer_ids"]
        self.keep_alive: str = config["keep_alive"]
        self.timeout: float = config["timeout"]
        self.batch_size = batch_size
        self.query: dict[str, Any] | None = None  # the pushed-down filter
        self._client: Any = None
        self._mapping: tuple[list[VectorMapping], dict[str, FieldMapping], list[str]] | None = None
        self._version: tuple[int, ...] | None = None
        self._pit: str | None = None  # the run's PIT
        self._pit_in_partitions = False
        self._replacements: dict[str, str] = {}  # an expired PIT -> the one opened in its place
        self._lock = threading.Lock()
        self._exclude_vectors_flag = False

    # --- connection -----------------------------------------------------------------

    @property
    def label(self) -> str:
        where = ", ".join(without_credentials(h) for h in self.hosts)
        return f"{self.flavour} index {self.index} at {where}"

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = self._connect()
        return self._client

    def _connect(self) -> Any:
        from elasticsearch import Elasticsearch

        options: dict[str, Any] = {
            "request_timeout": self.timeout,
            "max_retries": 0,  # the engine retries, from the saved cursor
            "retry_on_timeout": False,
        }
        if "api_key" in self.config:
            options["api_key"] = self.config["api_key"]
        if "username" in self.config:
            options["basic_auth"] = (self.config["username"], self.config.get("password", ""))
        if "token" in self.config:
            options["bearer_auth"] = self.config["token"]
        if "ca_certs" in self.config:
            options["ca_certs"] = self.config["ca_certs"]
        options["verify_certs"] = self.config["verify_certs"]
        return Elasticsearch(self.hosts, **options)

    def close(self) -> None:
        if self._client is not None:
            if self._pit is not None and not self._pit_in_partitions:
                self._close_pit(self._pit)  # plan's PIT: no run will read it
            self._client.close()
            self._client = None
        self._pit = None

    def explain(self, exc: Exception) -> str:
        status = getattr(exc, "status_code", None) or getattr(exc, "status", None)
        if status == 401:
            return "the server rejected the credentials (401): check username/password, api_key or token"
        if status == 403:
            return f"the credentials may not read index {self.index} (403): {_reason(exc)}"
        if _error_type(exc) == "index_not_found_exception":
            return f"index {self.index} does not exist ({self._existing_indices()})"
        if type(exc).__name__ in ("ConnectionError", "ConnectionTimeout"):
            return f"cannot reach {', '.join(without_credentials(h) for h in self.hosts)}: {_reason(exc)}"
        return _reason(exc)

    def _existing_indices(self) -> str:
        try:
            names = [str(name) for name in self._get_indices("*")]
        except Exception:  # noqa: BLE001 - the listing only helps the message
            return "the indices could not be listed"
        shown = kit.some_of([n for n in names if not n.startswith(".")], "no indices")
        return f"it has: {shown}"

    # --- the two clients' calls -----------------------------------------------------

    def _get_mapping(self) -> dict[str, Any]:
        return dict(self.client.indices.get_mapping(index=self.index))

    def _get_indices(self, pattern: str) -> list[str]:
        return list(self.client.indices.get_alias(index=pattern))

    def _open_pit(self) -> str:
        reply = self.client.open_point_in_time(index=self.index, keep_alive=self.keep_alive)
        return str(reply["id"])

    def _close_pit(self, pit: str) -> None:
        with contextlib.suppress(Exception):  # an expired PIT is gone anyway
            self.client.close_point_in_time(id=pit)

    def _search(self, body: dict[str, Any]) -> dict[str, Any]:
        return dict(self.client.search(**body))

    def _server_version(self) -> tuple[int, ...]:
        try:
            nodes = self.client.nodes.info(node_id="_local", metric="_none")["nodes"]
            text = next(iter(nodes.values()))["version"]
        except Exception:  # noqa: BLE001 - a user without `monitor`: assume the oldest
            return (8, 0)
        return tuple(int(p) for p in re.findall(r"\d+", text)[:3])

    @property
    def version(self) -> tuple[int, ...]:
        if self._version is None:
            self._version = self._server_version()
        return self._version

    @property
    def tiebreaker(self) -> list[Any]:
        return ["_shard_doc"]

    @property
    def exclude_vectors_option(self) -> bool:
        """Elasticsearch 9.1+ may leave vectors out of `_source` unless asked not to."""
        return self.version >= (9, 1)

    # --- mapping --------------------------------------------------------------------

    def _discover(self) -> tuple[list[VectorMapping], dict[str, FieldMapping], list[str]]:
        if self._mapping is not None:
            return self._mapping
        mappings = self._get_mapping()
        if not mappings:
            raise SourceError(self.label, f"index {self.index} matches no index")
        vectors: dict[str, VectorMapping] = {}
        fields: dict[str, FieldMapping] = {}
        top_level: set[str] = set()
        for name, body in mappings.items():
            mapping = body.get("mappings") or {}
            source = mapping.get("_source") or {}
            excluded = [*source.get("excludes", [])]
            included = source.get("includes") or []
            enabled = source.get("enabled", True) and source.get("mode") != "synthetic"
            properties = mapping.get("properties") or {}
            top_level.update(properties)
            for path, prop in _walk(properties):
                kind = prop.get("type", "object")
                in_source = enabled and _kept(path, included, excluded)
                if kind in ("dense_vector", "sparse_vector", "knn_vector"):
                    found = self._vector_mapping(path, prop, in_source)
                    previous = vectors.get(path)
                    if previous is not None and (previous.dims, previous.element) != (
                        found.dims,
                        found.element,
                    ):
                        raise SourceError(
                            self.label,
                            f"vector field {path} differs between the indices {self.index} "
                            "matches: migrate them one at a time",
                        )
                    vectors[path] = found
                elif kind not in OBJECT_TYPES:
                    subfields = prop.get("fields") or {}
                    keyword = next(
                        (
                            f"{path}.{sub}"
                            for sub, p in subfields.items()
                            if p.get("type") == "keyword"
                            and not p.get("normalizer")
                            and p.get("ignore_above") is None
                        ),
                        None,
                    )
                    current = FieldMapping(
                        path,
                        kind,
                        prop.get("ignore_above"),
                        prop.get("normalizer"),
                        keyword,
                        prop.get("index", True) is not False,
                    )
                    if fields.get(path, current) != current:
                        current.type = "conflicting"
                    fields[path] = current
            del name
        for vector in vectors.values():
            # Elasticsearch returns a dense_vector's doc values; neither engine those of a
            # sparse_vector, and OpenSearch none of a knn_vector ("doesn't support sorting").
            if not vector.in_source and vector.kind != "dense_vector":
                raise SourceError(
                    self.label,
                    f"{vector.kind} field {vector.path} is left out of _source, and "
                    f"{self.flavour} returns no doc values for it: nothing can read it back "
                    "(include it in _source and reindex)",
                )
        self._mapping = (list(vectors.values()), fields, sorted(top_level))
        return self._mapping

    def _vector_mapping(self, path: str, prop: dict[str, Any], in_source: bool) -> VectorMapping:
        kind = prop["type"]
        if kind == "sparse_vector":
            return VectorMapping(path, kind, None, "float", None, in_source)
        if kind == "dense_vector":
            element = prop.get("element_type", "float")
            similarity = prop.get("similarity")
            if similarity is None and prop.get("index", True) is not False:
                similarity = "l2_norm" if element == "bit" else "cosine"
            options = prop.get("index_options") or {}
            details = {"index_options": options.get("type")} if options else {}
            return VectorMapping(
                path, kind, prop.get("dims"), element, similarity, in_source, details
            )
        method = prop.get("method") or {}
        space = prop.get("space_type") or method.get("space_type")
        element = prop.get("data_type", "float")
        if space is None:
            space = "hamming" if element == "binary" else "l2"
        details = {
            k: v
            for k, v in (
                ("engine", method.get("engine")),
                ("method", method.get("name")),
                ("mode", prop.get("mode")),
                ("compression", prop.get("compression_level")),
            )
            if v
        }
        dims = prop.get("dimension")
        return VectorMapping(path, kind, dims, element, space, in_source, details)

    def _vector_name(self, path: str) -> str:
        return str(self.overrides.get(path, {}).get("name", path))

    def _distance(self, vector: VectorMapping) -> str | None:
        override = self.overrides.get(vector.path, {}).get("distance")
        if override:
            return DISTANCES[override]
        if vector.bits:
            return "Manhattan"
        return SIMILARITIES.get(vector.similarity or "")

    def _vector_field(self, vector: VectorMapping) -> VectorField:
        name = self._vector_name(vector.path)
        if vector.sparse:
            return VectorField(name, "sparse")
        size = vector.dims
        options: dict[str, Any] = {}
        if vector.bits:
            size = vector.dims * (8 if vector.kind == "knn_vector" else 1) if vector.dims else None
            options["datatype"] = "uint8"
        return VectorField(name, "dense", size, self._distance(vector), options)

    # --- contract -------------------------------------------------------------------

    def push_down(self, filter: dict[str, Any] | None) -> dict[str, Any] | None:
        if not filter:
            return None
        _, fields, _ = self._discover()
        pushed, residual = kit.split_filter(filter, query_dialect(fields))
        self.query = pushed
        return residual

    def describe(self) -> SourceInfo:
        vectors, fields, top_level = self._discover()
        known = {v.path for v in vectors}
        for path in self.overrides:
            if path not in known:
                shown = kit.some_of(known, "none")
                raise SourceError(self.label, f"vectors.{path}: no such vector field ({shown})")
        if not vectors:
            raise SourceError(
                self.label,
                f"index {self.index} maps no dense_vector, sparse_vector or knn_vector field",
            )
        for vector in vectors:
            if not vector.sparse and self._distance(vector) is None:
                raise SourceError(
                    self.label,
                    f"vector field {vector.path} has similarity {vector.similarity}, which "
                    f"Qdrant has not: set vectors.{vector.path}.distance",
                )
        if self.id_field is not None and self.id_field not in fields:
            shown = kit.some_of(fields, "no fields")
            raise SourceError(self.label, f"id.field: no field {self.id_field} ({shown})")
        pit = self._run_pit()
        reply = self._search(
            {"pit": {"id": pit, "keep_alive": self.keep_alive}, "size": 0}
            | {"track_total_hits": True, "query": self.query or {"match_all": {}}}
        )
        count = int(reply["hits"]["total"]["value"])
        details: dict[str, Any] = {
            "index": self.index,
            "indices": sorted(self._get_mapping()),
            "vectors": ", ".join(_shown(v, self._distance(v)) for v in vectors),
            "reading": "a point in time (keep_alive "
            f"{self.keep_alive}), search_after on {', '.join(map(str, self.tiebreaker))}, "
            "partitions as slices on _seq_no",
        }
        if self.query is not None:
            details["query"] = self.query
        from_doc_values = [v.path for v in vectors if not v.in_source]
        if from_doc_values:
            details["doc_values"] = (
                f"{', '.join(from_doc_values)}: left out of _source, read from doc values"
            )
        sample = self._sample(pit)
        payload = kit.payload_fields(
            (r.payload for r in sample), *(n for n in top_level if n not in known)
        )
        return SourceInfo(
            count=count,
            vectors=[self._vector_field(v) for v in vectors],
            payload_fields=payload,
            payload_indexes={
                f.path: PAYLOAD_KINDS[f.type]
                for f in fields.values()
                if f.type in PAYLOAD_KINDS and "." not in f.path and f.indexed
            },
            details=details,
        )

    def resume_from(self, partitions: list[Partition]) -> None:
        """A resumed run reads (and counts) the PIT its partitions were made in."""
        if not partitions:
            return
        saved = partitions[0].spec["pit"]
        if self._pit is not None and self._pit != saved:
            self._close_pit(self._pit)
        # Expired: counted, and read from their starts, in the PIT opened in its place.
        self._pit, self._pit_in_partitions = self._live_pit(saved), True

    def partitions(self, n: int) -> list[Partition]:
        pit = self._run_pit()
        self._pit_in_partitions = True
        count = max(1, n)
        return [Partition(f"{i:04d}", {"pit": pit, "slice": i, "max": count}) for i in range(count)]

    def read(self, partition: Partition, cursor: Any) -> Iterator[Page]:
        spec = partition.spec
        if cursor is None:
            pit, after = self._live_pit(spec["pit"]), None
        else:
            pit, after = cursor["pit"], cursor["after"]
        vectors, _, _ = self._discover()
        body = self._page_body(spec)
        while True:
            request = body | {"pit": {"id": pit, "keep_alive": self.keep_alive}}
            if after is not None:
                request["search_after"] = after
            reply = self._searching(request, pit)
            hits = reply["hits"]["hits"]
            pit = str(reply.get("pit_id") or pit)
            if not hits:
                return
            after = hits[-1]["sort"]
            yield Page([self._record(hit, vectors) for hit in hits], {"pit": pit, "after": after})
            if len(hits) < self.batch_size:
                return

    def search(self, vector_name: str, vector: list[float], k: int) -> list[Any]:
        """IDs of the k nearest documents the job reads, by the engine's kNN query within
        the pushed-down filter (for verify's search agreement). Dense vectors only."""
        vectors, _, _ = self._discover()
        found = next(v for v in vectors if self._vector_name(v.path) == vector_name)
        if found.sparse or found.bits:
            return []
        reply = self._search(self._knn_body(found, vector, k))
        return [self._hit_id(hit) for hit in reply["hits"]["hits"]]

    # --- reading --------------------------------------------------------------------

    def _run_pit(self) -> str:
        if self._pit is None:
            self._pit = self._open_pit()
        return self._pit

    def _live_pit(self, pit: str) -> str:
        """The partition's PIT, or the one opened in place of it once it expired."""
        with self._lock:
            pit = self._replacements.get(pit, pit)
            try:
                self._search({"pit": {"id": pit, "keep_alive": self.keep_alive}, "size": 0})
            except Exception as exc:
                if not _pit_lost(exc):
                    raise
                fresh = self._open_pit()
                self._replacements[pit] = fresh
                return fresh
            return pit

    def _page_body(self, spec: dict[str, Any]) -> dict[str, Any]:
        vectors, _, _ = self._discover()
        body: dict[str, Any] = {
            "size": self.batch_size,
            "sort": self.tiebreaker,
            "track_total_hits": False,
            "query": self.query or {"match_all": {}},
        }
        if spec["max"] > 1:
            body["slice"] = {"field": "_seq_no", "id": spec["slice"], "max": spec["max"]}
        from_doc_values = [v.path for v in vectors if not v.in_source]
        if from_doc_values:
            body["docvalue_fields"] = from_doc_values
        if self.exclude_vectors_option:
            body["source"] = {"exclude_vectors": False}
        return body

    def _searching(self, request: dict[str, Any], pit: str) -> dict[str, Any]:
        try:
            reply = self._search(request)
        except Exception as exc:
            if _pit_lost(exc):
                raise CursorLost(f"the point in time expired ({_reason(exc)})") from exc
            if type(exc).__name__ in ("ConnectionError", "ConnectionTimeout"):
                raise TransientError(f"{type(exc).__name__}: {_reason(exc)}") from exc
            raise
        shards = reply.get("_shards") or {}
        if shards.get("failed"):
            reasons = [str(f.get("reason")) for f in shards.get("failures", [])]
            if any(marker in r for r in reasons for marker in PIT_LOST):
                raise CursorLost(f"the point in time expired on {shards['failed']} shards")
            raise TransientError(f"{shards['failed']} shards failed: {reasons[:1]}")
        return reply

    def _hit_id(self, hit: dict[str, Any]) -> Any:
        if self.id_field is not None:
            value = _get_path(hit.get("_source") or {}, self.id_field)
            if value is None:
                value = (hit.get("fields") or {}).get(self.id_field, [None])[0]
        else:
            value = hit["_id"]
        if self.integer_ids and isinstance(value, str) and _plain_integer(value):
            return int(value)
        return value

    def _record(self, hit: dict[str, Any], vectors: list[VectorMapping]) -> Record:
        source = hit.get("_source") or {}
        doc_values = hit.get("fields") or {}
        record_vectors: dict[str, Any] = {}
        invalid: str | None = None
        for vector in vectors:
            if vector.in_source:
                value = _pop_path(source, vector.path)
            else:
                values = doc_values.get(vector.path)
                value = values[0] if values and isinstance(values[0], list) else values
            if value is None or value == []:
                continue
            name = self._vector_name(vector.path)
            try:
                record_vectors[name] = _vector_value(vector, value)
            except ValueError as exc:
                invalid = f"vector {vector.path}: {exc}"
        record_id = self._hit_id(hit)
        return Record(record_id, record_vectors, source, origin=hit["_id"], invalid=invalid)

    def _sample(self, pit: str) -> list[Record]:
        vectors, _, _ = self._discover()
        body = self._page_body({"max": 1}) | {"size": kit.SAMPLE_RECORDS}
        reply = self._search(body | {"pit": {"id": pit, "keep_alive": self.keep_alive}})
        return [self._record(hit, vectors) for hit in reply["hits"]["hits"]]

    def _knn_body(self, vector: VectorMapping, values: list[float], k: int) -> dict[str, Any]:
        knn: dict[str, Any] = {
            "field": vector.path,
            "query_vector": values,
            "k": k,
            "num_candidates": max(100, k),
        }
        if self.query is not None:
            knn["filter"] = self.query
        return {"index": self.index, "knn": knn, "size": k, "source": False}


class OpenSearchSource(Source):
    """OpenSearch: the same reading through opensearch-py, with OpenSearch's PIT calls,
    `knn_vector` fields and its `knn` query."""

    flavour = "OpenSearch"

    def _connect(self) -> Any:
        from opensearchpy import OpenSearch

        options: dict[str, Any] = {"timeout": self.timeout, "max_retries": 0}
        headers = {}
        if "username" in self.config:
            options["http_auth"] = (self.config["username"], self.config.get("password", ""))
        if "api_key" in self.config:
            headers["Authorization"] = f"ApiKey {self.config['api_key']}"
        if "token" in self.config:
            headers["Authorization"] = f"Bearer {self.config['token']}"
        if headers:
            options["headers"] = headers
        if "ca_certs" in self.config:
            options["ca_certs"] = self.config["ca_certs"]
        options["verify_certs"] = self.config["verify_certs"]
        options["ssl_show_warn"] = False
        return OpenSearch(self.hosts, **options)

    def _open_pit(self) -> str:
        reply = self.client.create_pit(index=self.index, params={"keep_alive": self.keep_alive})
        return str(reply["pit_id"])

    def _close_pit(self, pit: str) -> None:
        with contextlib.suppress(Exception):  # an expired PIT is gone anyway
            self.client.delete_pit(body={"pit_id": [pit]})

    def _search(self, body: dict[str, Any]) -> dict[str, Any]:
        request = dict(body)
        index = request.pop("index", None)
        if "source" in request:
            request["_source"] = request.pop("source")
        return dict(self.client.search(body=request, index=index))

    @property
    def tiebreaker(self) -> list[Any]:
        if self.version >= (3, 3):
            return ["_shard_doc"]
        return [{"_index": "asc"}, {"_id": "asc"}]

    @property
    def exclude_vectors_option(self) -> bool:
        return False

    def _knn_body(self, vector: VectorMapping, values: list[float], k: int) -> dict[str, Any]:
        knn: dict[str, Any] = {"vector": values, "k": k}
        if self.query is not None:
            knn["filter"] = self.query
        return {"index": self.index, "query": {"knn": {vector.path: knn}}, "size": k}


# --- values ---------------------------------------------------------------------------


def _vector_value(vector: VectorMapping, value: Any) -> Any:
    if vector.sparse:
        if not isinstance(value, dict):
            raise ValueError(f"a sparse_vector is an object of token weights, not {value!r}")
        indices = [_token_index(str(token)) for token in value]
        if len(set(indices)) != len(indices):
            raise ValueError("two tokens have the same CRC32 index")
        return SparseVector(indices, [float(w) for w in value.values()])
    if vector.bits:
        packed = _bit_bytes(value)
        return np.unpackbits(packed).astype(np.float32)
    return np.asarray(value, dtype=np.float32)


def _bit_bytes(value: Any) -> np.ndarray:
    """A bit vector as Elasticsearch takes it: a hex string, or bytes as signed integers."""
    if isinstance(value, str):
        return np.frombuffer(bytes.fromhex(value), dtype=np.uint8)
    return np.asarray(value, dtype=np.int64).astype(np.int8).view(np.uint8)


def _plain_integer(text: str) -> bool:
    """ASCII digits without a leading zero ("007" stays a string: it is not the ID "7")."""
    return text.isascii() and text.isdigit() and (text == "0" or not text.startswith("0"))


def _token_index(token: str) -> int:
    """A sparse token's Qdrant index: the integer it spells, else its CRC32."""
    if _plain_integer(token) and int(token) < 2**32:
        return int(token)
    return zlib.crc32(token.encode())


def _walk(properties: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """(dotted path, mapping) of every field, objects' and nested objects' fields included."""
    for name, prop in properties.items():
        path = f"{prefix}{name}"
        yield path, prop
        if "properties" in prop:
            yield from _walk(prop["properties"], path + ".")


def _kept(path: str, includes: list[str], excludes: list[str]) -> bool:
    """Whether `_source` keeps `path`, by its mapping's includes and excludes (wildcards)."""
    parts = path.split(".")
    prefixes = [".".join(parts[: i + 1]) for i in range(len(parts))]
    if any(fnmatch.fnmatchcase(p, pattern) for p in prefixes for pattern in excludes):
        return False
    if not includes:
        return True
    return any(fnmatch.fnmatchcase(p, pattern) for p in prefixes for pattern in includes)


def _get_path(document: dict[str, Any], path: str) -> Any:
    if path in document:
        return document[path]
    head, _, rest = path.partition(".")
    inner = document.get(head)
    return _get_path(inner, rest) if rest and isinstance(inner, dict) else None


def _pop_path(document: dict[str, Any], path: str) -> Any:
    """Take a value out of `_source` (a dotted key, or the same path through objects)."""
    if path in document:
        return document.pop(path)
    head, _, rest = path.partition(".")
    inner = document.get(head)
    if not rest or not isinstance(inner, dict):
        return None
    value = _pop_path(inner, rest)
    if not inner:
        document.pop(head)
    return value


def _shown(vector: VectorMapping, distance: str | None) -> str:
    if vector.sparse:
        where = "" if vector.in_source else " (doc values)"
        return f"{vector.path} sparse_vector{where}"
    extra = "".join(f" {k}={v}" for k, v in vector.details.items())
    return f"{vector.path} {vector.kind}({vector.dims}, {vector.element}) {distance}{extra}"


def _error_body(exc: BaseException) -> dict[str, Any]:
    body = getattr(exc, "body", None) or getattr(exc, "info", None)
    return body if isinstance(body, dict) else {}


def _error_type(exc: BaseException) -> str | None:
    error = _error_body(exc).get("error")
    if isinstance(error, dict):
        causes = error.get("root_cause") or [error]
        return str(causes[0].get("type") or error.get("type"))
    return None


def _reason(exc: BaseException) -> str:
    error = _error_body(exc).get("error")
    if isinstance(error, dict):
        causes = error.get("root_cause") or [error]
        return str(causes[0].get("reason") or error.get("reason") or kit.first_line(exc))
    return kit.first_line(exc)


def _pit_lost(exc: BaseException) -> bool:
    text = f"{_error_type(exc)} {_reason(exc)} {exc}"
    return any(marker in text for marker in PIT_LOST)


PAYLOAD_KINDS = {
    "keyword": "keyword",
    "long": "integer",
    "integer": "integer",
    "short": "integer",
    "byte": "integer",
    "double": "float",
    "float": "float",
    "boolean": "bool",
    "date": "datetime",
    "geo_point": "geo",
    "text": "text",
}


# --- filter pushdown ------------------------------------------------------------------
#
# A condition is pushed where the query DSL selects exactly what Qdrant does: term(s) on
# keyword, boolean and integer fields (on a text field, its plain `.keyword` subfield); a
# range on integer and double fields, whose indexed values are the _source values (float
# and half_float round them). A value longer than a keyword's ignore_above was never
# indexed, so such a match stays client-side. Arrays match on any element, as in Qdrant,
# and must_not also selects documents without the field, as Qdrant's must_not does.

RANGE_WORDS = ("gt", "gte", "lt", "lte")


def query_dialect(fields: dict[str, FieldMapping]) -> kit.FilterDialect[dict[str, Any]]:
    def condition(c: dict[str, Any]) -> dict[str, Any] | None:
        return _condition(c, fields)

    def negation(c: dict[str, Any]) -> dict[str, Any] | None:
        pushed = _condition(c, fields)
        return None if pushed is None else {"bool": {"must_not": [pushed]}}

    return kit.FilterDialect(
        condition,
        all_of=lambda parts: {"bool": {"filter": parts}},
        any_of=lambda parts: {"bool": {"should": parts, "minimum_should_match": 1}},
        negation=negation,
    )


def _term_field(mapping: FieldMapping, values: list[Any]) -> str | None:
    """The field a term query on `values` selects exactly what Qdrant's match selects on."""
    if not values or not mapping.indexed:
        return None
    if all(isinstance(v, bool) for v in values):
        return mapping.path if mapping.type == "boolean" else None
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return mapping.path if mapping.type in INTEGER_TYPES else None
    if not all(isinstance(v, str) for v in values):
        return None
    if mapping.type == "keyword" and not mapping.normalizer:
        limit = mapping.ignore_above
        if limit is not None and any(len(v) > limit for v in values):
            return None
        return mapping.path
    if mapping.type == "text" and mapping.keyword_subfield:
        return mapping.keyword_subfield
    return None


def _condition(condition: dict[str, Any], fields: dict[str, FieldMapping]) -> dict[str, Any] | None:
    key = kit.plain_key(condition)
    mapping = fields.get(key) if key else None
    if mapping is None or mapping.type == "conflicting":
        return None
    match = condition.get("match")
    if isinstance(match, dict):
        if "value" in match:
            term = _term_field(mapping, [match["value"]])
            return None if term is None else {"term": {term: match["value"]}}
        if "any" in match and isinstance(match["any"], list):
            term = _term_field(mapping, match["any"])
            return None if term is None else {"terms": {term: match["any"]}}
        return None
    bounds = condition.get("range")
    if isinstance(bounds, dict) and mapping.indexed and mapping.type in EXACT_NUMBER_TYPES:
        present = {k: v for k, v in bounds.items() if v is not None}
        if not present or set(present) - set(RANGE_WORDS):
            return None
        if not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in present.values()
        ):
            return None
        return {"range": {mapping.path: present}}
    return None
