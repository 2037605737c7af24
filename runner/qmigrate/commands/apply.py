"""`qmigrate apply`: run jobs; an interrupted job resumes from its checkpoints."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from qmigrate.commands.common import add_job_options, emit, fail_json, load_jobs
from qmigrate.errors import QmigrateError

if TYPE_CHECKING:  # the engine imports qdrant-client: slow, and only needed to run
    from qmigrate.engine import Summary


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "apply",
        help="run jobs (resumes interrupted ones; finished ones are a no-op)",
        description="Run each job: create or check the target collection, move the data in "
        "partitions with checkpoints, then check the counts. Jobs of a directory run in name "
        "order; the first failure stops the rest.",
    )
    add_job_options(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from qmigrate import engine

    summaries: list[dict[str, Any]] = []
    texts: list[str] = []
    try:
        for job in load_jobs(args):
            resolved = engine.resolve(job)
            try:
                summary = engine.apply(resolved)
            except engine.CountCheckFailed as exc:
                summaries.append(exc.summary.to_json())
                raise
            finally:
                resolved.close()
            summaries.append(summary.to_json())
            texts.append(render_text(summary))
    except QmigrateError as exc:
        if args.output == "text" and texts:
            print("\n".join(texts))
        return fail_json(args, {"jobs": summaries}, exc)
    emit(args, {"ok": True, "jobs": summaries}, "\n".join(texts))
    return 0


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
    lines += [f"  note: {note}" for note in summary.notes]
    if summary.retries:
        lines.append(f"  retried {summary.retries:,} transient failures")
    if summary.dead_letter:
        lines.append(f"  invalid records were written to {summary.dead_letter}")
    return "\n".join(lines)
