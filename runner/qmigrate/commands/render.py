"""`qmigrate render`: show a job file as Jinja2 renders it, with secrets masked."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml

from qmigrate.commands.common import add_job_options, fail_json, template_env
from qmigrate.errors import QmigrateError
from qmigrate.redaction import mask_secrets
from qmigrate.templating import render
from qmigrate.validation import parse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "render",
        help="print a job file after templating (secrets masked)",
        description="Render a job file with Jinja2 (env holds the environment, plus --var and "
        "--env-file) and print it. Values of api_key, password, token and secret keys are masked.",
    )
    add_job_options(parser, many=False)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    file = Path(args.jobs[0])
    try:
        text = render(file, template_env(args))
        document, _ = parse(file, text)
    except QmigrateError as exc:
        return fail_json(args, {}, exc)
    masked = mask_secrets(document)
    if args.output == "json":
        print(json.dumps({"ok": True, "job": masked}, indent=2, default=str))
    else:
        print(yaml.safe_dump(masked, sort_keys=False, allow_unicode=True).rstrip())
    return 0
