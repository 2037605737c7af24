"""`qmigrate schema`: print the job file's JSON Schema, for editors and CI linters."""

from __future__ import annotations

import argparse
import json

from qmigrate import spec


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "schema",
        help="print the job file JSON Schema",
        description="Print the job file JSON Schema (2020-12), every source's part included.",
    )
    parser.add_argument("--output", choices=["json"], default="json", help="always json")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    print(json.dumps(spec.job_schema_bundle(), indent=2))
    return 0
