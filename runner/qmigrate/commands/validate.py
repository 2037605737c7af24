"""`qmigrate validate`: check job files against the schema, touching no server."""

from __future__ import annotations

import argparse
import json

from qmigrate import spec
from qmigrate.commands.common import add_job_options, template_env
from qmigrate.errors import EXIT_INVALID, EXIT_OK, QmigrateError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "validate",
        help="check job files against the schema (no server is contacted)",
        description="Render each job file and check it against the job schema. Every error "
        "is reported with its path in the file and its line. Exit 2 if any file is invalid.",
    )
    add_job_options(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    env = template_env(args)
    results = []
    for file in spec.job_files(args.jobs):
        try:
            spec.load(file, env)
            results.append({"file": str(file), "valid": True, "errors": []})
        except QmigrateError as exc:
            results.append({"file": str(file), "valid": False, "errors": exc.message.splitlines()})
    valid = all(r["valid"] for r in results)
    if args.output == "json":
        print(json.dumps({"valid": valid, "files": results}, indent=2))
    else:
        for result in results:
            if result["valid"]:
                print(f"{result['file']}: ok")
            for error in result["errors"]:
                print(error)
    return EXIT_OK if valid else EXIT_INVALID
