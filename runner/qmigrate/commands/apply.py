"""`qmigrate apply`: run jobs; an interrupted job resumes from its checkpoints."""

from __future__ import annotations

import argparse
import gc
from typing import TYPE_CHECKING, Any

from qmigrate import spec
from qmigrate.commands.common import add_job_options, emit, fail_json, load_jobs
from qmigrate.commands.verify import add_verify_options, overrides, verify_job, write_report
from qmigrate.errors import EXIT_CHECK_FAILED, QmigrateError

if TYPE_CHECKING:  # the engine imports qdrant-client: slow, and only needed to run
    from qmigrate.engine import Summary
    from qmigrate.verify import Report


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "apply",
        help="run jobs (resumes interrupted ones; finished ones are a no-op)",
        description="Run each job: create or check the target collection, move the data in "
        "partitions with checkpoints, then check the counts. Jobs of a directory run in name "
        "order; the first failure stops the rest.",
    )
    add_job_options(parser, markdown=True)
    parser.add_argument(
        "--wait",
        action="store_true",
        help="if another run holds a job, wait for it to finish instead of exiting 1",
    )
    parser.add_argument(
        "--verify",
        action="store_true",
        help="run verify on each job right after it succeeds (exit 3 if a check fails)",
    )
    parser.add_argument(
        "--executor",
        choices=["local", "processes", "ray"],
        help="where partitions run, over the job's executor.type: local threads (the default), "
        "worker processes on this machine, or tasks on a Ray cluster "
        "(pip install 'qmigrate[ray]')",
    )
    parser.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="worker processes, over the job's executor.workers (with --executor processes; "
        "default: the CPU count)",
    )
    parser.add_argument(
        "--ray-address",
        metavar="ADDRESS",
        help="the Ray cluster, over the job's executor.address: auto (the default), HOST:PORT "
        "or ray://HOST:PORT",
    )
    add_verify_options(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from qmigrate import engine
    from qmigrate.verify import render_text as render_report

    summaries: list[dict[str, Any]] = []
    texts: list[str] = []
    reports: list[Report] = []
    try:
        overrides(args)  # a bad option fails before any data moves
        jobs = [
            spec.with_executor(job, args.executor, args.ray_address, args.workers)
            for job in load_jobs(args)
        ]
        for job in jobs:
            resolved = engine.resolve(job)
            # The clients' modules (qdrant-client's models above all) are some 10^5 objects
            # that live as long as the process; frozen, the cyclic collector stops walking
            # them while records stream through (a sixth of a JSONL job's CPU to a server;
            # bench/BENCHMARKS.md).
            gc.freeze()
            try:
                summary = engine.apply(resolved, wait=args.wait)
                summaries.append(summary.to_json())
                texts.append(render_text(summary))
                if args.verify:
                    reports.append(verify_job(resolved, args))
                    summaries[-1]["verify"] = reports[-1].to_json()
                    texts.append(render_report(reports[-1]))
            except engine.CountCheckFailed as exc:
                summaries.append(exc.summary.to_json())
                raise
            finally:
                resolved.close()
    except QmigrateError as exc:
        if args.output == "text" and texts:
            print("\n".join(texts))
        elif args.output == "markdown":
            print(render_markdown(summaries, reports, exc.message), end="")
        return fail_json(args, {"jobs": summaries}, exc)
    write_report(args, reports)
    ok = all(r.ok for r in reports)
    emit(args, {"ok": ok, "jobs": summaries}, "\n".join(texts), render_markdown(summaries, reports))
    return 0 if ok else EXIT_CHECK_FAILED


def render_text(summary: Summary) -> str:
    lines = [
        f"job {summary.job}: {summary.status}. read {summary.read:,}, wrote {summary.written:,}, "
        f"filtered out {summary.filtered:,}, invalid {summary.invalid:,}, "
        f"in {summary.elapsed:.1f}s ({summary.rate:,.0f} points/s)",
        f"  count check: {summary.count_check} (target holds {summary.target_count:,} points; "
        f"the job wrote {summary.total_points:,} over all runs)",
    ]
    if summary.duplicates:
        lines.append(f"  duplicate IDs: {summary.duplicates:,}")
    if summary.passed_over:
        lines.append(f"  passed over {summary.passed_over:,} entries the source does not hold")
    if summary.references_dropped:
        lines.append(
            f"  dropped {summary.references_dropped:,} cross-references "
            "(source references: keep keeps them as UUID lists)"
        )
    lines += [f"  note: {note}" for note in summary.notes]
    if summary.retries:
        lines.append(f"  retried {summary.retries:,} transient failures")
    if summary.dead_letter:
        lines.append(f"  invalid records were written to {summary.dead_letter}")
    return "\n".join(lines)


def render_markdown(
    summaries: list[dict[str, Any]], reports: list[Report], error: str | None = None
) -> str:
    """The CI job summary of a run: a table per job, verify's tables after, then the error."""
    from qmigrate import markdown as md
    from qmigrate.verify import render_markdown as render_reports

    sections = []
    for summary in summaries:
        ok = summary["count_check"] == "ok"
        lines = [md.heading("apply", summary["job"], ok, summary["status"]), ""]
        rows = [
            ("read", f"{summary['read']:,}"),
            ("written", f"{summary['written']:,}"),
            ("filtered out", f"{summary['filtered']:,}"),
            ("invalid", f"{summary['invalid']:,}"),
            ("duplicate IDs", f"{summary['duplicates']:,}"),
            ("retried", f"{summary['retries']:,}"),
            ("time", f"{summary['elapsed']:.1f}s ({summary['rate']:,.0f} points/s)"),
            (
                "count check",
                f"{md.PASS if ok else md.FAIL} {summary['count_check']} (target holds "
                f"{summary['target_count']:,} points; the job wrote {summary['total_points']:,} "
                "over all runs)",
            ),
        ]
        if summary["passed_over"]:
            rows.append(("passed over (not held by the source)", f"{summary['passed_over']:,}"))
        if summary["references_dropped"]:
            rows.append(("cross-references dropped", f"{summary['references_dropped']:,}"))
        if summary["dead_letter"]:
            rows.append(("dead letter", summary["dead_letter"]))
        lines += md.table(("item", "value"), rows)
        lines += md.bullets("Notes", summary["notes"])
        sections.append(lines)
    if reports:
        sections.append([render_reports(reports)])
    if error is not None:
        sections.append([f"### qmigrate apply: {md.FAIL} stopped", "", "```", error, "```"])
    return md.document(sections)
