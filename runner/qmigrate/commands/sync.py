"""`qmigrate sync`: make the target equal the source, writing only what changed."""

from __future__ import annotations

import argparse
import gc
from typing import Any

from qmigrate.commands.common import add_job_options, emit, fail_json, load_jobs
from qmigrate.errors import EXIT_CHECK_FAILED, QmigrateError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "sync",
        help="make the target equal the source: write new and changed points, delete gone ones",
        description="Read each job's source within its filter, compare every record, mapped "
        "as apply maps it, with the target's point of the same ID, write new and changed "
        "points, delete target points in the job's scope whose record is gone, and leave "
        "equal points alone. With sync.changed_field only records at or above the saved "
        "watermark are compared. An interrupted sync resumes. Exit 0 when the target equals "
        "the source at the end, 3 when deletes had to be skipped (or, with --dry-run, when "
        "anything would change).",
    )
    add_job_options(parser, markdown=True)
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="say what would be written and deleted (counts, a few IDs), writing nothing",
    )
    parser.add_argument(
        "--wait",
        action="store_true",
        help="if another run holds a job, wait for it to finish instead of exiting 1",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from qmigrate import engine
    from qmigrate.sync import sync
    from qmigrate.sync.report import render_markdown, render_text

    summaries: list[dict[str, Any]] = []
    texts: list[str] = []
    try:
        for job in load_jobs(args):
            resolved = engine.resolve(job, read_only=args.dry_run)
            gc.freeze()  # as apply does: the clients' modules stay out of the collector's walk
            try:
                summary = sync(resolved, dry_run=args.dry_run, wait=args.wait)
            finally:
                resolved.close()
            summaries.append(summary.to_json())
            texts.append(render_text(summary))
    except QmigrateError as exc:
        if args.output == "text" and texts:
            print("\n".join(texts))
        elif args.output == "markdown":
            print(render_markdown(summaries, exc.message), end="")
        return fail_json(args, {"jobs": summaries}, exc)
    ok = all(s["ok"] for s in summaries)
    emit(args, {"ok": ok, "jobs": summaries}, "\n".join(texts), render_markdown(summaries))
    return 0 if ok else EXIT_CHECK_FAILED
