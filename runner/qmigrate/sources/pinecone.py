"""Pinecone indexes, read through the official SDK (10.x).

Serverless indexes are enumerated with list (IDs in bytewise order, at most 100 a page)
and read with fetch. Pod-based indexes cannot list, so their IDs come from `ids_file`.
fetch_by_metadata is the one read API that takes a filter: the parts of the job's filter
it can express go there, the rest is evaluated by the engine.

IDs: when one namespace is read, a record keeps its Pinecone ID and the engine's ID policy
applies. When namespaces can meet in one collection (several are read, or
`namespace_field` is set), one ID may exist in two of them, so the record ID becomes
`<namespace>/<id>` (the namespace percent-encoded, which keeps the pair unambiguous) and
is hashed into a UUIDv5 like any other string.

Partitions: namespaces, and inside a large namespace runs of the characters that follow
its IDs' shared prefix, found by probing list with each of them (vector IDs are ASCII
without NUL: code points 1-127). They hold every ID present when the job is planned; as
with any source written to during a migration, later writes may be missed.

Retries: the SDK retries a 429 or 5xx three times itself (honouring Retry-After; it has no
switch for that on the data plane). What it gives up on is raised unchanged to the engine,
which backs off and re-opens the partition from its last cursor; `rate_limit` paces the
requests this source makes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

from pinecone import (
    ApiError,
    ForbiddenError,
    NotFoundError,
    Pinecone,
    PineconeError,
    PineconeValueError,
    UnauthorizedError,
)
from pinecone.models.indexes.deployment import PodDeployment
from pinecone.models.indexes.schema import DenseVectorField, SparseVectorField

from qmigrate.errors import QmigrateError, SourceError
from qmigrate.line_ranges import file_identity, lines_in_range
from qmigrate.records import Page, Partition, Record, SourceInfo, SparseVector, VectorField
from qmigrate.retry import is_transient
from qmigrate.sources import kit

T = TypeVar("T")

DENSE = "values"
SPARSE = "sparse_values"
METRICS = {"cosine": "Cosine", "dotproduct": "Dot", "euclidean": "Euclid"}
DEFAULT_NAMESPACE = "__default__"
LIST_LIMIT = 100  # the most IDs one list page holds
LAST_CHAR = 127  # vector IDs are ASCII without NUL
MAX_PROBE_DEPTH = 12  # longest shared ID prefix looked through
OVERSPLIT = 4  # partitions per worker, for balance
PROBE_THREADS = 8  # probes are one small request each; a few at once keep planning short
RESERVED_FIELDS = {"_values", "_sparse_values"}  # how 2026-07 names a vector index's fields


class Source:
    def __init__(self, config: dict[str, Any], batch_size: int) -> None:
        self.config = config
        self.index_name: str | None = config.get("index")
        self.namespace_field: str | None = config.get("namespace_field")
        self.ids_file = Path(config["ids_file"]) if "ids_file" in config else None
        self.page_size = min(LIST_LIMIT, batch_size)
        self.batch_size = batch_size
        self.throttle = kit.Throttle(config.get("rate_limit"))
        where = f"index '{self.index_name}'" if self.index_name else f"host {config['host']}"
        self.label = f"Pinecone {where}"
        self.counts: dict[str, int] = {}  # namespaces to read -> vector count
        self.metadata_filter: dict[str, Any] | None = None
        self.distance: str | None = None
        self._client: Pinecone | None = None
        self._index: Any = None
        self._model: Any = None

    # --- connections ----------------------------------------------------------------

    def _call(self, call: Callable[..., T], **arguments: Any) -> T:
        self.throttle.wait()
        return call(**arguments)

    def explain(self, exc: Exception) -> str:
        return _explain(exc) if isinstance(exc, PineconeError) else kit.first_line(exc)

    def _read_call(self, call: Callable[..., T], **arguments: Any) -> T:
        """A request while reading: transient failures reach the engine as raised, to retry."""
        try:
            return self._call(call, **arguments)
        except PineconeError as exc:
            if is_transient(exc):
                raise
            raise SourceError(self.label, _explain(exc)) from None

    @property
    def client(self) -> Pinecone:
        if self._client is None:
            try:
                self._client = Pinecone(
                    api_key=self.config["api_key"],
                    host=self.config.get("controller_host"),
                    timeout=self.config["timeout"],
                    source_tag="qmigrate",
                )
            except PineconeValueError as exc:
                raise QmigrateError(f"source.api_key: {exc.message}") from None
        return self._client

    def _describe_index(self) -> Any:
        """The control plane's description: host, schema (dimension, metric), deployment."""
        if self._model is None:
            name = self.index_name or ""
            plane = f"source Pinecone control plane {self.client.config.host}"
            try:
                self._model = self._call(self.client.indexes.describe, name=name)
            except NotFoundError:
                # The listing pages lazily: iterate inside the check. A 404 here means the
                # host is no control plane at all.
                try:
                    names = self._call(lambda: [i.name for i in self.client.indexes.list()])
                except PineconeError as exc:
                    raise QmigrateError(
                        f"{plane} (is controller_host right?): {_explain(exc)}"
                    ) from None
                raise SourceError(
                    self.label,
                    f"index '{name}' does not exist at {self.client.config.host} "
                    f"(the project has: {kit.some_of(names, 'no indexes')})",
                ) from None
            except PineconeError as exc:
                raise QmigrateError(f"{plane}: {_explain(exc)}") from None
        return self._model

    @property
    def index(self) -> Any:
        if self._index is None:
            host = self.config.get("host") or self._describe_index().host
            self._index = self.client.index(host=host)
        return self._index

    def close(self) -> None:
        if self._index is not None:
            self._index.close()
        if self._client is not None:
            self._client.close()

    # --- describe -------------------------------------------------------------------

    def describe(self) -> SourceInfo:
        model = self._describe_index() if self.index_name else None
        stats = self._call(self.index.describe_index_stats)
        pod = model is not None and isinstance(model.deployment, PodDeployment)
        if pod and self.ids_file is None:
            raise SourceError(
                self.label,
                "a pod-based index, and Pinecone lists the IDs of serverless "
                "indexes only: give the IDs in a file, one per line, as source.ids_file",
            )
        vectors = _vector_fields(model, stats, self.label)
        self.distance = vectors[0].distance  # how search scores merge across namespaces
        self.counts = self._namespaces(stats)
        sample = self._sample()
        payload_fields = kit.payload_fields((v.metadata for v in sample), self.namespace_field)
        deployment = "unknown (connected by host)" if model is None else "serverless"
        return SourceInfo(
            count=sum(self.counts.values()),
            vectors=vectors,
            payload_fields=payload_fields,
            details={
                "index": self.index_name,
                "host": self.index.host,
                "deployment": "pod" if pod else deployment,
                "namespaces": self.counts,
                "enumeration": f"ids_file {self.ids_file}" if self.ids_file else "list",
                "ids": "<namespace>/<id>" if self._scoped() else "as stored",
            },
        )

    def _namespaces(self, stats: Any) -> dict[str, int]:
        present = {_canonical(ns): s.vector_count for ns, s in sorted(stats.namespaces.items())}
        wanted = self.config.get("namespaces")
        if wanted is None:
            return present
        names = [_canonical(n) for n in ([wanted] if isinstance(wanted, str) else wanted)]
        missing = [n for n in names if n not in present]
        if missing:
            raise QmigrateError(
                f"source.namespaces: {self.label} has no vectors in namespace "
                f"{', '.join(repr(n) for n in missing)} (it has: {', '.join(present) or 'none'})"
            )
        return {n: present[n] for n in names}

    def _sample(self) -> list[Any]:
        """The first page of the first namespace; on a host of unknown kind it checks list."""
        namespace = next(iter(self.counts), None)
        if namespace is None:
            return []
        try:
            if self.ids_file is not None:
                pages = self._lines(namespace, [0, self._ids_file_size()], None)
                return next(pages, ([], None))[0]
            page = self._call(
                self.index.list_paginated, limit=self.page_size, namespace=_wire(namespace)
            )
            return (
                self._fetch(namespace, [item.id for item in page.vectors]) if page.vectors else []
            )
        except ApiError as exc:
            if is_transient(exc) or isinstance(exc, (UnauthorizedError, ForbiddenError)):
                raise
            raise SourceError(
                self.label,
                f"cannot list its IDs ({_explain(exc)}); pod-based "
                "indexes cannot: give the IDs in a file, one per line, as source.ids_file",
            ) from None

    def _ids_file_size(self) -> int:
        assert self.ids_file is not None
        try:
            return self.ids_file.stat().st_size
        except OSError as exc:
            raise QmigrateError(f"source.ids_file: {self.ids_file}: {exc.strerror}") from None

    def resume_identity(self) -> dict[str, Any]:
        """An ids_file is read by byte offsets: a changed file invalidates its cursors."""
        if self.ids_file is None:
            return {}
        return file_identity(self.ids_file)

    def _scoped(self) -> bool:
        return self.namespace_field is not None or len(self.counts) > 1

    # --- filter ---------------------------------------------------------------------

    def push_down(self, filter: dict[str, Any] | None) -> dict[str, Any] | None:
        """fetch_by_metadata takes a filter on serverless indexes; list and fetch take none."""
        if not filter or self.ids_file is not None:
            return filter
        self.metadata_filter, residual = kit.split_filter(filter, METADATA_FILTER)
        return residual

    # --- search (verify) -------------------------------------------------------------

    def search(self, vector_name: str, vector: list[float], k: int) -> list[Any]:
        """Record IDs of the k nearest vectors over the namespaces read, with the pushed-down
        metadata filter; scores merge across namespaces (euclidean: smaller is closer)."""
        matches: list[tuple[float, str]] = []
        for ns in self.counts:
            response = self._read_call(
                self.index.query,
                vector=vector,
                top_k=k,
                namespace=_wire(ns),
                filter=self.metadata_filter,
            )
            scoped = self._scoped()
            matches += [
                (m.score, f"{quote(ns, safe='')}/{m.id}" if scoped else m.id)
                for m in response.matches
            ]
        matches.sort(key=lambda match: match[0], reverse=self.distance != "Euclid")
        return [record_id for _, record_id in matches[:k]]

    # --- partitions -----------------------------------------------------------------

    def partitions(self, n: int) -> list[Partition]:
        if self.ids_file is not None:
            size = self._ids_file_size()
            ranges = max(1, math.ceil(n / max(1, len(self.counts))))
            units: list[tuple[int, dict[str, Any]]] = [
                (count, {"namespace": ns, "lines": [start, end]})
                for ns, count in self.counts.items()
                for start, end in kit.even_ranges(0, size, ranges)
            ]
            groups = kit.balance(units, n)
        elif self.metadata_filter is not None:
            units = [
                (c, {"namespace": ns, "fetch_by_metadata": True}) for ns, c in self.counts.items()
            ]
            groups = kit.balance(units, n)
        else:
            groups = self._list_groups(n)
        spec_scope = self._scoped()
        return [
            Partition(f"{i:04d}", {"streams": streams, "scoped": spec_scope})
            for i, streams in enumerate(groups or [[]])
        ]

    def _list_groups(self, n: int) -> list[list[dict[str, Any]]]:
        """Whole namespaces when there are enough of them, else large ones split by ID.

        Up to OVERSPLIT times more partitions than workers: the engine's pool hands the next
        one to whichever worker is free, which evens out prefixes of unequal size.
        """
        slots = OVERSPLIT * n
        if len(self.counts) >= n:
            units = [(c, {"namespace": ns, "list": ""}) for ns, c in self.counts.items()]
            return kit.balance(units, slots)
        total = sum(self.counts.values()) or 1
        groups: list[list[dict[str, Any]]] = []
        for ns, count in self.counts.items():
            share = min(math.ceil(count / self.page_size), round(slots * count / total))
            groups += self._split(ns, share) if share > 1 else [[{"namespace": ns, "list": ""}]]
        return groups

    def _split(self, ns: str, k: int) -> list[list[dict[str, Any]]]:
        """At most k groups of ID prefixes that together hold every ID of `ns` as of now.

        IDs often share a prefix ("doc-", "user_"): while a single character follows it, the
        prefix grows, and the one ID that may equal it is fetched by itself. Lists come in
        bytewise order, so characters below the smallest ID's need no probe.
        """
        first = self._call(self.index.list_paginated, limit=1, namespace=_wire(ns))
        if not first.vectors:
            return [[{"namespace": ns, "list": ""}]]
        base, exact = "", []
        pages = self._probe(ns, base, ord(first.vectors[0].id[0]))
        while len(pages) == 1 and len(base) < MAX_PROBE_DEPTH:
            ((code, ids),) = pages.items()
            base += chr(code)
            exact.append(base)
            longer = [i for i in ids if i != base]  # sorted: the first is the smallest
            pages = self._probe(ns, base, ord(longer[0][len(base)])) if longer else {}
        groups: list[list[dict[str, Any]]] = [
            [{"namespace": ns, "list": base + chr(code)} for code in codes]
            for codes in _runs({code: len(ids) for code, ids in pages.items()}, k)
        ] or [[]]
        if exact:
            groups[0].insert(0, {"namespace": ns, "ids": exact})
        return groups

    def _probe(self, ns: str, base: str, lowest: int) -> dict[int, list[str]]:
        """The first page of IDs under `base` + each character from `lowest` on, where any."""

        def page(code: int) -> list[str]:
            response = self._call(
                self.index.list_paginated,
                prefix=base + chr(code),
                limit=LIST_LIMIT,
                namespace=_wire(ns),
            )
            return [item.id for item in response.vectors]

        codes = range(lowest, LAST_CHAR + 1)
        with ThreadPoolExecutor(PROBE_THREADS, thread_name_prefix="pinecone-probe") as pool:
            found = dict(zip(codes, pool.map(page, codes), strict=True))
        return {code: ids for code, ids in found.items() if ids}

    # --- reading --------------------------------------------------------------------

    def read(self, partition: Partition, cursor: Any) -> Iterator[Page]:
        """A partition is a list of tasks; the cursor is [task number, position in it].

        Small prefixes hold few IDs each: their records are gathered into pages of about a
        batch, so the target gets full batches and the checkpoint fewer writes.
        """
        tasks = list(_tasks(partition.spec["streams"]))
        scoped = partition.spec["scoped"]
        start, first_position = cursor if cursor is not None else (0, None)
        readers: dict[str, Callable[..., Iterator[tuple[list[Any], Any]]]] = {
            "list": self._list,
            "ids": self._ids,
            "lines": self._lines,
            "meta": self._meta,
        }

        def pieces() -> Iterator[tuple[list[Record], list[Any]]]:
            position = first_position
            for number in range(start, len(tasks)):
                kind, ns, argument = tasks[number]
                for vectors, after in readers[kind](ns, argument, position):
                    reached = [number, after] if after is not None else [number + 1, None]
                    yield [self._record(ns, v, scoped) for v in vectors], reached
                position = None

        for records, reached in kit.gather(pieces(), self.page_size):
            yield Page(records, reached)

    def _list(self, ns: str, prefix: str, token: str | None) -> Iterator[tuple[list[Any], Any]]:
        while True:
            page = self._read_call(
                self.index.list_paginated,
                prefix=prefix or None,
                limit=self.page_size,
                pagination_token=token,
                namespace=_wire(ns),
            )
            token = page.pagination.next if page.pagination else None
            ids = [item.id for item in page.vectors]
            if ids:
                yield self._fetch(ns, ids), token
            if token is None:
                return

    def _ids(self, ns: str, ids: list[str], done: int | None) -> Iterator[tuple[list[Any], Any]]:
        for start in range(done or 0, len(ids), self.page_size):
            end = start + self.page_size
            yield self._fetch(ns, ids[start:end]), end if end < len(ids) else None

    def _lines(
        self, ns: str, byte_range: list[int], offset: int | None
    ) -> Iterator[tuple[list[Any], Any]]:
        """IDs on the lines that start in [start, end) of the ids file."""
        assert self.ids_file is not None
        start, end = byte_range

        def ids() -> Iterator[tuple[list[str], int]]:
            for line, position in lines_in_range(ids_file, start, end, offset):
                vector_id = line.rstrip(b"\r\n").decode("ascii", errors="replace")
                yield ([vector_id] if vector_id else []), position

        ids_file = self.ids_file
        for batch, position in kit.gather(ids(), self.page_size):
            yield self._fetch(ns, batch), position

    def _meta(self, ns: str, _: Any, token: str | None) -> Iterator[tuple[list[Any], Any]]:
        while True:
            response = self._read_call(
                self.index.fetch_by_metadata,
                filter=self.metadata_filter,
                namespace=_wire(ns),
                limit=self.batch_size,
                pagination_token=token,
            )
            token = response.pagination.next if response.pagination else None
            if response.vectors:
                yield list(response.vectors.values()), token
            if token is None:
                return

    def _fetch(self, ns: str, ids: list[str]) -> list[Any]:
        response = self._read_call(self.index.fetch, ids=ids, namespace=_wire(ns))
        return [response.vectors[i] for i in ids if i in response.vectors]

    def _record(self, ns: str, vector: Any, scoped: bool) -> Record:
        vectors: dict[str, Any] = {}
        if vector.values:
            vectors[DENSE] = vector.values
        if vector.sparse_values is not None:
            sparse = vector.sparse_values
            vectors[SPARSE] = SparseVector(sparse.indices, sparse.values)
        payload = dict(vector.metadata or {})
        if self.namespace_field is not None:
            if self.namespace_field in payload:
                raise QmigrateError(
                    f"source.namespace_field: record {vector.id!r} in namespace {ns!r} already "
                    f"has a metadata field '{self.namespace_field}'; choose another name"
                )
            payload[self.namespace_field] = ns
        record_id = f"{quote(ns, safe='')}/{vector.id}" if scoped else vector.id
        return Record(record_id, vectors, payload)


