"""`qmigrate cutover`: verify the job, then point its alias at its collection in one request."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from qmigrate.commands.common import add_job_options, emit, fail_json, load_jobs, print_error
from qmigrate.commands.verify import add_verify_options, overrides, verify_job
from qmigrate.errors import EXIT_CHECK_FAILED, QmigrateError, invalid

if TYPE_CHECKING:  # imports qdrant-client: slow, and only needed to run
    from qmigrate.checkpoint import CheckpointStore
    from qmigrate.engine import Resolved
    from qmigrate.spec import Job
    from qmigrate.target import QdrantTarget


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "cutover",
        help="verify, then point target.alias at the job's collection (one atomic request)",
        description="Run verify with the job's settings; if every check passes, point the "
        "job's target.alias at its collection in one atomic alias request and record what "
        "the alias named before (for `qmigrate rollback`). A failing verify exits 3 and "
        "leaves the alias as it was. Refused while an apply or sync of the job holds its "
        "lease, or when the alias is the name of a collection.",
    )
    add_job_options(parser, many=False, markdown=True)
    parser.add_argument(
        "--no-verify",
        action="store_true",
        help="point the alias without running verify first (the output says so)",
    )
    add_verify_options(parser)
    parser.set_defaults(run=run)


def alias_of(job: Job) -> str:
    if not job.target.alias:
        raise invalid(f"{job.file}: job '{job.name}' has no target.alias to cut over")
    return job.target.alias


@contextlib.contextmanager
def opened(
    job: Job, with_source: bool
) -> Iterator[tuple[QdrantTarget, CheckpointStore, Resolved | None]]:
    """(target, store, resolved): the whole job resolved for verify, else its target alone."""
    from qmigrate import engine

    if not with_source:
        with engine.target_and_store(job) as (target, store):
            yield target, store, None
        return
    resolved = engine.resolve(job, read_only=True)
    try:
        yield resolved.target, resolved.store, resolved
    finally:
        resolved.close()


def run(args: argparse.Namespace) -> int:
    from qmigrate import alias
    from qmigrate.engine.lease import JobLease
    from qmigrate.engine.wiring import on_stderr

    data: dict[str, Any] = {}
    try:
        overrides(args)  # a bad option fails before any connection
        job = load_jobs(args)[0]
        name = alias_of(job)
        data = {"job": job.name, "alias": name, "collection": job.target.collection}
        with opened(job, with_source=not args.no_verify) as (target, store, resolved):
            if (refused := alias.refusal(target, name)) is not None:
                raise QmigrateError(f"cutover of job '{job.name}': {refused}")
            try:
                lease = JobLease(store, job, False, on_stderr, command="cutover").__enter__()
            except QmigrateError as exc:
                raise QmigrateError(f"cutover refused: {exc.message}") from None
            try:
                data["verify"] = "skipped (--no-verify)"
                if resolved is not None:
                    report = verify_job(resolved, args)
                    data["verify"] = report.to_json()
                    if not report.ok:
                        return _failed_verify(args, data, report, alias.points_at(target, name))
                record, changed = alias.cutover(target, store, job.name, name)
            finally:
                lease.__exit__(None, None, None)
    except QmigrateError as exc:
        return fail_json(args, data, exc)
    data.update(previous=record.previous, changed=changed, file=args.jobs[0])
    emit(args, {"ok": True, **data}, render_text(data), render_markdown(data))
    return 0


def _failed_verify(
    args: argparse.Namespace, data: dict[str, Any], report: Any, now: str | None
) -> int:
    from qmigrate.verify import render_markdown as verify_markdown
    from qmigrate.verify import render_text as verify_text

    data.update(previous=now, changed=False)
    left = f"alias '{data['alias']}' left as it was ({_named(now)})"
    emit(
        args,
        {"ok": False, **data, "error": f"verify failed: {left}"},
        verify_text(report),
        verify_markdown([report]),
    )
    print_error(f"cutover of job '{data['job']}': verify failed: {left}")
    return EXIT_CHECK_FAILED


def _named(collection: str | None) -> str:
    return f"names '{collection}'" if collection else "no such alias"


def _verify_line(data: dict[str, Any]) -> str:
    verify = data["verify"]
    if isinstance(verify, str):
        return f"verify {verify}"
    return f"verify passed ({len(verify['checks'])} checks)"


def render_text(data: dict[str, Any]) -> str:
    alias, collection, previous = data["alias"], data["collection"], data["previous"]
    if not data["changed"]:
        moved = f"alias '{alias}' already points at '{collection}': nothing changed"
    else:
        before = f"before: '{previous}'" if previous else "created: it named nothing before"
        moved = f"alias '{alias}' now points at '{collection}' ({before})"
    lines = [f"cutover {data['job']}: {_verify_line(data)}", f"  {moved}"]
    if data["changed"]:
        lines.append(f"  undo with: qmigrate rollback {data['file']}")
    return "\n".join(lines)


def render_markdown(data: dict[str, Any]) -> str:
    from qmigrate import markdown as md

    rows = [
        ("verify", _verify_line(data)),
        ("alias", md.code(data["alias"])),
        ("points at", md.code(data["collection"])),
        ("named before", md.code(data["previous"]) if data["previous"] else "nothing"),
    ]
    verdict = "alias moved" if data["changed"] else "already there"
    return md.document(
        [
            [
                md.heading("cutover", data["job"], True, verdict),
                "",
                *md.table(("item", "value"), rows),
            ]
        ]
    )
