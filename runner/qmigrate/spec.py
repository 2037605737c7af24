"""Job files: YAML text -> Jinja2 rendering -> JSON Schema validation -> a typed `Job`.

The schema (schemas/) is the contract; this module only reads it and reports what breaks
it, each error with its path in the file and, where YAML can tell, its line.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import hashlib
import io
import json
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import dotenv
import dotenv.parser
import jsonschema
import referencing
import yaml

from qmigrate import payload_paths
from qmigrate.errors import invalid
from qmigrate.filter_check import filter_problems
from qmigrate.redaction import is_secret_key, remember_secrets, without_credentials
from qmigrate.retry import DEFAULT_GIVE_UP_AFTER, request_timeout
from qmigrate.sources import REGISTRY
from qmigrate.templating import render

# --- schema -----------------------------------------------------------------------------


def schema_dir() -> Path:
    """The schemas folder: inside the wheel when installed, at the repo root in a checkout."""
    packaged = resources.files("qmigrate") / "schemas"
    if packaged.is_dir():
        return Path(str(packaged))
    return Path(__file__).resolve().parents[2] / "schemas"


@functools.cache
def _schema_documents() -> dict[str, dict[str, Any]]:
    """Every schema file by its path relative to schemas/, the job schema's source dispatch
    assembled from the source registry."""
    root = schema_dir()
    documents = {
        path.relative_to(root).as_posix(): json.loads(path.read_text())
        for path in sorted(root.rglob("*.schema.json"))
    }
    source = documents["job.schema.json"]["properties"]["source"]
    source["properties"]["type"]["enum"] = list(REGISTRY)
    source["allOf"] = [
        {"if": {"properties": {"type": {"const": name}}}, "then": {"$ref": declared.schema}}
        for name, declared in REGISTRY.items()
    ]
    return documents


@functools.cache
def _load_schemas() -> tuple[dict[str, Any], referencing.Registry]:
    """The job schema and a registry of every schema; shared, so callers must not change
    them (job_schema_bundle works on a copy)."""
    documents = _schema_documents()
    registry: referencing.Registry = referencing.Registry().with_resources(
        (document["$id"], referencing.Resource.from_contents(document))
        for document in documents.values()
    )
    return documents["job.schema.json"], registry


def source_defaults(source_type: str) -> dict[str, Any]:
    """The `default` of each top-level key of a source's schema part: the one place they live."""
    part = _schema_documents()[REGISTRY[source_type].schema]
    return {
        key: schema["default"]
        for key, schema in part.get("properties", {}).items()
        if "default" in schema
    }


def job_schema_bundle() -> dict[str, Any]:
    """The job schema with every source schema inlined, for `qmigrate schema`."""
    job_schema, registry = _load_schemas()
    bundle = json.loads(json.dumps(job_schema))
    defs = bundle.setdefault("$defs", {})
    for branch in bundle["properties"]["source"]["allOf"]:
        ref = branch["then"]["$ref"]
        source_schema = registry.contents(job_schema["$id"].rsplit("/", 1)[0] + "/" + ref)
        name = ref.split("/")[-1].removesuffix(".schema.json")
        defs[f"source_{name}"] = {k: v for k, v in source_schema.items() if k != "$schema"}
        branch["then"] = {"$ref": f"#/$defs/source_{name}"}
    defs["template"] = TEMPLATE_SCHEMA
    return _accept_templates(bundle)


# The published schema is read by editors and check-jsonschema on job files *before* they
# are rendered, so wherever a value stands a template expression is accepted too; qmigrate
# checks the rendered value against the strict schema.
TEMPLATE_SCHEMA = {
    "type": "string",
    "pattern": r"\{\{.*\}\}|\{%.*%\}",
    "description": 'A Jinja2 expression, e.g. "{{ env.QDRANT_URL }}"; checked once rendered.',
}
SCALAR_TYPES = {"string", "integer", "number", "boolean", "null"}
ANNOTATIONS = ("title", "description", "default", "examples")
SUBSCHEMA_MAPS = ("properties", "$defs", "dependentSchemas")
SUBSCHEMA_LISTS = ("allOf", "anyOf", "oneOf", "prefixItems")
SUBSCHEMAS = ("then", "else", "items", "additionalProperties")  # not `if`, not `not`


