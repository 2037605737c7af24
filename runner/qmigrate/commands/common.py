"""Options and output shared by the subcommands."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from qmigrate import spec
from qmigrate.errors import QmigrateError, invalid


def add_output_option(parser: argparse.ArgumentParser, markdown: bool = False) -> None:
    parser.add_argument(
        "--output",
        choices=["text", "json", "markdown"] if markdown else ["text", "json"],
        default="text",
        help="text for people (default), json for machines"
        + (", markdown for a CI job summary or a PR comment" if markdown else ""),
    )


def add_job_options(
    parser: argparse.ArgumentParser, many: bool = True, markdown: bool = False
) -> None:
    if many:
        parser.add_argument(
            "jobs",
            nargs="+",
            metavar="FILE|DIR",
            help="job files, or directories whose *.yaml files run in name order",
        )
    else:
        parser.add_argument("jobs", nargs=1, metavar="FILE", help="a job file")
    parser.add_argument(
        "--var",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="add KEY to the template's env (repeatable)",
    )
    parser.add_argument(
        "--env-file",
        action="append",
        default=[],
        metavar="PATH",
        help="add a file of KEY=VALUE lines to the template's env",
    )
    add_output_option(parser, markdown)


def template_env(args: argparse.Namespace) -> dict[str, str]:
    """The process environment, then --env-file files, then --var values (later wins)."""
    env = dict(os.environ)
    for path in args.env_file:
        env.update(spec.read_env_file(path))
    for item in args.var:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise invalid(f"--var {item!r}: expected KEY=VALUE")
        env[key] = value
    return env


def load_jobs(args: argparse.Namespace) -> list[spec.Job]:
    """Every job of the arguments, all validated before the first one runs: a broken file
    late in a directory stops the command before anything moved."""
    env = template_env(args)
    jobs, errors = [], []
    for file in spec.job_files(args.jobs):
        try:
            jobs.append(spec.load(file, env))
        except QmigrateError as exc:
            errors.append(exc.message)
    if errors:
        raise invalid("\n".join(errors))
    return jobs


def emit(args: argparse.Namespace, data: Any, text: str, markdown: str = "") -> None:
    if args.output == "json":
        print(json.dumps(data, indent=2, default=str))
    elif args.output == "markdown":
        print(markdown, end="")
    else:
        print(text)


def print_error(message: str) -> None:
    """Every line of an error carries the prefix, so CI logs can be grepped for it."""
    for line in message.splitlines() or [""]:
        print(f"qmigrate: error: {line}", file=sys.stderr)


def fail_json(args: argparse.Namespace, data: dict[str, Any], exc: QmigrateError) -> int:
    """With --output json, a failure is still one JSON document on stdout (and a line on stderr)."""
    if args.output == "json":
        print(json.dumps({**data, "ok": False, "error": exc.message}, indent=2, default=str))
    print_error(exc.message)
    return exc.exit_code
