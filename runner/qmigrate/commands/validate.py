"""`qmigrate validate`: check job files against the schema, touching no server."""

from __future__ import annotations

import argparse
import json
from typing import Any

from qmigrate import spec
from qmigrate.commands.common import add_job_options, print_error, template_env
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
    results: list[dict[str, Any]] = []
    for file in spec.job_files(args.jobs):
        try:
            spec.load(file, env)
            results.append({"file": str(file), "ok": True, "errors": []})
        except QmigrateError as exc:
            results.append({"file": str(file), "ok": False, "errors": exc.message.splitlines()})
    invalid_files = [r["file"] for r in results if not r["ok"]]
    if args.output == "json":
        document: dict[str, Any] = {"ok": not invalid_files, "files": results}
        if invalid_files:
            document["error"] = f"{len(invalid_files)} of {len(results)} job files are invalid"
        print(json.dumps(document, indent=2))
    for result in results:
        if result["ok"] and args.output == "text":
            print(f"{result['file']}: ok")
        for error in result["errors"]:
            print_error(error)
    return EXIT_INVALID if invalid_files else EXIT_OK