def _accept_templates(schema: Any) -> Any:
    """`schema` with each value-level subschema also accepting a template expression."""
    if not isinstance(schema, dict):
        return schema
    out = dict(schema)
    for key in SUBSCHEMA_MAPS:
        if key in out:
            out[key] = {
                name: sub if name == "template" else _accept_templates(sub)
                for name, sub in out[key].items()
            }
    for key in SUBSCHEMA_LISTS:
        if key in out:
            out[key] = [_accept_templates(sub) for sub in out[key]]
    for key in SUBSCHEMAS:
        if key in out:
            out[key] = _accept_templates(out[key])
    types = out.get("type")
    types = set(types) if isinstance(types, list) else {types} if types else set()
    is_value = (types and types <= SCALAR_TYPES) or (
        not types and ("enum" in out or "const" in out)
    )
    if not is_value:
        return out
    annotations = {k: out.pop(k) for k in ANNOTATIONS if k in out}
    return {**annotations, "anyOf": [out, {"$ref": "#/$defs/template"}]}


# --- typed job --------------------------------------------------------------------------


@dataclass(frozen=True)
class TargetSpec:
    collection: str
    path: str | None = None
    url: str | None = None
    api_key: str | None = None
    prefer_grpc: bool | None = None  # None: gRPC where the server offers it
    grpc_port: int = 6334
    timeout: float = 60
    in_flight: int = 4
    on_missing: str = "create"
    vectors: dict[str, dict[str, Any]] = field(default_factory=dict)
    sparse_vectors: dict[str, dict[str, Any]] = field(default_factory=dict)
    hnsw: dict[str, Any] | None = None
    quantization: dict[str, Any] | None = None
    shards: int | None = None
    replication_factor: int | None = None
    on_disk_payload: bool | None = None
    payload_indexes: dict[str, str] = field(default_factory=dict)
    bulk_load: bool = False


@dataclass(frozen=True)
class MappingSpec:
    keep_original_id_as: str | None = "original_id"
    vectors: dict[str, str] = field(default_factory=dict)
    include: tuple[str, ...] | None = None
    exclude: tuple[str, ...] = ()
    rename: dict[str, str] = field(default_factory=dict)
    set: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ExecutorSpec:
    """Where partitions run: threads here (local) or tasks on a Ray cluster."""

    type: str = "local"
    address: str = "auto"
    tasks: int | None = None
    num_cpus_per_task: float = 1


@dataclass(frozen=True)
class Job:
    name: str
    file: Path
    source: dict[str, Any]
    target: TargetSpec
    mapping: MappingSpec
    filter: dict[str, Any] | None
    batch_size: int
    parallelism: int
    restart: str
    checkpoint_store: str
    checkpoint_path: Path
    lease_seconds: float
    on_invalid: str
    dead_letter_path: Path
    on_duplicate: str
    verify: dict[str, Any]
    document: dict[str, Any]
    # The source's local paths as absolute, real paths, resolved when the job is loaded.
    source_paths: dict[str, str] = field(default_factory=dict)
    partitions: int | None = None
    executor: ExecutorSpec = ExecutorSpec()
    give_up_after: float = DEFAULT_GIVE_UP_AFTER  # retry.give_up_after

    @property
    def concurrency(self) -> int:
        """Partitions moved at once: Ray tasks on a cluster, else threads."""
        if self.executor.type == "ray":
            return self.executor.tasks or self.parallelism
        return self.parallelism

    @property
    def partition_count(self) -> int:
        """What a new run asks the source for; a resumed run keeps its saved partitions, so
        `partitions` is not part of the fingerprint."""
        return self.partitions or self.concurrency

    def fingerprint_parts(self) -> dict[str, str]:
        """A short hash per part of the job that decides which points are written and how:
        `source.<key>`, `target.collection`, `mapping.<key>`, `filter`. Stored with the
        checkpoints, so a refusal can say what changed without storing any value.

        Connection details (named by the source's registry entry) are left out, and no
        credential enters in any form (secret keys, URL user info and secret parameters are
        taken out first: a stored hash of a password can be tested against guesses), so
        rotating a key does not invalidate checkpoints. Where the data lives (url host,
        path) stays in: a new place may hold other data. Paths count as absolute, real
        paths, so the directory a job is applied from does not matter.
        """
        declared = REGISTRY[self.source["type"]]
        parts: dict[str, Any] = {
            f"source.{key}": self.source_paths.get(key, without_credentials(value))
            for key, value in self.source.items()
            if not is_secret_key(key) and not declared.ignored_by_fingerprint(key)
        }
        parts["target.collection"] = self.target.collection
        for key, value in self.document.get("mapping", {}).items():
            parts[f"mapping.{key}"] = value
        parts["filter"] = self.filter
        return {key: _short_hash(value) for key, value in sorted(parts.items())}

    def fingerprint(self) -> str:
        """Hash of the whole job as far as it decides what is written: a change refuses resume."""
        return _short_hash(self.fingerprint_parts())


