"""Every reason `apply` stops before it writes anything; `plan` reports the same."""

from __future__ import annotations

from typing import Any

from qmigrate import on_existing
from qmigrate.checkpoint import JobState
from qmigrate.engine.dead_letters import refusal as dead_letter_refusal
from qmigrate.engine.executors import executor
from qmigrate.engine.wiring import Resolved
from qmigrate.spec import Job
from qmigrate.strict_mode import StrictMode


def refusals(resolved: Resolved) -> list[str]:
    """Every reason `apply` would stop before writing anything; `plan` reports the same."""
    job, state = resolved.job, resolved.state
    reasons = executor(job).refusals(job)
    if job.on_invalid == "dead_letter" and (refused := dead_letter_refusal(job.dead_letter_path)):
        reasons.append(refused)
    if job.restart == "recreate":
        if not _may_recreate(resolved):
            reasons.append(
                f"restart: recreate drops only a collection this job created, and "
                f"'{job.target.collection}' existed before it (or its checkpoints are gone): "
                "delete the collection yourself, or use restart: restart"
            )
    else:
        reasons += _target_problems(resolved)
    if (keep_refused := on_existing.refusal(resolved.target)) is not None:
        reasons.append(keep_refused)
    if (keys_refused := resolved.target.shard_keys.refusal()) is not None:
        reasons.append(keys_refused)
    if state is not None and job.restart in ("resume", "fail"):
        conflicts = _resume_conflicts(resolved)
        reasons += conflicts
        if job.restart == "fail" and not conflicts and not resolved.finished:
            reasons.append(
                f"job '{job.name}' has an unfinished run and restart is fail: "
                "resume it with restart: resume, or run `qmigrate reset`"
            )
    return reasons


def _may_recreate(resolved: Resolved) -> bool:
    state = resolved.state
    if state is None:
        return resolved.collection is None
    return state.created_collection and _same_collection(state, resolved)


def _same_collection(state: JobState, resolved: Resolved) -> bool:
    return state.target is None or state.target["collection"] == resolved.job.target.collection


def _target_problems(resolved: Resolved) -> list[str]:
    job = resolved.job
    if resolved.collection is None:
        if job.target.on_missing == "fail":
            return [
                f"target collection '{job.target.collection}' does not exist "
                "(target.on_missing is fail)"
            ]
        return []
    problems = resolved.target.mismatches(resolved.collection, resolved.layout)
    if problems:
        return [
            f"target collection '{job.target.collection}' is incompatible: " + "; ".join(problems)
        ]
    return _strict_mode_refusals(resolved)


def _strict_mode_refusals(resolved: Resolved) -> list[str]:
    """A job that cannot fit the existing collection's strict-mode limits. Points it held
    before this job's first run count (a resumed run's own points are not counted twice)."""
    info = resolved.collection
    strict = StrictMode.of(info)
    if strict is None or info is None:
        return []
    state = resolved.state
    held = state.target_count_before if state is not None else (info.points_count or 0)
    return strict.refusals(resolved.job.target.collection, info, resolved.info.count, held)


def _resume_conflicts(resolved: Resolved) -> list[str]:
    """Why the saved checkpoints do not describe this job's data any more."""
    job, state = resolved.job, resolved.state
    assert state is not None
    conflicts = []
    if resolved.fingerprint_changed:
        conflicts.append(
            f"job '{job.name}' changed since its checkpoints were written "
            f"({_what_changed(state, job)}): resuming could mix two different migrations. "
            "Set restart: restart, or run `qmigrate reset`"
        )
    for what, how in _identity_changes(state.source_identity, resolved.source_identity):
        conflicts.append(
            f"source {what} changed since the checkpoints were written ({how}): "
            "use restart: restart"
        )
    here = resolved.target.identity
    if job.checkpoint_store == "file" and state.target is not None and state.target != here:
        conflicts.append(
            f"checkpoint file {job.checkpoint_path} holds job '{job.name}' for collection "
            f"'{state.target['collection']}' at {state.target['location']}, not "
            f"'{here['collection']}' at {here['location']}: give checkpoint.path another "
            "file, or set restart: restart"
        )
    return conflicts


def _what_changed(state: JobState, job: Job) -> str:
    if state.fingerprint_parts is None:  # checkpoints from before parts were recorded
        return f"fingerprint {state.fingerprint} -> {job.fingerprint()}"
    now = job.fingerprint_parts()
    saved = state.fingerprint_parts
    changed = sorted(k for k in saved.keys() | now.keys() if saved.get(k) != now.get(k))
    return "changed: " + ", ".join(changed)


def _identity_changes(saved: dict[str, Any] | None, now: dict[str, Any]) -> list[tuple[str, str]]:
    if saved is None:
        return []
    changes = []
    for what in sorted(saved.keys() | now.keys()):
        before, after = saved.get(what), now.get(what)
        if before == after:
            continue
        if before is None:
            changes.append((what, "it is new"))
        elif after is None:
            changes.append((what, "it is gone"))
        else:
            fields = [
                k for k in sorted(before.keys() | after.keys()) if before.get(k) != after.get(k)
            ]
            changes.append((what, "/".join(fields)))
    return changes
