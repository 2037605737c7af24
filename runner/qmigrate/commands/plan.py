"""`qmigrate plan`: connect to both ends and show what `apply` would do, writing nothing."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from qmigrate.commands.common import add_job_options, emit, fail_json, load_jobs
from qmigrate.errors import QmigrateError
from qmigrate.records import VectorField, index_text
from qmigrate.redaction import mask_secrets

if TYPE_CHECKING:  # the engine imports qdrant-client: slow, and only needed to run
    from qmigrate.engine import Resolved


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "plan",
        help="connect and show what apply would do (writes nothing)",
        description="Connect to the source and the target and show what apply would do: what "
        "the source holds, whether the target collection exists and fits, what would be "
        "created, the checkpoint state and the partitions. Nothing is written.",
    )
    add_job_options(parser, markdown=True)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from qmigrate import engine

    plans: list[dict[str, Any]] = []
    try:
        for job in load_jobs(args):
            resolved = engine.resolve(job, read_only=True)
            try:
                plans.append(build_plan(resolved))
            finally:
                resolved.close()
    except QmigrateError as exc:
        if args.output == "markdown":  # a PR comment must say what is wrong
            print(render_markdown(plans, exc.message), end="")
        return fail_json(args, {"jobs": plans}, exc)
    refused = [reason for p in plans for reason in p["refusals"]]
    text = "\n\n".join(render_text(p) for p in plans)
    markdown = render_markdown(plans)
    if refused:
        # The plan is still shown: what apply would stop at is part of it.
        error = QmigrateError("apply would refuse: " + "; ".join(refused))
        if args.output == "text":
            print(text)
        elif args.output == "markdown":
            print(markdown, end="")
        return fail_json(args, {"jobs": plans}, error)
    emit(args, {"ok": True, "jobs": plans}, text, markdown)
    return 0


def _vector(field: VectorField) -> dict[str, Any]:
    return {"name": field.name, "kind": field.kind, "size": field.size, "distance": field.distance}


def build_plan(resolved: Resolved) -> dict[str, Any]:
    from qmigrate import engine, on_existing
    from qmigrate.checkpoint import totals
    from qmigrate.engine.counts import RESTART_KEEPS_STALE_POINTS
    from qmigrate.engine.steps import steps
    from qmigrate.mapping import keys_no_field_has

    job, info, target = resolved.job, resolved.info, resolved.target
    todo = steps(resolved)
    create = None
    if todo.create_arguments is not None:
        arguments = todo.create_arguments
        create = json.loads(
            json.dumps(
                {k: v for k, v in arguments.items() if k != "collection_name"},
                default=lambda m: (
                    m.model_dump(mode="json", exclude_none=True)
                    if hasattr(m, "model_dump")
                    else str(m)
                ),
            )
        )
    if todo.starts_over:
        with engine.before_data_moves(resolved.source):
            partitions = resolved.source.partitions(job.partition_count)
    else:
        assert resolved.state is not None
        partitions = resolved.state.partitions
    points = totals(resolved.partition_states.values()).written if resolved.state else 0
    pushed = job.filter is not None and resolved.residual_filter != job.filter
    return {
        "job": job.name,
        "file": str(job.file),
        "source": {
            "type": job.source["type"],
            "count": info.count,
            "vectors": [_vector(v) for v in info.vectors],
            "payload_fields": info.payload_fields,
            "payload_indexes": info.payload_indexes,
            "details": mask_secrets(info.details),
        },
        "filter": {
            "given": job.filter,
            "pushed_down": pushed,
            "client_side": resolved.residual_filter,
        },
        "target": {
            "collection": job.target.collection,
            "location": target.connection.where,
            "transport": target.connection.transport,
            "action": todo.collection,
            "problems": todo.problems,
            "vectors": [_vector(v) for v in resolved.layout.values()],
            "create": create,
            "payload_indexes_to_create": todo.payload_indexes,
            "bulk_load": job.target.bulk_load,
            "on_existing": on_existing.method(target),
            "sharding": target.shard_keys.describe(target.connection.local),
            "strict_mode": strict_mode_plan(resolved.collection, todo.creates_collection),
            "alias": alias_plan(target),
        },
        "checkpoint": {"store": job.checkpoint_store, "state": todo.checkpoint, "points": points},
        "partitions": [{"key": p.key, **p.spec} for p in partitions],
        "batch_size": job.batch_size,
        "parallelism": job.concurrency,
        "executor": job.executor.type,
        "restart": job.restart,
        "notes": [RESTART_KEEPS_STALE_POINTS] if job.restart == "restart" else [],
        "warnings": alias_warnings(target)
        + [
            f"filter key '{key}' is no payload field the source showed "
            f"({', '.join(info.payload_fields)}): it selects as if the field were missing. "
            "Filters name payload keys as records hold them"
            for key in keys_no_field_has(job.filter, info.payload_fields)
        ],
        "refusals": todo.refusals,
    }


def strict_mode_plan(collection: Any, creates: bool) -> list[str] | None:
    """The limits of the existing collection's strict mode that the run obeys; None when it
    is off, or the collection is (re)created (a server default is read at the first write)."""
    from qmigrate.strict_mode import StrictMode

    strict = None if creates else StrictMode.of(collection)
    return strict.describe() if strict is not None else None


def alias_plan(target: Any) -> dict[str, Any] | None:
    """Where target.alias points now, and where cutover will point it (plan, status)."""
    from qmigrate import alias

    name = target.spec.alias
    if not name:
        return None
    return {"name": name, "now": alias.points_at(target, name), "cutover_to": target.collection}


def alias_warnings(target: Any) -> list[str]:
    from qmigrate import alias

    if not target.spec.alias or target.spec.alias not in alias.collections(target):
        return []
    return [f"cutover would refuse: target.alias '{target.spec.alias}' is a collection's name"]


def describe_alias(plan: dict[str, Any] | None) -> str:
    if plan is None:
        return "none"
    now = f"names '{plan['now']}' now" if plan["now"] else "does not exist yet"
    return f"'{plan['name']}' {now}; cutover points it at '{plan['cutover_to']}'"


def _describe_vector(v: dict[str, Any]) -> str:
    name = f"'{v['name']}'" if v["name"] else "(unnamed)"
    if v["kind"] == "sparse":
        return f"{name} sparse"
    return f"{name} {v['kind']} {v['size']} {v['distance']}"


def render_text(plan: dict[str, Any]) -> str:
    source, target, flt = plan["source"], plan["target"], plan["filter"]
    count = "unknown" if source["count"] is None else f"{source['count']:,}"
    lines = [
        f"job {plan['job']} ({plan['file']})",
        f"  source: {source['type']}, {count} records",
        "    vectors: " + "; ".join(_describe_vector(v) for v in source["vectors"]),
        "    payload fields (sample): " + (", ".join(source["payload_fields"]) or "none"),
    ]
    for key, value in source["details"].items():
        shown = value if isinstance(value, str) else json.dumps(value)
        lines.append(f"    {key.replace('_', ' ')}: {shown}")
    if source["payload_indexes"]:
        indexes = ", ".join(f"{k} ({index_text(v)})" for k, v in source["payload_indexes"].items())
        lines.append(f"    payload indexes: {indexes}")
    if flt["given"] is None:
        lines.append("  filter: none")
    elif flt["client_side"] is None:
        lines.append("  filter: pushed down to the source entirely")
    else:
        where = "partly pushed down; the rest" if flt["pushed_down"] else "the whole filter"
        lines.append(f"  filter: {where} evaluated client-side: {json.dumps(flt['client_side'])}")
    lines.append(
        f"  target: collection '{target['collection']}' at {target['location']} "
        f"over {target['transport']}: {target['action']}"
    )
    lines.append("    vectors: " + "; ".join(_describe_vector(v) for v in target["vectors"]))
    for problem in target["problems"]:
        lines.append(f"    problem: {problem}")
    if target["create"]:
        extras = {
            k: v
            for k, v in target["create"].items()
            if k not in ("vectors_config", "sparse_vectors_config")
        }
        if extras:
            lines.append(f"    create with: {json.dumps(extras)}")
    if target["payload_indexes_to_create"]:
        indexes = ", ".join(
            f"{k} ({index_text(v)})" for k, v in target["payload_indexes_to_create"].items()
        )
        lines.append(f"    payload indexes to create: {indexes}")
    if target["bulk_load"]:
        lines.append("    bulk load: HNSW indexing off during the load, restored after")
    lines.append(f"    existing points: {target['on_existing']}")
    lines.append(f"    sharding: {target['sharding']}")
    if target["strict_mode"] is not None:
        lines.append("    strict mode: " + "; ".join(target["strict_mode"]))
    if target["alias"] is not None:
        lines.append(f"    alias: {describe_alias(target['alias'])}")
    checkpoint = plan["checkpoint"]
    lines.append(
        f"  checkpoint ({checkpoint['store']}): {checkpoint['state']}, "
        f"{checkpoint['points']:,} points written"
    )
    lines.append(
        f"  partitions: {len(plan['partitions'])}, parallelism {plan['parallelism']} "
        f"({plan['executor']}), batch size {plan['batch_size']}, restart: {plan['restart']}"
    )
    lines += [f"  note: {note}" for note in plan["notes"]]
    lines += [f"  warning: {warning}" for warning in plan["warnings"]]
    lines += [f"  apply would refuse: {reason}" for reason in plan["refusals"]]
    return "\n".join(lines)


CHANGED_JOB_ADVICE = (
    "The job file changed what gets written since its last run, so apply refuses to resume "
    "(its checkpoints belong to the old version). To move everything again under the new "
    "version, set `restart: restart` (or run `qmigrate reset` on it); to resume the old "
    "run, revert the change."
)


def render_markdown(plans: list[dict[str, Any]], error: str | None = None) -> str:
    """One document for every job, for a PR comment: what apply would do, and what stops it
    (`error`: why plan stopped, e.g. an invalid job file, after the jobs it described)."""
    from qmigrate import markdown as md

    sections = []
    for plan in plans:
        source, target, flt = plan["source"], plan["target"], plan["filter"]
        checkpoint = plan["checkpoint"]
        refused = bool(plan["refusals"])
        count = "unknown" if source["count"] is None else f"{source['count']:,}"
        action = target["action"]
        mark = md.FAIL if action == "incompatible" or action.startswith("fail") else md.PASS
        lines = [
            md.heading(
                "plan", plan["job"], not refused, "apply would refuse" if refused else "ready"
            ),
            "",
            f"Job file {md.code(plan['file'])}",
            "",
        ]
        rows = [
            ("source", f"{source['type']}, {count} records"),
            ("source vectors", "; ".join(_describe_vector(v) for v in source["vectors"])),
            *((f"source {k.replace('_', ' ')}", v) for k, v in source["details"].items()),
            ("target", f"collection {md.code(target['collection'])} at {target['location']}"),
            ("target action", f"{mark} {action}"),
            ("target vectors", "; ".join(_describe_vector(v) for v in target["vectors"])),
            ("existing points", target["on_existing"]),
            ("sharding", target["sharding"]),
            *([("strict mode", "; ".join(target["strict_mode"]))] if target["strict_mode"] else []),
            *([("alias", describe_alias(target["alias"]))] if target["alias"] else []),
            ("filter", _describe_filter(flt)),
            (
                "checkpoint",
                f"{checkpoint['state']}, {checkpoint['points']:,} points written "
                f"({checkpoint['store']} store)",
            ),
            (
                "partitions",
                f"{len(plan['partitions'])}, parallelism {plan['parallelism']}, "
                f"batch size {plan['batch_size']}, restart: {plan['restart']}",
            ),
        ]
        if target["payload_indexes_to_create"]:
            indexes = ", ".join(
                f"{k} ({index_text(v)})" for k, v in target["payload_indexes_to_create"].items()
            )
            rows.append(("payload indexes to create", indexes))
        lines += md.table(("item", "value"), rows)
        lines += md.bullets("Target problems", target["problems"])
        lines += md.bullets("Apply would refuse", plan["refusals"])
        if checkpoint["state"].startswith("changed job") and refused:
            lines += ["", f"{md.WARN} {CHANGED_JOB_ADVICE}"]
        lines += md.bullets("Notes", plan["notes"])
        lines += md.bullets("Warnings", plan["warnings"])
        sections.append(lines)
    if error is not None:
        sections.append([f"### qmigrate plan: {md.FAIL} stopped", "", "```", error, "```"])
    return md.document(sections)


def _describe_filter(flt: dict[str, Any]) -> str:
    if flt["given"] is None:
        return "none"
    if flt["client_side"] is None:
        return "pushed down to the source entirely"
    where = "partly pushed down; the rest" if flt["pushed_down"] else "not pushed down; all"
    return f"{where} evaluated client-side: {json.dumps(flt['client_side'])}"