# --- helpers ----------------------------------------------------------------------------


def _canonical(namespace: str) -> str:
    """The default namespace is "" in requests and `__default__` in stats; name it one way."""
    return namespace or DEFAULT_NAMESPACE


def _wire(namespace: str) -> str:
    return "" if namespace == DEFAULT_NAMESPACE else namespace


def _explain(exc: PineconeError) -> str:
    if isinstance(exc, (UnauthorizedError, ForbiddenError)):
        return f"the API key was rejected ({exc.status_code}: {exc.message})"
    if isinstance(exc, ApiError):
        return f"HTTP {exc.status_code}: {exc.message}"
    return (exc.message or type(exc).__name__).splitlines()[0]


def _vector_fields(model: Any, stats: Any, label: str) -> list[VectorField]:
    """Dense `values` and sparse `sparse_values`, as the control plane (or the stats) tell."""
    fields = model.schema.fields if model is not None else {}
    custom = sorted(
        name
        for name, field in fields.items()
        if isinstance(field, (DenseVectorField, SparseVectorField)) and name not in RESERVED_FIELDS
    )
    if custom:
        raise QmigrateError(
            f"source {label} is a document index (vector fields {', '.join(custom)}); "
            "this source reads vector indexes through the vectors API"
        )
    dense = fields.get("_values")
    dimension = dense.dimension if dense is not None else stats.dimension
    metric = dense.metric if dense is not None else stats.metric
    sparse_only = dimension is None and (
        "_sparse_values" in fields or stats.vector_type == "sparse"
    )
    if sparse_only:
        return [VectorField(SPARSE, "sparse")]
    if dimension is None or metric not in METRICS:
        raise QmigrateError(
            f"source {label} does not tell its dimension and metric (got {dimension}, "
            f"{metric}); connect by source.index so the control plane describes it"
        )
    vectors = [VectorField(DENSE, "dense", dimension, METRICS[metric])]
    if "_sparse_values" in fields or metric == "dotproduct":  # hybrid records need dotproduct
        vectors.append(VectorField(SPARSE, "sparse"))
    return vectors


