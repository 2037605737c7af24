"""Chroma: an HTTP server (self-hosted or Chroma Cloud) or an embedded PersistentClient directory.

Chroma can only page by offset: `get(offset, limit)` returns records in its internal
sequence order (insertion order; an update keeps its place, a delete moves every later
record back by one). Partitions are offset ranges over the count taken at the start.
Every request starts one record early and checks that this record is the last one already
read, so a collection that changes under the migration stops it with a clear error
instead of silently skipping records.

The collection holds one dense vector, described as the unnamed vector "" (rename it with
`mapping.vectors`). Metadata becomes payload as Chroma returns it; the document goes to
`document_field`.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import chromadb
import httpx
import numpy as np
from chromadb.api import ClientAPI
from chromadb.api.models.Collection import Collection
from chromadb.api.types import Include
from chromadb.config import Settings
from chromadb.errors import ChromaError, NotFoundError

from qmigrate.errors import SourceError, TransientError
from qmigrate.records import Page, Partition, Record, SourceInfo, VectorField
from qmigrate.retry import TRANSIENT_HTTP
from qmigrate.sources import kit

T = TypeVar("T")
Where = dict[str, Any]

CLOUD_URL = "https://api.trychroma.com"
SPACES = {"cosine": "Cosine", "l2": "Euclid", "ip": "Dot"}


def _request(call: Callable[[], T]) -> T:
    """A chromadb call whose throttling and server errors the engine retries: chromadb
    keeps the HTTP status in a `code()` method, where `retry.is_transient` does not look."""
    try:
        return call()
    except ChromaError as exc:
        if exc.code() in TRANSIENT_HTTP:
            raise TransientError(f"{exc.name()}: {exc.message()}") from exc
        raise


class Source:
    def __init__(self, config: dict[str, Any], batch_size: int) -> None:
        self.config = config
        self.name: str = config["collection"]
        self.tenant: str = config["tenant"]
        self.database: str = config["database"]
        self.document_field: str | None = config["document_field"]
        self.batch_size = batch_size
        self.where: Where | None = None
        self.path: str | None = config.get("path")
        url = config.get("url") or (CLOUD_URL if "api_key" in config else None)
        self.location = self.path or str(url)
        self.label = f"Chroma at {self.location}"
        self._client: ClientAPI | None = None
        self._collection: Collection | None = None

    # --- connection -----------------------------------------------------------------

    def _credentials(self) -> tuple[dict[str, str], str]:
        """HTTP headers for the configured auth, and how to name it in an error."""
        config = self.config
        if "username" in config:
            pair = f"{config['username']}:{config['password']}".encode()
            header = "Basic " + base64.b64encode(pair).decode()
            return {"Authorization": header}, f"basic auth as '{config['username']}'"
        if "token" in config:
            name = config["token_header"]
            token = config["token"]
            value = f"Bearer {token}" if name == "Authorization" else token
            return {name: value}, f"token in the {name} header"
        if "api_key" in config:
            return {"X-Chroma-Token": config["api_key"]}, "API key"
        return {}, "no credentials"

    def explain(self, exc: Exception) -> str:
        if isinstance(exc, ChromaError):  # its message is a method, not an attribute
            return f"{exc.name()}: {exc.message()}"
        return kit.first_line(exc)

    @property
    def client(self) -> ClientAPI:
        if self._client is not None:
            return self._client
        settings = Settings(anonymized_telemetry=False)
        headers, auth = self._credentials()
        if self.path is not None and not (Path(self.path) / "chroma.sqlite3").is_file():
            # PersistentClient would create an empty database there: refuse instead.
            raise SourceError(
                self.label, "no Chroma database in this directory (no chroma.sqlite3)"
            )
        try:
            if self.path is not None:
                client = chromadb.PersistentClient(
                    self.path, settings, tenant=self.tenant, database=self.database
                )
            else:
                client = chromadb.HttpClient(
                    host=self.location,
                    headers=headers,
                    settings=settings,
                    tenant=self.tenant,
                    database=self.database,
                )
                # chromadb's HTTP session waits forever; a stalled server must time out.
                server: Any = client._server  # type: ignore[attr-defined]  # not public API
                server._session.timeout = httpx.Timeout(self.config["timeout"])
        except ChromaError as exc:
            if exc.code() in (401, 403):
                raise SourceError(
                    self.label, f"the server rejected the credentials ({auth}): {exc.message()}"
                ) from None
            raise SourceError(
                self.label, f"{exc.message()} (tenant '{self.tenant}', database '{self.database}')"
            ) from None
        except (ValueError, httpx.HTTPError) as exc:
            raise SourceError(self.label, str(exc) or type(exc).__name__) from None
        self._client = client
        return client

    @property
    def collection(self) -> Collection:
        """The source collection; a missing one is an error, never created."""
        if self._collection is not None:
            return self._collection
        client = self.client
        try:
            self._collection = client.get_collection(self.name)
        except NotFoundError:
            names = [c.name for c in _request(client.list_collections)]
            shown = kit.some_of(names, "no collections")
            raise SourceError(
                self.label,
                f"collection '{self.name}' does not exist in tenant '{self.tenant}', "
                f"database '{self.database}' (it has: {shown})",
            ) from None
        except ChromaError as exc:
            raise SourceError(self.label, f"{exc.name()}: {exc.message()}") from None
        return self._collection

    def close(self) -> None:
        if self._client is not None:
            self._client.close()  # type: ignore[attr-defined]  # chromadb >= 1.0, not in ClientAPI
            self._client = None
            self._collection = None

    # --- contract -------------------------------------------------------------------

    def describe(self) -> SourceInfo:
        collection = self.collection
        count = _request(collection.count)
        include: Include = ["embeddings", "metadatas", "documents"]
        sample = self._get(0, kit.SAMPLE_RECORDS, include, where=None)
        embeddings = sample["embeddings"]
        size = len(embeddings[0]) if len(sample["ids"]) else None
        space = _space(collection)
        has_documents = any(d is not None for d in sample["documents"] or [])
        keys = kit.payload_fields(
            sample["metadatas"] or [], self.document_field if has_documents else None
        )
        details: dict[str, Any] = {
            "location": self.location,
            "tenant": self.tenant,
            "database": self.database,
            "collection": self.name,
            "space": space,
        }
        if self.where is not None:
            details["where"] = self.where
        return SourceInfo(
            count=count,
            vectors=[VectorField("", "dense", size, SPACES.get(space))],
            payload_fields=keys,
            details=details,
        )

    def push_down(self, filter: dict[str, Any] | None) -> dict[str, Any] | None:
        if not filter:
            return None
        self.where, residual = kit.split_filter(filter, where_dialect(self.document_field))
        return residual

    def search(self, vector_name: str, vector: list[float], k: int) -> list[Any]:
        """IDs of the k nearest records the job reads (its pushed-down `where` applies)."""
        collection = self.collection
        queries: list[Sequence[float]] = [vector]
        result = _request(
            lambda: collection.query(
                query_embeddings=queries,
                n_results=k,
                where=self.where,
                include=[],
            )
        )
        return list(result["ids"][0])

    def partitions(self, n: int) -> list[Partition]:
        """Equal offset ranges over what the pushed-down filter selects now, each with the ID
        just before its start, so a read that begins after the collection changed notices."""
        return [
            Partition(f"{i:04d}", {"start": start, "end": end, "after": self._id_at(start - 1)})
            for i, (start, end) in enumerate(kit.even_ranges(0, self._total(), n))
        ]

    def read(self, partition: Partition, cursor: Any) -> Iterator[Page]:
        """Pages of [start, end); the cursor is the next offset and the ID just before it."""
        spec = partition.spec
        position = cursor or {"offset": spec["start"], "after": spec["after"]}
        offset, after = position["offset"], position["after"]
        end = spec["end"]
        include: Include = ["embeddings", "metadatas"]
        if self.document_field:
            include.append("documents")
        while offset < end:
            limit = min(self.batch_size, end - offset)
            overlap = 0 if after is None else 1
            result = self._get(offset - overlap, limit + overlap, include, self.where)
            ids = result["ids"]
            if overlap and (not ids or ids[0] != after):
                raise self._changed(offset)
            records = self._records(result, overlap)
            if len(records) < limit:
                raise self._changed(offset + len(records))
            offset += len(records)
            after = records[-1].id
            yield Page(records, {"offset": offset, "after": after})

    # --- reading --------------------------------------------------------------------

    def _get(self, offset: int, limit: int, include: Include, where: Where | None) -> Any:
        collection = self.collection
        return _request(
            lambda: collection.get(where=where, offset=offset, limit=limit, include=include)
        )

    def _id_at(self, offset: int) -> str | None:
        if offset < 0:
            return None
        ids = self._get(offset, 1, [], self.where)["ids"]
        return ids[0] if ids else None

    def _total(self) -> int:
        """Records the filter selects: a binary search on offsets (Chroma cannot count them)."""
        low, high = 0, _request(self.collection.count)
        if self.where is None:
            return high
        while low < high:
            middle = (low + high) // 2
            if self._id_at(middle) is None:
                high = middle
            else:
                low = middle + 1
        return low

    def _changed(self, offset: int) -> SourceError:
        return SourceError(
            self.label,
            f"collection '{self.name}' changed while it was read: records up to offset "
            f"{offset} were deleted or stopped matching the filter, so offsets moved. "
            "Run the job again with restart: restart once writes to it have stopped",
        )

    def _records(self, result: Any, skip: int) -> list[Record]:
        ids = result["ids"][skip:]
        vectors = list(np.asarray(result["embeddings"][skip:]))  # rows, not copied
        metadatas = result["metadatas"][skip:]
        documents = result["documents"][skip:] if self.document_field else [None] * len(ids)
        field = self.document_field
        records = []
        for record_id, vector, metadata, document in zip(
            ids, vectors, metadatas, documents, strict=True
        ):
            payload = metadata or {}  # chromadb builds a new dict per record
            if document is not None:
                if field in payload:
                    raise SourceError(
                        self.label,
                        f"record '{record_id}' has a metadata key '{field}' and a document: "
                        "set source.document_field to another payload field",
                    )
                payload[field] = document
            records.append(Record(record_id, {"": vector}, payload))
        return records


def _space(collection: Collection) -> str:
    """The configured distance: configuration (hnsw or spann), else legacy metadata, else l2."""
    configuration = collection.configuration_json or {}
    for index in ("hnsw", "spann"):
        space = (configuration.get(index) or {}).get("space")
        if space:
            return str(space)
    return str((collection.metadata or {}).get("hnsw:space", "l2"))


# --- filter pushdown ------------------------------------------------------------------
#
# Only conditions whose Chroma `where` selects exactly the records Qdrant's filter selects
# are pushed down. Measured on Chroma 1.5 against qdrant's own semantics:
# - `$eq`/`$in` see scalar metadata only and `$contains` sees list elements only, while
#   Qdrant's `match` matches a scalar or any element of a list: both are needed.
# - `$eq: 1` also matches the float 1.0, which Qdrant's integer match does not: integer
#   matches stay client-side.
# - Range operators skip list values (Qdrant compares every element) and compare integers
#   with a fractional bound truncated: ranges stay client-side.
# - `$ne`/`$nin` are the exact complements of `$eq`/`$in`, and `$not_contains` of
#   `$contains`, missing keys included, which is what Qdrant's `must_not` means.
# Keys with path syntax (Qdrant reads `a.b` as nested, Chroma as a flat name) and the
# document field (not metadata in Chroma) stay client-side too.


def where_dialect(document_field: str | None) -> kit.FilterDialect[Where]:
    def condition(condition: dict[str, Any]) -> Where | None:
        match = _match(condition, document_field)
        if match is None:
            return None
        key, values = match
        scalar = {key: {"$eq": values[0]}} if len(values) == 1 else {key: {"$in": values}}
        return _any([scalar] + [{key: {"$contains": v}} for v in values])

    def negation(condition: dict[str, Any]) -> Where | None:
        match = _match(condition, document_field)
        if match is None:
            return None
        key, values = match
        scalar = {key: {"$ne": values[0]}} if len(values) == 1 else {key: {"$nin": values}}
        return _all([scalar] + [{key: {"$not_contains": v}} for v in values])

    return kit.FilterDialect(condition, _all, _any, negation)


def _match(condition: dict[str, Any], document_field: str | None) -> tuple[str, list[Any]] | None:
    """(key, values) of a string or boolean `match value`, or a string `match any`."""
    key = kit.plain_key(condition)
    match = condition.get("match") or {}
    values: list[Any] | None
    kinds: tuple[set[type], ...]
    if "value" in match:
        values, kinds = [match["value"]], ({str}, {bool})
    else:
        values, kinds = match.get("any"), ({str},)  # Qdrant's `any` takes no booleans
    if key is None or not values or {type(v) for v in values} not in kinds:
        return None
    if key == document_field or key[0] in "$#":
        return None
    return key, values


def _all(parts: list[Where]) -> Where:
    return parts[0] if len(parts) == 1 else {"$and": parts}


def _any(parts: list[Any]) -> Where:
    return parts[0] if len(parts) == 1 else {"$or": parts}
