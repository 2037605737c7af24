"""The command line: one subcommand per module in qmigrate.commands."""

from __future__ import annotations

import argparse
import signal
import sys
from typing import Any

from qmigrate import __version__
from qmigrate.commands import COMMANDS
from qmigrate.commands.common import print_error
from qmigrate.errors import EXIT_INVALID, EXIT_RUNTIME, QmigrateError
from qmigrate.redaction import RedactingStream

DESCRIPTION = """\
Move vector data into Qdrant from declarative job files.

A job file (YAML, rendered with Jinja2 from the environment) names a source, a Qdrant
target, how fields map, which subset moves and how a restart behaves. Typical use:

  qmigrate validate jobs/          check every job file, touching no server
  qmigrate plan jobs/x.yaml        connect and show what apply would do
  qmigrate apply jobs/x.yaml       run it; an interrupted run resumes where it stopped
  qmigrate verify jobs/x.yaml      prove it: counts, sampled points, search agreement
  qmigrate sync jobs/x.yaml        later: write what changed, delete what is gone
  qmigrate cutover jobs/x.yaml     verify, then point target.alias at the new collection

exit codes: 0 ok, 1 runtime failure (or plan: apply would refuse), 2 invalid job file or
usage, 3 a verify check failed (sync: deletes skipped), 130 interrupted (Ctrl-C),
143 terminated (SIGTERM)
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
    parser.set_defaults(parser=parser)  # `completion` walks it, without importing this module
    return parser


class Terminated(Exception):
    """SIGTERM, raised in the main thread so a stop unwinds like Ctrl-C: checkpoints kept,
    bulk-load indexing restored."""


def _terminate(signum: int, frame: Any) -> None:
    raise Terminated


def main(argv: list[str] | None = None) -> int:
    streams = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = RedactingStream(sys.stdout), RedactingStream(sys.stderr)
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        return _run(argv)
    finally:
        signal.signal(signal.SIGTERM, previous)
        sys.stdout, sys.stderr = streams


def _run(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    stopped = "progress up to the last checkpoint is kept"
    try:
        return args.run(args)
    except QmigrateError as exc:
        print_error(exc.message)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"qmigrate: interrupted; {stopped}", file=sys.stderr)
        return 130
    except Terminated:
        print(f"qmigrate: terminated; {stopped}", file=sys.stderr)
        return 143
    except BrokenPipeError:
        return EXIT_INVALID
    except RecursionError:
        print_error("input nested too deeply to process")
        return EXIT_INVALID
    except Exception as exc:
        # Whatever a client library raised that no layer turned into a message: still one
        # line, never a traceback (its text may be long, so it is cut).
        from qmigrate.retry import describe

        print_error(f"unexpected failure: {describe(exc)}")
        return EXIT_RUNTIME
