"""`target.alias`: where the alias readers use points, moving it in one atomic request, and
the record of what it named before a cutover (kept in the job's checkpoint store, so
`rollback` can point it back).

Qdrant applies one `update_collection_aliases` request as a whole: a delete and a create of
the same alias in one request switch readers from one collection to the other with no
moment where the alias names nothing.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

from qdrant_client import models

from qmigrate.checkpoint import CheckpointStore
from qmigrate.errors import QmigrateError
from qmigrate.target import QdrantTarget

RECORD_VERSION = 1


@dataclass
class CutoverRecord:
    """What one cutover changed: the alias, what it named before (None: nothing), and the
    collection it names since."""

    alias: str
    previous: str | None
    collection: str
    at: float
    version: int = RECORD_VERSION

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CutoverRecord:
        if data.get("version", 1) > RECORD_VERSION:
            raise QmigrateError(
                f"the cutover record was written by a newer qmigrate (version "
                f"{data['version']}, this one reads up to {RECORD_VERSION}): upgrade qmigrate"
            )
        return cls(**{k: data[k] for k in ("alias", "previous", "collection", "at")})


def load_record(store: CheckpointStore, job: str) -> CutoverRecord | None:
    data = store.load_cutover(job)
    return CutoverRecord.from_json(data) if data else None


def save_record(store: CheckpointStore, job: str, record: CutoverRecord | None) -> None:
    store.save_cutover(job, record.to_json() if record else None)


def collections(target: QdrantTarget) -> set[str]:
    """Names of the collections (not aliases) the target holds."""
    with target.connection.lock:
        return {c.name for c in target.client.get_collections().collections}


def points_at(target: QdrantTarget, alias: str) -> str | None:
    """The collection `alias` names now; None when there is no such alias."""
    with target.connection.lock:
        found = target.client.get_aliases().aliases
    return next((a.collection_name for a in found if a.alias_name == alias), None)


def refusal(target: QdrantTarget, alias: str) -> str | None:
    """Why the alias cannot be pointed at the job's collection; None when it can."""
    names = collections(target)
    if alias in names:
        return f"target.alias '{alias}' is the name of a collection, not of an alias"
    if target.collection not in names:
        return f"target collection '{target.collection}' does not exist: apply the job first"
    return None


def switch(target: QdrantTarget, alias: str, to: str | None, now: str | None) -> None:
    """Point `alias` at `to` (None: delete it), in one request: the delete of what it names
    `now` and the create go together."""
    actions: list[Any] = []
    if now is not None:
        actions.append(
            models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=alias))
        )
    if to is not None:
        actions.append(
            models.CreateAliasOperation(
                create_alias=models.CreateAlias(collection_name=to, alias_name=alias)
            )
        )
    if not actions:
        return
    with target.connection.lock:
        target.client.update_collection_aliases(change_aliases_operations=actions)


def cutover(
    target: QdrantTarget, store: CheckpointStore, job: str, alias: str
) -> tuple[CutoverRecord, bool]:
    """Point the alias at the job's collection and record what it named before; (the record,
    whether the alias moved). An alias that names it already is left as it is, and an
    earlier record kept."""
    now = points_at(target, alias)
    if now == target.collection:
        existing = load_record(store, job)
        if existing is not None and existing.alias == alias:
            return existing, False
        return CutoverRecord(alias, now, target.collection, time.time()), False
    record = CutoverRecord(alias, now, target.collection, time.time())
    save_record(store, job, record)  # before the switch: a rollback always knows the way back
    switch(target, alias, target.collection, now)
    return record, True


def rollback(target: QdrantTarget, store: CheckpointStore, job: str) -> CutoverRecord:
    """Point the alias back at what it named before the recorded cutover (or delete it)."""
    record = load_record(store, job)
    if record is None:
        raise QmigrateError(f"job '{job}' has no recorded cutover to roll back")
    now = points_at(target, record.alias)
    if now not in (record.collection, record.previous):
        raise QmigrateError(
            f"alias '{record.alias}' names '{now}' now, not '{record.collection}' as the "
            "cutover left it: not rolling back over a change made since"
        )
    if record.previous is not None and record.previous not in collections(target):
        raise QmigrateError(
            f"alias '{record.alias}' named '{record.previous}' before the cutover, and that "
            "collection is gone: not rolling back"
        )
    if now != record.previous:
        switch(target, record.alias, record.previous, now)
    save_record(store, job, None)
    return record
