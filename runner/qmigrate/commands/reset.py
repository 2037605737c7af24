"""`qmigrate reset`: forget a job's checkpoints, so the next apply starts over."""

from __future__ import annotations

import argparse

from qmigrate.commands.common import add_job_options, emit, fail_json, load_jobs
from qmigrate.errors import QmigrateError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "reset",
        help="delete a job's checkpoints (the migrated data stays)",
        description="Delete the checkpoints of a job. Points already in the target stay; the "
        "next apply moves everything again (writes are idempotent, so nothing is duplicated).",
    )
    add_job_options(parser, many=False)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from qmigrate.engine import checkpoint_store  # imports qdrant-client: only when needed
    from qmigrate.sync.run import forget

    names = []
    try:
        for job in load_jobs(args):
            with checkpoint_store(job) as store:
                store.delete(job.name)
                forget(job, store)  # sync's pass, its ID files and its watermark
            names.append(job.name)
    except QmigrateError as exc:
        return fail_json(args, {"reset": names}, exc)
    emit(
        args,
        {"ok": True, "reset": names},
        "\n".join(f"job {n}: checkpoints deleted" for n in names),
    )
    return 0
