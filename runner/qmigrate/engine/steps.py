"""What `apply` will do with a resolved job, worked out once: `plan` shows it and `apply`
carries it out, so the two cannot drift apart."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from qmigrate.engine.preflight import refusals
from qmigrate.engine.wiring import Resolved
from qmigrate.records import IndexSpec

CREATE = "create"
USE_EXISTING = "use existing"
DROP_AND_RECREATE = "drop and recreate"
MISSING = "fail: missing"
INCOMPATIBLE = "incompatible"


@dataclass
class Steps:
    """The steps of one run, in the order `apply` takes them."""

    refusals: list[str]  # any: apply writes nothing
    already_done: bool  # a finished run that resumes: only the count check is left
    collection: str  # CREATE, USE_EXISTING, DROP_AND_RECREATE, MISSING or INCOMPATIBLE
    problems: list[str]  # why the existing collection cannot take the job
    create_arguments: dict[str, Any] | None  # create_collection's, where it is created
    payload_indexes: dict[str, IndexSpec]  # created before any data moves
    starts_over: bool  # old checkpoints deleted, the source split anew
    checkpoint: str  # what the checkpoints hold, as plan says it

    @property
    def creates_collection(self) -> bool:
        return self.collection in (CREATE, DROP_AND_RECREATE)


def steps(resolved: Resolved) -> Steps:
    job, state, target = resolved.job, resolved.state, resolved.target
    restarts = job.restart in ("restart", "recreate")
    problems: list[str] = []
    if resolved.collection is None:
        collection = CREATE if job.target.on_missing == "create" else MISSING
    else:
        problems = target.mismatches(resolved.collection, resolved.layout)
        collection = INCOMPATIBLE if problems else USE_EXISTING
        if job.restart == "recreate":
            collection = DROP_AND_RECREATE
    creates = collection in (CREATE, DROP_AND_RECREATE)
    return Steps(
        refusals=refusals(resolved),
        already_done=resolved.finished and not restarts,
        collection=collection,
        problems=problems,
        create_arguments=target.create_arguments(resolved.layout, resolved.info)
        if creates
        else None,
        payload_indexes=target.missing_payload_indexes(
            resolved.payload_indexes, None if creates else resolved.collection
        ),
        starts_over=state is None or restarts,
        checkpoint=_checkpoint_label(resolved, restarts),
    )


def _checkpoint_label(resolved: Resolved, restarts: bool) -> str:
    state, states = resolved.state, resolved.partition_states
    if state is None:
        return "none"
    if resolved.fingerprint_changed:
        return "changed job (" + ("will start over" if restarts else "apply will refuse") + ")"
    if resolved.finished:
        return "done (will start over)" if restarts else "done (apply is a no-op)"
    done = sum(1 for p in state.partitions if states.get(p.key) and states[p.key].done)
    return f"in progress ({done}/{len(state.partitions)} partitions done)"
