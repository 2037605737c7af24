"""`qmigrate schema`: the job file's JSON Schema, for editors and CI linters."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from qmigrate import job_schema


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "schema",
        help="print (or write) the job file JSON Schema",
        description="Print the job file JSON Schema (2020-12), every source's part included, "
        "or write it to a file for an editor (yaml-language-server) or check-jsonschema.",
    )
    parser.add_argument(
        "--output", metavar="FILE", help="write the schema to FILE instead of printing it"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    text = json.dumps(job_schema.job_schema_bundle(), indent=2, ensure_ascii=False) + "\n"
    if args.output:
        Path(args.output).write_text(text)
    else:
        print(text, end="")
    return 0
