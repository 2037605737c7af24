"""`qmigrate rollback`: point the job's alias back at what it named before the cutover."""

from __future__ import annotations

import argparse
from typing import Any

from qmigrate.commands.common import add_job_options, emit, fail_json, load_jobs
from qmigrate.errors import QmigrateError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "rollback",
        help="point target.alias back at what it named before the last cutover",
        description="Undo the job's recorded cutover in one atomic alias request: the alias "
        "names again the collection it named before, or is deleted if it named nothing. "
        "Exits 1 when no cutover is recorded, or when the alias was changed since by "
        "something else.",
    )
    add_job_options(parser, many=False, markdown=True)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from qmigrate import alias, engine

    data: dict[str, Any] = {}
    try:
        job = load_jobs(args)[0]
        data = {"job": job.name}
        with engine.target_and_store(job) as (target, store):
            record = alias.rollback(target, store, job.name)
    except QmigrateError as exc:
        return fail_json(args, data, exc)
    data.update(alias=record.alias, collection=record.collection, restored=record.previous)
    emit(args, {"ok": True, **data}, render_text(data), render_markdown(data))
    return 0


def _restored(data: dict[str, Any]) -> str:
    if data["restored"]:
        return f"points at '{data['restored']}' again"
    return "is deleted (it named nothing before the cutover)"


def render_text(data: dict[str, Any]) -> str:
    return (
        f"rollback {data['job']}: alias '{data['alias']}' {_restored(data)}, "
        f"instead of '{data['collection']}'"
    )


def render_markdown(data: dict[str, Any]) -> str:
    from qmigrate import markdown as md

    rows = [
        ("alias", md.code(data["alias"])),
        ("points at", md.code(data["restored"]) if data["restored"] else "deleted"),
        ("pointed at", md.code(data["collection"])),
    ]
    heading = md.heading("rollback", data["job"], True, "alias restored")
    return md.document([[heading, "", *md.table(("item", "value"), rows)]])
