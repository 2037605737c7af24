"""Weaviate: one collection read through the v4 client (REST for the schema, gRPC for objects).

Reading: the cursor API (`after` an object UUID, objects in UUID order) per tenant, so a
run is exact and resumable: the cursor is (slice, last UUID). A partition is a list of
slices, each one tenant's UUID range (after, upto]: tenants are spread over the partitions
by their object counts, and when there are fewer tenants than partitions the large ones
are cut into UUID ranges (even cuts of the 128-bit space; Weaviate's own UUIDs are random).
The cursor API takes no filter, so with a pushed-down filter the cursor walks UUIDs only
(no vectors, no properties), and each batch's objects come from one filtered request over
its UUID range (`_id > after AND _id <= last`), which holds at most a batch. (Sorting a
filtered query by `_id` with a limit was tried first: the server returned 7 objects in order
but not the first 7, so pages built on it skipped objects.)

Objects keep their UUIDs as Qdrant IDs. Vectors: every named vector (multi-vectors too) and
the legacy single vector (Qdrant's unnamed vector ""), their distance from the vector
index config, their size from the first objects that hold them. Properties become payload
(dates RFC 3339, UUIDs strings, geo coordinates {lat, lon}, objects nested). In a
multi-tenant collection each object's tenant goes to a payload field (`tenant_field`) with
a tenant payload index; `target.shard_key: {field: tenant}` puts each tenant in a shard key
instead. Cross-references are dropped (counted in the summary) or, with `references: keep`,
kept as lists of UUIDs.
"""

from __future__ import annotations

import datetime as dt
import functools
import uuid as uuid_module
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import grpc
import weaviate
from weaviate.classes.init import AdditionalConfig, Auth, Timeout
from weaviate.classes.query import Filter, QueryReference
from weaviate.collections.classes.filters import _Filters
from weaviate.exceptions import (
    UnexpectedStatusCodeError,
    WeaviateBaseError,
    WeaviateConnectionError,
    WeaviateGRPCUnavailableError,
    WeaviateQueryError,
    WeaviateTimeoutError,
)

from qmigrate.errors import SourceError, TransientError
from qmigrate.records import DISTANCES, Page, Partition, Record, SourceInfo, VectorField
from qmigrate.sources import kit

# Weaviate's distance metrics -> Qdrant's. l2-squared orders neighbours as Euclid does.
WEAVIATE_DISTANCES = {
    "cosine": "Cosine",
    "dot": "Dot",
    "l2-squared": "Euclid",
    "manhattan": "Manhattan",
}
LEGACY_VECTOR = "default"  # the client's name for a collection's single (legacy) vector
UUID_SPACE = 2**128
TRANSIENT_GRPC = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.ABORTED,
}
READABLE_TENANT_STATES = {"ACTIVE", "HOT"}


@dataclass(frozen=True)
class Slice:
    """One tenant's UUID range (after, upto]; None: open at that end."""

    tenant: str | None
    after: str | None
    upto: str | None

    def spec(self) -> dict[str, Any]:
        return {"tenant": self.tenant, "after": self.after, "upto": self.upto}


def _uuid_text(number: int) -> str:
    return str(uuid_module.UUID(int=number))