def _tasks(streams: list[dict[str, Any]]) -> Iterator[tuple[str, str, Any]]:
    """(kind, namespace, argument) for each request sequence a partition runs, in order."""
    for stream in streams:
        ns = stream["namespace"]
        if "list" in stream:
            yield "list", ns, stream["list"]
        elif "ids" in stream:
            yield "ids", ns, stream["ids"]
        elif "lines" in stream:
            yield "lines", ns, stream["lines"]
        else:
            yield "meta", ns, None


def _runs(weights: dict[int, int], k: int) -> list[list[int]]:
    """The characters, in order, cut into at most k runs of about equal weight."""
    total = sum(weights.values())
    runs: list[list[int]] = []
    seen = 0
    for code in sorted(weights):
        if len(runs) <= min(k - 1, seen * k // total):
            runs.append([])
        runs[-1].append(code)
        seen += weights[code]
    return runs


# --- filter translation -----------------------------------------------------------------

RANGE_OPERATORS = {"gt": "$gt", "gte": "$gte", "lt": "$lt", "lte": "$lte"}


def _condition(condition: dict[str, Any]) -> dict[str, Any] | None:
    key = kit.plain_key(condition)
    if key is None:
        return None
    match = condition.get("match")
    if match is not None:
        # Pinecone keeps every metadata number as a float, which Qdrant's integer match
        # never selects: only string and boolean matches are pushed.
        if "value" in match and isinstance(match["value"], str | bool):
            return {key: {"$eq": match["value"]}}
        if match.get("any") and all(isinstance(v, str) for v in match["any"]):
            return {key: {"$in": match["any"]}}
        return None
    bounds = condition.get("range")
    if bounds is not None:
        parts = [{key: {RANGE_OPERATORS[op]: v}} for op, v in bounds.items()]
        return parts[0] if len(parts) == 1 else {"$and": parts}
    return None


def _all(parts: list[dict[str, Any]]) -> dict[str, Any]:
    return parts[0] if len(parts) == 1 else {"$and": parts}


def _any(parts: list[dict[str, Any]]) -> dict[str, Any]:
    return parts[0] if len(parts) == 1 else {"$or": parts}


# Pushed: `must` conditions one by one and `should` as a whole, when they are match
# value/any or range on a plain key (Pinecone metadata is flat, so a dotted key keeps
# Qdrant's nested-path meaning only client-side). `must_not` stays client-side: Pinecone's
# $ne/$nin and Qdrant differ on missing fields.
METADATA_FILTER = kit.FilterDialect(_condition, all_of=_all, any_of=_any)
