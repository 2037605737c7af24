"""Rendering a job file with Jinja2, which must run no code: job files come from contributors
and are rendered by CI with its secrets in the environment.

Templates render in Jinja's immutable sandbox, narrowed further to what the docs list: the
names `env`, `job_dir` and those a `{% set %}` binds; the filters and tests of `FILTERS` and
`TESTS`; no globals, no attributes or methods of values (a mapping's keys read as
`env.NAME`), no loops, macros or includes, and no operation that would build a huge value.
Anything else stops validation with the file and line.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.defaults import DEFAULT_FILTERS, DEFAULT_TESTS
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

from qmigrate.errors import invalid
from qmigrate.redaction import remember_secret_variables

NAMES = ("env", "job_dir")
FILTERS = (
    "default", "d", "lower", "upper", "capitalize", "title", "trim", "replace", "int",
    "float", "string", "tojson", "join", "length", "first", "last", "urlencode", "abs", "round",
)  # fmt: skip
TESTS = ("defined", "undefined", "none", "true", "false", "number", "string", "eq", "ne", "in")
# Statements that repeat, call or load templates: a job file only substitutes values.
REFUSED_STATEMENTS: dict[type[nodes.Node], str] = {
    nodes.For: "loops",
    nodes.Macro: "macros",
    nodes.CallBlock: "call blocks",
    nodes.Include: "includes",
    nodes.Import: "imports",
    nodes.FromImport: "imports",
    nodes.Extends: "extends",
    nodes.Block: "blocks",
}
MAX_VALUE_LENGTH = 1_000_000  # characters or items one `*` may build
MAX_POWER_BITS = 4096  # bits one integer `**` may build


class EnvVars(dict[str, str]):
    """`env`: told apart from other mappings, so a missing key is a missing variable; it
    keeps the variables a template read, whose secret-named ones are masked in output."""

    def __init__(self, variables: Mapping[str, str]) -> None:
        super().__init__(variables)
        self.read: dict[str, str] = {}

    def __getitem__(self, name: str) -> str:
        value = super().__getitem__(name)
        self.read[name] = value
        return value


class MissingVariable(jinja2.UndefinedError):
    """Raised by the first use of a variable absent from `env` (not by `default(...)`)."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


class JobTemplates(ImmutableSandboxedEnvironment):
    """The sandbox with every door closed that a job file does not need."""

    intercepted_binops = frozenset({"*", "**", "%"})

    def __init__(self) -> None:
        super().__init__(
            undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False
        )
        self.filters = {name: DEFAULT_FILTERS[name] for name in FILTERS}
        self.filters["replace"] = _bounded_replace
        self.tests = {name: DEFAULT_TESTS[name] for name in TESTS}
        self.globals = {}

    def getattr(self, obj: Any, attribute: str) -> Any:
        return self._lookup(obj, attribute, f"attribute '{attribute}'")

    def getitem(self, obj: Any, argument: Any) -> Any:
        if isinstance(obj, Sequence) and not isinstance(argument, str):
            try:
                return obj[argument]
            except (TypeError, LookupError):
                return self.undefined(obj=obj, name=argument)
        return self._lookup(obj, argument, f"item {argument!r}")

    def _lookup(self, obj: Any, key: Any, what: str) -> Any:
        if isinstance(obj, jinja2.Undefined):
            obj._fail_with_undefined_error()
        if not isinstance(obj, Mapping):
            raise SecurityError(
                f"{what} of a {type(obj).__name__} is not available "
                "(templates read mapping keys such as env.NAME, and use filters)"
            )
        try:
            return obj[key]
        except (TypeError, LookupError):
            if isinstance(obj, EnvVars):
                # Jinja raises `exc` with the hint as its message: the variable's name.
                return self.undefined(hint=key, obj=obj, name=key, exc=MissingVariable)
            return self.undefined(obj=obj, name=key)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "%" and isinstance(left, str):
            raise SecurityError("'%' formatting is not available (use ~ to join strings)")
        if operator == "*" and _repeated_length(left, right) > MAX_VALUE_LENGTH:
            raise SecurityError("'*' would build a value too long for a job file")
        if operator == "**" and _power_bits(left, right) > MAX_POWER_BITS:
            raise SecurityError("'**' would build a number too large for a job file")
        return super().call_binop(context, operator, left, right)


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _repeated_length(left: Any, right: Any) -> int:
    """Length of `sequence * count` (0 when it is not that)."""
    for sequence, count in ((left, right), (right, left)):
        if isinstance(sequence, Sequence) and _int(count):
            return len(sequence) * count
    return 0


