"""Subcommands, one module each; every module has `add_parser(subparsers)` and `run(args)`."""

from qmigrate.commands import (
    apply,
    completion,
    cutover,
    init,
    plan,
    render,
    reset,
    rollback,
    schema,
    status,
    sync,
    validate,
    verify,
)

COMMANDS = [
    validate,
    render,
    plan,
    apply,
    sync,
    verify,
    cutover,
    rollback,
    status,
    reset,
    schema,
    init,
    completion,
]