def uuid_ranges(n: int) -> list[tuple[str | None, str | None]]:
    """The UUID space cut into n ranges (after, upto] of equal width, open at both ends."""
    cuts = [_uuid_text(UUID_SPACE * i // n - 1) for i in range(1, n)]
    bounds: list[str | None] = [None, *cuts, None]
    return list(zip(bounds, bounds[1:], strict=False))


class Source:
    def __init__(self, config: dict[str, Any], batch_size: int) -> None:
        self.url: str = config["url"].rstrip("/")
        self.grpc_host: str | None = config.get("grpc_host")
        self.grpc_port: int = config["grpc_port"]
        self.api_key: str | None = config.get("api_key")
        self.bearer_token: str | None = config.get("bearer_token")
        self.collection_name: str = config["collection"]
        self.tenants_wanted: str | list[str] = config["tenants"]
        self.tenant_field: str = config["tenant_field"]
        self.overrides: dict[str, dict[str, Any]] = config.get("vectors") or {}
        self.keep_references: bool = config["references"] == "keep"
        self.timeout: float = config["timeout"]
        self.batch_size = batch_size
        self.pushed: _Filters | None = None
        self._client: weaviate.WeaviateClient | None = None
        self._config: Any = None
        self._tenants: dict[str, int] | None = None  # name -> objects (None: not multi-tenant)
        self._counts: dict[str | None, int] = {}
        self._vector_names: dict[str, str] = {}  # Weaviate vector name -> Qdrant vector name
        self._references: list[str] = []

    # --- connection -----------------------------------------------------------------

    @property
    def label(self) -> str:
        return f"Weaviate collection {self.collection_name} at {self.url}"

    def explain(self, exc: Exception) -> str:
        if isinstance(exc, UnexpectedStatusCodeError) and exc.status_code in (401, 403):
            return f"the server refused the credentials ({exc.status_code}): check api_key or bearer_token"
        text = kit.first_line(exc)
        if "401" in text or "403" in text or "nauthenticated" in text:
            return f"the server refused the credentials: {text}"
        return text

    @property
    def client(self) -> weaviate.WeaviateClient:
        if self._client is None:
            self._client = self._connect()
        return self._client

    def _connect(self) -> weaviate.WeaviateClient:
        parts = urlsplit(self.url)
        secure = parts.scheme == "https"
        credentials: Any = None
        if self.api_key:
            credentials = Auth.api_key(self.api_key)
        elif self.bearer_token:
            credentials = Auth.bearer_token(self.bearer_token)
        timeout = Timeout(init=min(self.timeout, 30), query=self.timeout, insert=self.timeout)
        return weaviate.connect_to_custom(
            http_host=parts.hostname or "localhost",
            http_port=parts.port or (443 if secure else 80),
            http_secure=secure,
            grpc_host=self.grpc_host or parts.hostname or "localhost",
            grpc_port=self.grpc_port,
            grpc_secure=secure,
            auth_credentials=credentials,
            additional_config=AdditionalConfig(timeout=timeout),
        )

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    # --- schema ---------------------------------------------------------------------

    @property
    def collection(self) -> Any:
        return self.client.collections.use(self.collection_name)

    @property
    def config(self) -> Any:
        if self._config is None:
            if not self.client.collections.exists(self.collection_name):
                names = self.client.collections.list_all(simple=True)
                shown = kit.some_of(names, "no collections")
                raise SourceError(
                    self.label,
                    f"collection {self.collection_name} does not exist (it has: {shown})",
                )
            self._config = self.collection.config.get()
        return self._config

    @property
    def multi_tenant(self) -> bool:
        return bool(self.config.multi_tenancy_config.enabled)

    def _tenant_names(self) -> list[str] | None:
        """The tenants this job reads (None: the collection is not multi-tenant)."""
        if not self.multi_tenant:
            if self.tenants_wanted != "all":
                raise SourceError(self.label, "tenants: the collection is not multi-tenant")
            return None
        found = self.collection.tenants.get()
        wanted = sorted(found) if self.tenants_wanted == "all" else list(self.tenants_wanted)
        missing = [name for name in wanted if name not in found]
        if missing:
            shown = kit.some_of(found, "no tenants")
            raise SourceError(self.label, f"tenant {missing[0]} does not exist (it has: {shown})")
        for name in wanted:
            state = _status(found[name])
            if state not in READABLE_TENANT_STATES:
                raise SourceError(
                    self.label,
                    f"tenant {name} is {state}: activate it before the job reads it",
                )
        return wanted

    def _vectors(self, sample: list[Any]) -> list[VectorField]:
        """Named vectors and the legacy vector, their distance and size (from `sample`)."""
        config = self.config
        indexes: dict[str, Any] = {
            name: named.vector_index_config for name, named in (config.vector_config or {}).items()
        }
        if config.vector_index_config is not None and not indexes:
            indexes[LEGACY_VECTOR] = config.vector_index_config
        for name in self.overrides:
            if name not in indexes:
                shown = kit.some_of(indexes, "none")
                raise SourceError(self.label, f"vectors.{name}: no such vector ({shown})")
        fields = []
        for name, index in indexes.items():
            override = self.overrides.get(name, {})
            target = override.get("name", "" if name == LEGACY_VECTOR else name)
            self._vector_names[name] = target
            metric = getattr(getattr(index, "distance_metric", None), "value", None)
            distance = (
                DISTANCES[override["distance"]]
                if "distance" in override
                else WEAVIATE_DISTANCES.get(str(metric))
            )
            if distance is None:
                raise SourceError(
                    self.label,
                    f"vector {name} uses {metric} distance, which Qdrant has not: "
                    f"set vectors.{name}.distance",
                )
            held = next((o.vector[name] for o in sample if o.vector.get(name)), None)
            multi = bool(getattr(index, "multi_vector", None))
            if held is not None and held and isinstance(held[0], list):
                multi = True
            size = override.get("size")
            if size is None and held is not None:
                size = len(held[0]) if multi else len(held)
            if size is None:
                raise SourceError(
                    self.label,
                    f"vector {name}: no object read holds it, so its size is unknown: "
                    f"set vectors.{name}.size",
                )
            fields.append(VectorField(target, "multi" if multi else "dense", size, distance))
        return fields

    # --- contract -------------------------------------------------------------------

    def push_down(self, filter: dict[str, Any] | None) -> dict[str, Any] | None:
        if not filter:
            return None
        properties = {p.name: p for p in self.config.properties}
        self.pushed, residual = kit.split_filter(filter, weaviate_dialect(properties))
        return residual

    def describe(self) -> SourceInfo:
        names = self._tenant_names()
        self._references = [r.name for r in self.config.references]
        units: list[str | None] = list(names) if names is not None else [None]
        self._counts = {unit: self._count(unit) for unit in units}
        sample: list[Any] = []
        for unit in units:
            if len(sample) >= kit.SAMPLE_RECORDS:
                break
            if self._counts[unit]:
                sample += self._fetch(unit, None, kit.SAMPLE_RECORDS)
        vectors = self._vectors(sample)
        properties = [p.name for p in self.config.properties]
        extra = [self.tenant_field] if names is not None else []
        extra += self._references if self.keep_references else []
        details: dict[str, Any] = {
            "properties": ", ".join(f"{p.name} ({_data_type(p)})" for p in self.config.properties),
        }
        if names is not None:
            details["tenants"] = f"{len(names):,} (into payload field {self.tenant_field})"
        if self._references:
            what = "kept as lists of UUIDs" if self.keep_references else "dropped"
            details["references"] = f"{', '.join(self._references)}: {what}"
        if self.pushed is not None:
            details["where"] = filter_text(self.pushed)
        indexes: dict[str, Any] = {}
        if names is not None:
            indexes[self.tenant_field] = {"type": "keyword", "is_tenant": True}
        return SourceInfo(
            count=sum(self._counts.values()),
            vectors=vectors,
            payload_fields=sorted({*properties, *extra}),
            payload_indexes=indexes,
            details=details,
        )

    def partitions(self, n: int) -> list[Partition]:
        units = self._counts or {None: 1}
        total = max(1, sum(units.values()))
        slices: list[tuple[int, Slice]] = []
        for tenant, count in units.items():
            pieces = 1 if len(units) >= n else max(1, min(n, round(n * count / total)))
            for after, upto in uuid_ranges(pieces):
                slices.append((max(1, count // pieces), Slice(tenant, after, upto)))
        groups = kit.balance(slices, n)
        return [
            Partition(f"{i:04d}", {"slices": [s.spec() for s in group]})
            for i, group in enumerate(groups)
        ]

    def read(self, partition: Partition, cursor: Any) -> Iterator[Page]:
        slices = [Slice(**spec) for spec in partition.spec["slices"]]
        start, last = (0, None) if cursor is None else (cursor[0], cursor[1])
        for index in range(start, len(slices)):
            piece = slices[index]
            after = last if index == start and last is not None else piece.after
            pieces = self._pieces(piece, after)
            for records, walked in kit.gather(pieces, self.batch_size):
                dropped = sum(r.origin.references_dropped for r in records)
                yield Page(records, [index, walked], references_dropped=dropped)

    def _pieces(self, piece: Slice, after: str | None) -> Iterator[tuple[list[Record], str]]:
        """(records, the last UUID walked) of one slice from `after`, a batch of the cursor
        API at a time. With a pushed filter, the walk takes UUIDs only, and the batch's
        objects are those of its UUID range that the filter selects."""
        while True:
            walked = self._read(piece.tenant, after, ids_only=self.pushed is not None)
            inside = [o for o in walked if piece.upto is None or str(o.uuid) <= piece.upto]
            if not inside:
                return
            last = str(inside[-1].uuid)
            objects = inside if self.pushed is None else self._selected(piece.tenant, after, last)
            links = self._multi_target_links(piece.tenant, after, last) if objects else {}
            records = [self._record(o, piece.tenant, links.get(str(o.uuid), {})) for o in objects]
            yield records, last
            after = last
            if len(inside) < len(walked) or len(walked) < self.batch_size:
                return

    def search(self, vector_name: str, vector: list[float], k: int) -> list[Any]:
        """UUIDs of the k nearest objects the job reads, for verify's search agreement: each
        tenant's k nearest (with the pushed filter), merged by distance."""
        from weaviate.classes.query import MetadataQuery

        source_name = next(n for n, t in self._vector_names.items() if t == vector_name)
        target = None if source_name == LEGACY_VECTOR else source_name
        found: list[tuple[float, str]] = []
        for unit in self._counts or {None: 0}:
            result = self._in(unit).query.near_vector(
                vector,
                limit=k,
                target_vector=target,
                filters=self.pushed,
                return_metadata=MetadataQuery(distance=True),
            )
            found += [(o.metadata.distance, str(o.uuid)) for o in result.objects]
        return [object_id for _, object_id in sorted(found)[:k]]

    # --- reading --------------------------------------------------------------------

    def _in(self, tenant: str | None) -> Any:
        return self.collection.with_tenant(tenant) if tenant is not None else self.collection

    def _count(self, tenant: str | None) -> int:
        result = self._in(tenant).aggregate.over_all(total_count=True, filters=self.pushed)
        return int(result.total_count or 0)

    def _read(self, tenant: str | None, after: str | None, ids_only: bool = False) -> list[Any]:
        """Up to a batch of objects after the UUID `after`, in UUID order (the cursor API)."""
        try:
            return self._fetch(tenant, after, self.batch_size, ids_only=ids_only)
        except WeaviateBaseError as exc:
            raise _transient_or_as_is(exc) from exc

    def _fetch(
        self, tenant: str | None, after: str | None, limit: int, ids_only: bool = False
    ) -> list[Any]:
        result = self._in(tenant).query.fetch_objects(
            limit=limit,
            after=after,
            include_vector=not ids_only,
            return_properties=[] if ids_only else None,
            return_references=None if ids_only else self._reference_query(),
        )
        return list(result.objects)

    def _selected(self, tenant: str | None, after: str | None, upto: str) -> list[Any]:
        """The objects with UUIDs in (after, upto] that the pushed filter selects, in UUID
        order. The range holds at most a batch of objects, so one request has them all."""
        assert self.pushed is not None
        conditions = [self.pushed, Filter.by_property("_id").less_or_equal(upto)]
        if after is not None:
            conditions.append(Filter.by_property("_id").greater_than(after))
        try:
            result = self._in(tenant).query.fetch_objects(
                limit=self.batch_size,
                filters=Filter.all_of(conditions),
                include_vector=True,
                return_references=self._reference_query(),
            )
        except WeaviateBaseError as exc:
            raise _transient_or_as_is(exc) from exc
        return sorted(result.objects, key=lambda o: str(o.uuid))

    @functools.cached_property
    def _reference_list(self) -> list[Any]:
        """The references to one collection, UUIDs only, asked with the objects."""
        return [
            QueryReference(link_on=name, return_properties=[])
            for name, targets in self._reference_targets.items()
            if len(targets) <= 1
        ]

    @functools.cached_property
    def _reference_targets(self) -> dict[str, list[str]]:
        return {
            r.name: list(getattr(r, "target_collections", None) or [])
            for r in self.config.references
        }

    def _multi_target_links(
        self, tenant: str | None, after: str | None, upto: str
    ) -> dict[str, dict[str, list[str]]]:
        """object UUID -> reference name -> linked UUIDs, for references to several
        collections over the UUIDs (after, upto]. The server wants such a reference asked
        once per linked collection, and the client keeps one answer per name, so each is a
        request of its own over the batch's range (at most a batch of objects)."""
        links: dict[str, dict[str, list[str]]] = {}
        conditions = [Filter.by_property("_id").less_or_equal(upto)]
        if after is not None:
            conditions.append(Filter.by_property("_id").greater_than(after))
        for name, targets in self._reference_targets.items():
            if len(targets) <= 1:
                continue
            for target in targets:
                asked = QueryReference.MultiTarget(
                    link_on=name, target_collection=target, return_properties=[]
                )
                try:
                    result = self._in(tenant).query.fetch_objects(
                        limit=self.batch_size,
                        filters=Filter.all_of(conditions),
                        return_properties=[],
                        return_references=asked,
                    )
                except WeaviateBaseError as exc:
                    raise _transient_or_as_is(exc) from exc
                for obj in result.objects:
                    found = (obj.references or {}).get(name)
                    uuids = [str(o.uuid) for o in found.objects] if found is not None else []
                    links.setdefault(str(obj.uuid), {}).setdefault(name, []).extend(uuids)
        return links

    def _reference_query(self) -> list[Any] | None:
        return self._reference_list or None

    def _record(
        self, obj: Any, tenant: str | None, links: dict[str, list[str]] | None = None
    ) -> Record:
        vectors: dict[str, Any] = {}
        for name, value in (obj.vector or {}).items():
            target = self._vector_names.get(name)
            if target is not None and value:
                vectors[target] = value
        payload = {key: _jsonable(value) for key, value in (obj.properties or {}).items()}
        dropped = 0
        found = {
            name: [str(o.uuid) for o in r.objects] for name, r in (obj.references or {}).items()
        }
        for name, uuids in {**found, **(links or {})}.items():
            if self.keep_references:
                payload[name] = uuids
            else:
                dropped += len(uuids)
        if tenant is not None:
            payload[self.tenant_field] = tenant
        return Record(str(obj.uuid), vectors, payload, origin=_Origin(tenant, dropped))


@dataclass(frozen=True)
class _Origin:
    tenant: str | None
    references_dropped: int

    def __str__(self) -> str:
        return f"tenant {self.tenant}" if self.tenant is not None else "Weaviate"


def _status(tenant: Any) -> str:
    status = getattr(tenant, "activity_status", None)
    return str(getattr(status, "value", status) or "HOT").upper()


def _data_type(prop: Any) -> str:
    return str(getattr(prop.data_type, "value", prop.data_type))


def _jsonable(value: Any) -> Any:
    """A property value as JSON: dates RFC 3339, UUIDs strings, geo points {lat, lon}."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.timezone.utc)
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, uuid_module.UUID):
        return str(value)
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "latitude") and hasattr(value, "longitude"):
        return {"lat": value.latitude, "lon": value.longitude}
    if hasattr(value, "model_dump"):
        return _jsonable(value.model_dump())
    return str(value)


def _transient_or_as_is(exc: WeaviateBaseError) -> Exception:
    if isinstance(
        exc, (WeaviateTimeoutError, WeaviateConnectionError, WeaviateGRPCUnavailableError)
    ):
        return TransientError(f"{type(exc).__name__}: {kit.first_line(exc)}")
    if isinstance(exc, WeaviateQueryError):
        cause = exc.__cause__ or exc.__context__
        code = getattr(cause, "code", lambda: None)() if isinstance(cause, grpc.RpcError) else None
        if code in TRANSIENT_GRPC:
            return TransientError(f"{type(exc).__name__}: {kit.first_line(exc)}")
    return exc


# --- filter pushdown ------------------------------------------------------------------
#
# A condition is pushed where Weaviate selects exactly what Qdrant does: matches on int,
# boolean and text properties (text only with `field` tokenization: other tokenizations
# match words, not whole values), on their array forms element by element (Weaviate's Equal
# on an array property holds when some element equals, as Qdrant's match does), and ranges
# on int, number and date properties. Negations stay client-side: Weaviate's NotEqual
# leaves out objects without the property, which Qdrant's must_not keeps.

MATCH_TYPES: dict[type, set[str]] = {
    bool: {"boolean", "boolean[]"},
    int: {"int", "int[]"},
    str: {"text", "text[]"},
}
NUMBER_TYPES = {"int", "int[]", "number", "number[]"}
DATE_TYPES = {"date", "date[]"}


def weaviate_dialect(properties: dict[str, Any]) -> kit.FilterDialect[_Filters]:
    return kit.FilterDialect(
        lambda condition: _condition(condition, properties),
        all_of=lambda parts: Filter.all_of(parts),
        any_of=lambda parts: Filter.any_of(parts),
        negation=None,
    )


def _matches(value: Any, prop: Any) -> bool:
    kind = _data_type(prop)
    if type(value) not in MATCH_TYPES or kind not in MATCH_TYPES[type(value)]:
        return False
    if kind.startswith("text"):
        return str(getattr(prop.tokenization, "value", prop.tokenization)) == "field"
    return True


def _condition(condition: dict[str, Any], properties: dict[str, Any]) -> _Filters | None:
    key = kit.plain_key(condition)
    prop = properties.get(key or "")
    if key is None or prop is None:
        return None
    match = condition.get("match")
    if isinstance(match, dict):
        if "value" in match and _matches(match["value"], prop):
            return Filter.by_property(key).equal(match["value"])
        choices = match.get("any")
        if isinstance(choices, list) and choices and all(_matches(v, prop) for v in choices):
            return Filter.by_property(key).contains_any(choices)
        return None
    bounds = condition.get("range")
    if not isinstance(bounds, dict):
        return None
    present = {k: v for k, v in bounds.items() if v is not None}
    if not present or set(present) - {"gt", "gte", "lt", "lte"}:
        return None
    kind = _data_type(prop)
    if kind.endswith("[]") and len(present) > 1:
        return None  # Qdrant wants one element within both bounds; Weaviate any, for each
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present.values()):
        if kind not in NUMBER_TYPES:
            return None
        if kind.startswith("int") and not all(float(v).is_integer() for v in present.values()):
            return None  # an int property compares with an integer value only
        values: dict[str, Any] = {
            k: int(v) if kind.startswith("int") else float(v) for k, v in present.items()
        }
    elif all(isinstance(v, str) for v in present.values()) and kind in DATE_TYPES:
        try:
            values = {k: _datetime(v) for k, v in present.items()}
        except ValueError:
            return None
    else:
        return None
    by = Filter.by_property(key)
    parts = [
        {
            "gt": by.greater_than,
            "gte": by.greater_or_equal,
            "lt": by.less_than,
            "lte": by.less_or_equal,
        }[k](v)
        for k, v in values.items()
    ]
    return parts[0] if len(parts) == 1 else Filter.all_of(parts)


def filter_text(pushed: Any) -> str:
    """A pushed filter as plan shows it: `(color Equal 'red' AND n GreaterThanEqual 100)`."""
    parts = getattr(pushed, "filters", None)
    if parts is not None:
        word = " AND " if str(pushed.operator.name) == "AND" else " OR "
        return "(" + word.join(filter_text(part) for part in parts) + ")"
    value = pushed.value
    shown = value.isoformat() if isinstance(value, dt.datetime) else value
    return f"{pushed.target} {pushed.operator.value} {shown!r}"


def _datetime(text: str) -> dt.datetime:
    value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.timezone.utc)
