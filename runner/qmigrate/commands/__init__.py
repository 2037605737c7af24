"""Subcommands, one module each; every module has `add_parser(subparsers)` and `run(args)`."""

from qmigrate.commands import (
    apply,
    completion,
    init,
    plan,
    render,
    reset,
    schema,
    status,
    validate,
    verify,
)

COMMANDS = [validate, render, plan, apply, verify, status, reset, schema, init, completion]
