"""What is wrong with a job file, said the way its author can find it: YAML errors and
duplicate keys, then every JSON Schema violation and filter problem, each as
`FILE:LINE: path.in.file: message`."""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from qmigrate import payload_paths
from qmigrate.errors import invalid
from qmigrate.job_schema import load_schemas
from qmigrate.redaction import is_secret_key, remember_secrets


def parse(file: Path, text: str) -> tuple[Any, yaml.Node | None]:
    """YAML text -> (data, node tree for line numbers)."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        duplicates = _duplicate_keys(node)
        if duplicates:
            raise invalid("\n".join(f"{file}:{line}" for line in duplicates))
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{file}:{mark.line + 1}" if mark else str(file)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise invalid(f"{where}: malformed YAML: {problem}") from None
    except RecursionError:
        raise invalid(f"{file}: malformed YAML: nested too deeply") from None
    remember_secrets(data)  # before any message could quote one
    return data, node


def _duplicate_keys(root: yaml.Node | None) -> list[str]:
    """`LINE: duplicate key 'k' (first at line N)` for every mapping that repeats a key:
    YAML keeps the last silently, so a pasted block would override a setting unseen."""
    found: list[tuple[int, str]] = []
    seen_nodes: set[int] = set()
    pending = [root] if root is not None else []
    while pending:
        node = pending.pop()
        if id(node) in seen_nodes:  # an alias: checked where its anchor stands
            continue
        seen_nodes.add(id(node))
        if isinstance(node, yaml.MappingNode):
            first_line: dict[tuple[str, str], int] = {}
            for key_node, value_node in node.value:
                pending.extend((key_node, value_node))
                if not isinstance(key_node, yaml.ScalarNode) or key_node.tag.endswith(":merge"):
                    continue
                key = (key_node.tag, key_node.value)
                line = key_node.start_mark.line + 1
                if key in first_line:
                    found.append(
                        (
                            line,
                            f"{line}: duplicate key '{key_node.value}' "
                            f"(first at line {first_line[key]})",
                        )
                    )
                else:
                    first_line[key] = line
        elif isinstance(node, yaml.SequenceNode):
            pending.extend(node.value)
    return [message for _, message in sorted(found)]


def validation_errors(data: Any, node: yaml.Node | None, file: Path) -> list[str]:
    """Every schema violation as `FILE:LINE: path.in.file: message`, in file order."""
    if not isinstance(data, dict):
        return [f"{file}: a job file must be a YAML mapping (got {_json_type(data)})"]
    job_schema, registry = load_schemas()
    validator = jsonschema.Draft202012Validator(job_schema, registry=registry)
    found: list[tuple[int, str]] = []
    filter_has_errors = False  # then its Qdrant-level check would only repeat them
    for error in validator.iter_errors(data):
        for path, message in _explain(error):
            filter_has_errors |= path[:1] == ["filter"]
            line = _line_of(node, path)
            where = f"{file}:{line}" if line else str(file)
            found.append((line or 0, f"{where}: {_dotted(path) or '(top level)'}: {message}"))
    if isinstance(data.get("filter"), dict) and not filter_has_errors:
        # Imported here: it loads qdrant-client (a second or more), which a job without a
        # filter never needs to be validated.
        from qmigrate.filter_check import filter_problems

        for path, message in filter_problems(data["filter"], ["filter"]):
            line = _line_of(node, path)
            where = f"{file}:{line}" if line else str(file)
            found.append((line or 0, f"{where}: {_dotted(path)}: {message}"))
    return [message for _, message in sorted(set(found))]


def _explain(error: jsonschema.ValidationError) -> Iterator[tuple[list[Any], str]]:
    path = list(error.absolute_path)
    secret = any(isinstance(p, str) and is_secret_key(p) for p in path)
    validator = error.validator
    if validator == "required":
        for name in _missing(error):
            yield path + [name], "required"
    elif validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = list(error.schema.get("properties", {}))
        for key in error.instance:
            if key not in allowed:
                hint = difflib.get_close_matches(str(key), allowed, n=1)
                suggestion = f" (did you mean '{hint[0]}'?)" if hint else ""
                yield path + [key], f"unknown key{suggestion}"
    elif validator == "type":
        expected = error.validator_value
        expected = " or ".join(expected) if isinstance(expected, list) else expected
        yield path, f"expected {expected}, got {_json_type(error.instance)}"
    elif validator == "enum":
        options = ", ".join(json.dumps(v) for v in error.validator_value)
        got = "" if secret else f" (got {json.dumps(error.instance, default=str)})"
        yield path, f"must be one of {options}{got}"
    elif validator == "const":
        yield path, f"must be {json.dumps(error.validator_value)}"
    elif validator == "pattern" and error.validator_value in PAYLOAD_PATH_FORMS:
        form = PAYLOAD_PATH_FORMS[error.validator_value]
        yield path, f"{json.dumps(error.instance)} is not a payload path ({form})"
    elif validator in ("oneOf", "anyOf"):
        yield from _explain_alternatives(error, path)
    elif validator == "not" and secret:
        yield path, "not allowed here"
    elif validator == "not" and "const" in error.validator_value:
        yield path, f"must not be {json.dumps(error.validator_value['const'])} (a reserved name)"
    else:
        message = error.message
        if secret:
            message = f"invalid value ({validator} {error.validator_value!r})"
        yield path, message


FILTER_KEYS = ("must", "should", "must_not", "min_should")
PAYLOAD_PATH_FORMS = {
    payload_paths.PATH_PATTERN: 'keys joined by dots: meta.origin, tags[].note, "a.b"',
    payload_paths.PLAIN_PATH_PATTERN: 'keys joined by dots, no []: meta.origin, "a.b"',
}


def _explain_alternatives(
    error: jsonschema.ValidationError, path: list[Any]
) -> Iterator[tuple[list[Any], str]]:
    """Report a oneOf against the branch the user evidently meant, told by its keys."""
    branches = error.validator_value
    if all(set(b) <= {"required", "not"} for b in branches):
        names = [b["required"][0] for b in branches]
        quantity = "exactly" if error.validator == "oneOf" else "at least"
        yield path, f"set {quantity} one of: {', '.join(names)}"
        return
    instance = error.instance if isinstance(error.instance, dict) else {}

    def signature(branch: dict[str, Any]) -> tuple[str, ...]:
        return tuple(branch.get("required", ())) if "$ref" not in branch else FILTER_KEYS

    def meant(branch: dict[str, Any]) -> bool:
        keys = signature(branch)
        if "$ref" in branch:
            return any(k in instance for k in keys)
        return bool(keys) and all(k in instance for k in keys)

    chosen = [i for i, branch in enumerate(branches) if meant(branch)]
    if len(chosen) == 1:
        inner = [e for e in error.context if e.relative_schema_path[0] == chosen[0]]
        for sub_error in inner:
            yield from _explain(sub_error)
        if inner:
            return
    forms = " | ".join("{" + ", ".join(signature(b)) + "}" for b in branches)
    yield path, f"does not match any allowed form: {forms}"


def _missing(error: jsonschema.ValidationError) -> list[str]:
    instance = error.instance if isinstance(error.instance, dict) else {}
    return [name for name in error.validator_value if name not in instance]


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "mapping"
    return type(value).__name__


def _dotted(path: list[Any]) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            part = str(part)
            shown = part if re.fullmatch(r"[A-Za-z0-9_-]+", part) else json.dumps(part)
            out += f".{shown}" if out else shown
    return out


def _line_of(node: yaml.Node | None, path: list[Any]) -> int | None:
    """1-based line of the YAML node at `path`, or of the deepest ancestor that exists."""
    if node is None:
        return None
    line = node.start_mark.line + 1
    for part in path:
        child = None
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                if key_node.value == str(part):
                    child = value_node
                    line = key_node.start_mark.line + 1
                    break
        elif (
            isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value)
        ):
            child = node.value[part]
            line = child.start_mark.line + 1
        if child is None:
            return line
        node = child
    return line
