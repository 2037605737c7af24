"""Which target points a sync deletes: the scope, and the merge that finds them.

The rule (conservative: a point outside what the job could have written is never touched):
a point of the job's target collection (never `_migration_offsets`, which is another
collection) is deleted when, at the end of a pass,

1. its ID is not among the point IDs the job's source records map to in this pass (within
   the job's filter), and
2. it carries every constant of `mapping.payload.set`, with the same value, and
3. when the job has a filter: it matches that filter translated to target payload keys.
   A filter key translates when the mapping keeps its value under a known name (as it
   is, or by an exact `rename`); a key that `include`/`exclude` drop, that a rename moves
   part of, or that a `set` constant or the kept original ID could overwrite cannot be
   told on the target side, and then the pass deletes nothing and says why.

The target is scrolled in Qdrant's order (integer IDs ascending, then UUIDs), filtered by
3 on the server, and merged with the source's IDs sorted the same way (`id_set`): memory
holds one scroll page and the merge's buffers, whatever the sizes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from qdrant_client import models

from qmigrate.errors import QmigrateError
from qmigrate.retry import retried
from qmigrate.spec import MappingSpec
from qmigrate.sync.id_set import key
from qmigrate.target import QdrantTarget
from qmigrate.verify.compare import plain, same

SCROLL_PAGE = 1000
VALUE_CHECKS = ("match", "range", "geo_bounding_box", "geo_radius", "geo_polygon", "values_count")
EXAMPLES = 5


@dataclass
class Scope:
    """What 2 and 3 make of a job: a server-side filter and the constants; `why_not` says
    why nothing may be deleted (None: deletes are on)."""

    filter: dict[str, Any] | None
    constants: dict[str, Any]
    why_not: str | None = None


def scope(job_filter: dict[str, Any] | None, mapping: MappingSpec) -> Scope:
    constants = plain(dict(mapping.set))
    if not job_filter:
        return Scope(None, constants)
    try:
        translated = _filter(job_filter, mapping)
    except _Untranslatable as exc:
        return Scope(
            None,
            constants,
            f"the filter's {exc} cannot be evaluated on the target's payload, so no target "
            "point can be told inside the job's scope: nothing is deleted",
        )
    return Scope(translated, constants)


class _Untranslatable(Exception):
    pass


def _filter(filter: Any, mapping: MappingSpec) -> Any:
    if isinstance(filter, list):
        return [_filter(item, mapping) for item in filter]
    if not isinstance(filter, dict):
        raise _Untranslatable(f"condition {filter!r}")
    out: dict[str, Any] = {}
    for name, value in filter.items():
        if name in ("must", "should", "must_not"):
            out[name] = _filter(value, mapping)
        elif name == "min_should":
            out[name] = {**value, "conditions": _filter(value.get("conditions"), mapping)}
        elif name == "key":
            out[name] = _key(value, mapping)
        elif name in ("is_empty", "is_null"):
            out[name] = {**value, "key": _key(value.get("key"), mapping)}
        elif name == "nested":
            outer = _key(value.get("key"), mapping)
            if _touched(_path(value.get("key")), mapping, subtree=True):
                raise _Untranslatable(f"nested key {value.get('key')!r}")
            out[name] = {**value, "key": outer}
        elif name == "has_id":  # point IDs, as Qdrant means them (ClientFilter tests so)
            out[name] = value
        elif name == "has_vector":
            out[name] = mapping.vectors.get(value, value)
        elif name in VALUE_CHECKS:
            out[name] = value
        else:
            raise _Untranslatable(f"{name!r}")
    return out


def _path(key_: Any) -> str:
    if not isinstance(key_, str):
        raise _Untranslatable(f"key {key_!r}")
    return key_.replace("[]", "")


def _related(a: str, b: str) -> bool:
    return a == b or a.startswith(b + ".") or b.startswith(a + ".")


def _touched(path: str, mapping: MappingSpec, subtree: bool = False) -> bool:
    """Whether the mapping may change what the target holds at `path`."""
    overwritten = [*mapping.set, *mapping.rename.values(), *mapping.exclude]
    if mapping.keep_original_id_as:
        overwritten.append(mapping.keep_original_id_as)
    if any(_related(path, _path(p)) for p in overwritten):
        return True
    if mapping.include is not None and not any(
        path == _path(p) or path.startswith(_path(p) + ".") for p in mapping.include
    ):
        return True
    return subtree and any(_related(path, _path(p)) for p in mapping.rename)


def _key(key_: Any, mapping: MappingSpec) -> str:
    path = _path(key_)
    renamed = [(s, t) for s, t in mapping.rename.items() if _related(path, _path(s))]
    if renamed:
        source, target = renamed[0]
        if (
            len(renamed) == 1
            and key_ == source
            and not _touched(_path(target), _unrenamed(mapping, source))
        ):
            return target
        raise _Untranslatable(f"key {key_!r}")
    if _touched(path, mapping):
        raise _Untranslatable(f"key {key_!r}")
    return str(key_)


def _unrenamed(mapping: MappingSpec, source: str) -> MappingSpec:
    """The mapping without one rename, to check nothing else lands on its target."""
    import dataclasses

    rename = {s: t for s, t in mapping.rename.items() if s != source}
    return dataclasses.replace(mapping, rename=rename, include=None)


@dataclass
class Deletes:
    """The points a pass deletes (or, dry, would delete): a count and a few IDs."""

    count: int = 0
    examples: list[Any] = field(default_factory=list)


def find_and_delete(
    target: QdrantTarget,
    where: Scope,
    source_keys: Iterator[int],
    dry_run: bool,
    job_label: str,
    on_progress: Callable[[int], None] | None = None,
) -> Deletes:
    """Scroll the target within the scope, in ID order, against the source's sorted IDs;
    delete (unless `dry_run`) every point the source lacks, a scroll page at a time."""
    found = Deletes()
    scroll_filter = models.Filter.model_validate(where.filter) if where.filter else None
    constants = list(where.constants)
    offset: Any = None
    last = -1
    source = next(source_keys, None)
    while True:

        def page(offset: Any = offset) -> Any:
            with target.connection.lock:
                return target.client.scroll(
                    target.collection,
                    scroll_filter=scroll_filter,
                    limit=SCROLL_PAGE,
                    offset=offset,
                    with_payload=constants or False,
                    with_vectors=False,
                )

        points, offset = retried(page, f"{job_label}: reading the target's point IDs")
        doomed = []
        for point in points:
            k = key(point.id)
            if k <= last:  # the merge relies on the order: never delete on a guess
                raise QmigrateError(
                    f"{job_label}: the target scrolled point {point.id!r} after a larger ID; "
                    "sync relies on Qdrant's ID order and deletes nothing"
                )
            last = k
            while source is not None and source < k:
                source = next(source_keys, None)
            if source == k or not _has_constants(point.payload or {}, where.constants):
                continue
            doomed.append(point.id)
        if doomed:
            found.count += len(doomed)
            found.examples += doomed[: max(0, EXAMPLES - len(found.examples))]
            if not dry_run:
                selector = models.PointIdsList(points=doomed)

                def delete(selector: models.PointIdsList = selector) -> None:
                    with target.connection.lock:
                        target.client.delete(target.collection, points_selector=selector, wait=True)

                retried(delete, f"{job_label}: deleting points the source no longer has")
            if on_progress is not None:
                on_progress(len(doomed))
        if offset is None:
            return found


def _has_constants(payload: dict[str, Any], constants: dict[str, Any]) -> bool:
    held = plain(payload) if constants else {}
    return all(name in held and same(value, held[name]) for name, value in constants.items())
