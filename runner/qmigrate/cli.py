"""The command line: one subcommand per module in qmigrate.commands."""

from __future__ import annotations

import argparse
import sys

from qmigrate import __version__
from qmigrate.commands import COMMANDS
from qmigrate.errors import EXIT_INVALID, EXIT_RUNTIME, QmigrateError

DESCRIPTION = """\
Move vector data into Qdrant from declarative job files.

A job file (YAML, rendered with Jinja2 from the environment) names a source, a Qdrant
target, how fields map, which subset moves and how a restart behaves. Typical use:

  qmigrate validate jobs/          check every job file, touching no server
  qmigrate plan jobs/x.yaml        connect and show what apply would do
  qmigrate apply jobs/x.yaml       run it; an interrupted run resumes where it stopped

exit codes: 0 ok, 1 runtime failure, 2 invalid job file or usage
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qmigrate",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"qmigrate {__version__}")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    for command in COMMANDS:
        command.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except QmigrateError as exc:
        print(f"qmigrate: error: {exc.message}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("qmigrate: interrupted; progress up to the last checkpoint is kept", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return EXIT_INVALID
    except Exception as exc:
        # Whatever a client library raised that no layer turned into a message: still one
        # line, never a traceback (its text may be long, so it is cut).
        from qmigrate.retry import describe

        print(f"qmigrate: error: unexpected failure: {describe(exc)}", file=sys.stderr)
        return EXIT_RUNTIME
