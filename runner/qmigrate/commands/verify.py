"""`qmigrate verify`: prove a migration right, by counts, sampled equality and search."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qmigrate.commands.common import add_job_options, emit, fail_json, load_jobs
from qmigrate.errors import EXIT_CHECK_FAILED, QmigrateError, invalid

if TYPE_CHECKING:  # imports qdrant-client: slow, and only needed to run
    from qmigrate.engine import Resolved
    from qmigrate.verify import Report


def add_verify_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("verify options (override the job's verify: section)")
    group.add_argument(
        "--sample",
        metavar="N|all",
        help="source records compared point by point with the target (default 1000)",
    )
    group.add_argument("--queries", type=int, metavar="M", help="top-k queries (default 50)")
    group.add_argument("--top-k", type=int, metavar="K", help="results per query (default 10)")
    group.add_argument(
        "--min-overlap",
        type=float,
        metavar="X",
        help="least mean overlap@k between source and target (default 0.8)",
    )
    group.add_argument(
        "--report", metavar="FILE", help="also write a Markdown report (CI summary, PR comment)"
    )


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "verify",
        help="check the target against the source: counts, sampled points, search (read-only)",
        description="Check each job's target against its source, writing to neither: the "
        "count check, a random sample of source records mapped as apply maps them and "
        "compared field by field with the target's points, top-k search agreement, and the "
        "collection's health. Exit 0 if every check passes, 3 if one fails.",
    )
    add_job_options(parser, markdown=True)
    add_verify_options(parser)
    parser.set_defaults(run=run)


def overrides(args: argparse.Namespace) -> dict[str, Any]:
    sample = args.sample
    if sample is not None and sample != "all":
        if not sample.isdigit() or int(sample) < 1:
            raise invalid(f"--sample {sample}: expected a positive number or all")
        sample = int(sample)
    return {
        "sample": sample,
        "queries": args.queries,
        "top_k": args.top_k,
        "min_overlap": args.min_overlap,
    }


def verify_job(resolved: Resolved, args: argparse.Namespace) -> Report:
    from qmigrate.verify import Settings, verify

    return verify(resolved, Settings.of(resolved.job.verify, overrides(args)))


def write_report(args: argparse.Namespace, reports: list[Report]) -> None:
    from qmigrate.verify import render_markdown

    if args.report:
        Path(args.report).write_text(render_markdown(reports))


def run(args: argparse.Namespace) -> int:
    from qmigrate import engine
    from qmigrate.verify import render_markdown, render_text

    reports: list[Report] = []
    try:
        overrides(args)  # a bad option fails before any connection
        for job in load_jobs(args):
            resolved = engine.resolve(job, read_only=True)
            try:
                reports.append(verify_job(resolved, args))
            finally:
                resolved.close()
    except QmigrateError as exc:
        return fail_json(args, {"jobs": [r.to_json() for r in reports]}, exc)
    write_report(args, reports)
    ok = all(r.ok for r in reports)
    emit(
        args,
        {"ok": ok, "jobs": [r.to_json() for r in reports]},
        "\n".join(render_text(r) for r in reports),
        render_markdown(reports),
    )
    return 0 if ok else EXIT_CHECK_FAILED