def _power_bits(base: Any, exponent: Any) -> float:
    """About how many bits `base ** exponent` takes, for integers (0 otherwise)."""
    if _int(base) and _int(exponent) and abs(base) > 1 and exponent > 0:
        return exponent * math.log2(abs(base))
    return 0


def _bounded_replace(value: Any, old: str, new: str, count: int | None = None) -> Any:
    """Jinja's `replace`, refusing a result beyond MAX_VALUE_LENGTH (chained replaces double)."""
    text = str(value)
    found = text.count(old) if old else len(text) + 1
    if count is not None:
        found = min(found, count)
    if len(text) + found * (len(new) - len(old)) > MAX_VALUE_LENGTH:
        raise SecurityError("'replace' would build a value too long for a job file")
    return text.replace(old, new, -1 if count is None else count)


def render(file: Path, env: Mapping[str, str]) -> str:
    """The job file rendered in the sandbox. Every missing environment variable is named at
    once: each one found is set to "" and the file rendered again, until none is missing
    (an error that follows only from such a placeholder is not reported)."""
    environment = JobTemplates()
    text = _read(file)
    try:
        template_ast = environment.parse(text)
    except jinja2.TemplateSyntaxError as exc:
        raise invalid(f"{file}:{exc.lineno}: template error: {exc.message}") from None
    problems = _refused(template_ast)
    if problems:
        raise invalid("\n".join(f"{file}:{line}: template error: {p}" for line, p in problems))
    try:
        template = environment.from_string(template_ast)
    except jinja2.TemplateSyntaxError as exc:  # an unknown filter or test
        known = "filters: " + ", ".join(FILTERS) + "; tests: " + ", ".join(TESTS)
        raise invalid(f"{file}:{exc.lineno}: template error: {exc.message} ({known})") from None
    variables = EnvVars(env)
    missing: list[tuple[int | None, str]] = []
    while True:
        try:
            rendered = _render_once(template, variables, file, missing)
            remember_secret_variables(variables.read)
            return rendered
        except MissingVariable as exc:
            missing.append((_template_line(exc), exc.name))
            variables[exc.name] = ""


def _render_once(
    template: jinja2.Template,
    variables: EnvVars,
    file: Path,
    missing: list[tuple[int | None, str]],
) -> str:
    try:
        rendered = template.render(env=variables, job_dir=str(file.parent))
    except MissingVariable:
        raise
    except Exception as exc:  # an expression that fails as it runs: 1/0, a bad filter call
        if not missing:
            raise invalid(_located(file, _template_line(exc), _message(exc))) from None
    if missing:
        raise invalid(
            "\n".join(
                _located(
                    file,
                    line,
                    f"environment variable {name} is not set "
                    "(give it a default with `| default(...)` if it is optional)",
                )
                for line, name in missing
            )
        )
    return rendered


def _message(exc: Exception) -> str:
    if isinstance(exc, jinja2.UndefinedError):
        return str(exc.message or exc)
    if isinstance(exc, SecurityError):
        return f"template error: {exc}"
    return f"template error: {type(exc).__name__}: {exc}"


def _refused(template_ast: nodes.Template) -> list[tuple[int, str]]:
    """What the template uses beyond the documented names and statements, by line."""
    bound = {n.name for n in template_ast.find_all(nodes.Name) if n.ctx in ("store", "param")}
    looked_up = {
        id(n.node)
        for n in template_ast.find_all((nodes.Getattr, nodes.Getitem))
        if isinstance(n, (nodes.Getattr, nodes.Getitem))
    }
    problems = []
    wanted: tuple[type[nodes.Node], ...] = (nodes.Name, *REFUSED_STATEMENTS)
    for node in template_ast.find_all(wanted):
        if isinstance(node, nodes.Name):
            if node.name == "env" and node.ctx == "load" and id(node) not in looked_up:
                # The whole environment (CI secrets included) would land in the file.
                problems.append((node.lineno, "env is read one variable at a time: env.NAME"))
            elif node.ctx == "load" and node.name not in NAMES and node.name not in bound:
                problems.append(
                    (
                        node.lineno,
                        f"'{node.name}' is not available (a template sees "
                        f"{', '.join(NAMES)} and the names it sets)",
                    )
                )
        else:
            problems.append((node.lineno, f"{REFUSED_STATEMENTS[type(node)]} are not available"))
    return sorted(set(problems))


def _located(file: Path, line: int | None, message: str) -> str:
    return f"{file}:{line}: {message}" if line else f"{file}: {message}"


def _template_line(exc: BaseException) -> int | None:
    tb = exc.__traceback__
    line = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _read(file: Path) -> str:
    try:
        return file.read_text()
    except OSError as exc:
        raise invalid(f"{file}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise invalid(f"{file}: not a UTF-8 text file") from None
