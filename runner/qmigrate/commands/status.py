"""`qmigrate status`: per-partition progress, read from the checkpoints."""

from __future__ import annotations

import argparse
from typing import Any

from qmigrate.commands.common import add_job_options, emit, fail_json, load_jobs
from qmigrate.errors import QmigrateError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "status",
        help="show per-partition progress from the checkpoints",
        description="Show how far each job got, partition by partition, from its checkpoints, "
        "where a job's target.alias points, and its last sync pass. Only the checkpoint store (and, for a job "
        "with an alias, the target) is contacted, not the source.",
    )
    add_job_options(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from qmigrate.checkpoint import PartitionState, totals
    from qmigrate.engine import checkpoint_store  # imports qdrant-client: only when needed
    from qmigrate.sync import history

    reports: list[dict[str, Any]] = []
    try:
        for job in load_jobs(args):
            with checkpoint_store(job) as store:
                state = store.load_job(job.name)
                states = store.load_partitions(job.name) if state else {}
                sync = history.status(store, job.name)
            in_order = (
                [states.get(p.key, PartitionState(p.key)) for p in state.partitions]
                if state
                else []
            )
            partitions = [vars(s) for s in in_order]
            if state is None:
                label = "not started"
            elif state.fingerprint != job.fingerprint():
                label = "checkpoints are from a different version of this job"
            elif all(p["done"] for p in partitions):
                label = "done"
            else:
                label = "in progress"
            reports.append(
                {
                    "job": job.name,
                    "status": label,
                    "points": totals(in_order).written,
                    "partitions": partitions,
                    "alias": alias_status(job),
                    "sync": sync,
                }
            )
    except QmigrateError as exc:
        return fail_json(args, {"jobs": reports}, exc)
    emit(args, {"ok": True, "jobs": reports}, "\n".join(render_text(r) for r in reports))
    return 0


def alias_status(job: Any) -> dict[str, Any] | None:
    """Where the alias points now, where cutover points it, and the recorded cutover."""
    from qmigrate import alias, engine
    from qmigrate.commands.plan import alias_plan

    if not job.target.alias:
        return None
    with engine.target_and_store(job) as (target, store):
        plan = alias_plan(target)
        assert plan is not None
        record = alias.load_record(store, job.name)
    plan["cutover"] = record.to_json() if record else None
    return plan


def render_text(report: dict[str, Any]) -> str:
    parts = report["partitions"]
    done = sum(1 for p in parts if p["done"])
    lines = [
        f"job {report['job']}: {report['status']}, {report['points']:,} points written, "
        f"{done}/{len(parts)} partitions done"
    ]
    if report["alias"] is not None:
        from qmigrate.commands.plan import describe_alias

        lines.append(f"  alias: {describe_alias(report['alias'])}")
        record = report["alias"]["cutover"]
        if record:
            before = f"'{record['previous']}'" if record["previous"] else "nothing"
            lines.append(f"  last cutover: named {before} before; `rollback` points it back")
    if report["sync"] is not None:
        from qmigrate.sync import history

        lines += history.render_text(report["sync"])
    for p in parts:
        mark = "done" if p["done"] else ("started" if p["cursor"] is not None else "pending")
        lines.append(f"  {p['key']}: {mark}, {p['points']:,} points")
    return "\n".join(lines)