def with_executor(job: Job, kind: str | None, address: str | None) -> Job:
    """The job with the command line's --executor and --ray-address over its executor key."""
    executor = job.executor
    if kind is not None:
        executor = dataclasses.replace(executor, type=kind)
    if address is not None:
        if executor.type != "ray":
            raise invalid("--ray-address needs --executor ray (or executor.type: ray in the job)")
        executor = dataclasses.replace(executor, address=address)
    return dataclasses.replace(job, executor=executor)


def _short_hash(value: Any) -> str:
    encoded = json.dumps(value, sort_keys=True, default=str).encode()
    return hashlib.sha256(encoded).hexdigest()[:16]


def _job_from_document(document: dict[str, Any], file: Path) -> Job:
    target = dict(document["target"])
    mapping = document.get("mapping", {})
    payload = mapping.get("payload", {})
    include = payload.get("include")
    checkpoint = document.get("checkpoint", {})
    on_invalid = document.get("on_invalid", {})
    name = document["name"]
    give_up_after = document.get("retry", {}).get("give_up_after", DEFAULT_GIVE_UP_AFTER)
    target["timeout"] = request_timeout(target.get("timeout", TargetSpec.timeout), give_up_after)
    return Job(
        name=name,
        file=file,
        source=document["source"],
        target=TargetSpec(**target),
        mapping=MappingSpec(
            keep_original_id_as=mapping.get("id", {}).get("keep_original_as", "original_id"),
            vectors=mapping.get("vectors", {}),
            include=tuple(include) if include is not None else None,
            exclude=tuple(payload.get("exclude", ())),
            rename=payload.get("rename", {}),
            set=payload.get("set", {}),
        ),
        filter=document.get("filter"),
        batch_size=document.get("batch_size", 256),
        parallelism=document.get("parallelism", 1),
        restart=document.get("restart", "resume"),
        checkpoint_store=checkpoint.get("store", "target"),
        checkpoint_path=Path(checkpoint.get("path", f".qmigrate/{name}.checkpoint.json")),
        lease_seconds=checkpoint.get("lease_seconds", 30),
        on_invalid=on_invalid.get("action", "fail"),
        dead_letter_path=Path(on_invalid.get("path", f"{name}.dead-letter.jsonl")),
        on_duplicate=document.get("on_duplicate", "fail"),
        verify=document.get("verify", {}),
        source_paths={
            key: os.path.realpath(document["source"][key])
            for key in REGISTRY[document["source"]["type"]].path_keys
            if isinstance(document["source"].get(key), str)
        },
        document=document,
        partitions=document.get("partitions"),
        executor=ExecutorSpec(**document.get("executor", {})),
        give_up_after=give_up_after,
    )


# --- loading ----------------------------------------------------------------------------


def job_files(paths: Iterable[str]) -> list[Path]:
    """Expand FILE|DIR arguments: a directory means its *.yaml/*.yml files in name order."""
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml"))
            if not found:
                raise invalid(f"{path}: no *.yaml job files in this directory")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise invalid(f"{path}: no such file or directory")
    return files


def read_env_file(path: str) -> dict[str, str]:
    """A .env file, read by python-dotenv's parser (quotes, `export`, # comments, ${VAR});
    a line it cannot parse is an error that names it. A bare KEY sets nothing."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise invalid(f"--env-file {path}: {exc.strerror}") from None
    for binding in dotenv.parser.parse_stream(io.StringIO(text)):
        if binding.error:
            line = binding.original.line + binding.original.string[:-1].count("\n")
            raise invalid(f"{path}:{line}: expected KEY=VALUE")
    values = dotenv.dotenv_values(stream=io.StringIO(text))
    return {key: value for key, value in values.items() if value is not None}


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
    job_schema, registry = _load_schemas()
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
        for path, message in filter_problems(data["filter"], ["filter"]):
            line = _line_of(node, path)
            where = f"{file}:{line}" if line else str(file)
            found.append((line or 0, f"{where}: {_dotted(path)}: {message}"))
    return [message for _, message in sorted(set(found))]


def load(file: Path, env: Mapping[str, str] | None = None) -> Job:
    """Render, parse and validate one job file; raise with every error at once."""
    rendered = render(file, os.environ if env is None else env)
    data, node = parse(file, rendered)
    errors = validation_errors(data, node, file)
    if errors:
        raise invalid("\n".join(errors))
    return _job_from_document(data, file)


# --- error explanation ------------------------------------------------------------------


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
