"""The job's JSON Schema as qmigrate reads it: the files in schemas/, the source dispatch
assembled from the registry, the defaults they declare (the one place defaults live), and
the bundle `qmigrate schema` publishes, which accepts template expressions for editors."""

from __future__ import annotations

import copy
import functools
import json
from importlib import resources
from pathlib import Path
from typing import Any

import referencing

from qmigrate.sources import REGISTRY


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
def load_schemas() -> tuple[dict[str, Any], referencing.Registry]:
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
    job_schema, registry = load_schemas()
    bundle = json.loads(json.dumps(job_schema))
    defs = bundle.setdefault("$defs", {})
    for branch in bundle["properties"]["source"]["allOf"]:
        ref = branch["then"]["$ref"]
        source_schema = registry.contents(job_schema["$id"].rsplit("/", 1)[0] + "/" + ref)
        name = ref.split("/")[-1].removesuffix(".schema.json")
        # Without its $id: its refs (#/$defs/template) then resolve against the bundle.
        defs[f"source_{name}"] = {
            k: v for k, v in source_schema.items() if k not in ("$schema", "$id")
        }
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


def with_defaults(document: dict[str, Any]) -> dict[str, Any]:
    """A copy of a valid job document with every `default` of the job schema filled in
    where its key is absent (creating the objects that hold such keys), so the code reads
    defaults from the schema alone. The document itself stays as written: the fingerprint
    is computed from it, so checkpoints of jobs written before a default existed resume."""
    job_schema, _ = load_schemas()
    return _filled(job_schema, document, job_schema)


def declared_defaults(section: str) -> dict[str, Any]:
    """The defaults of one object of the job schema (`target`, `mapping`...), for typed
    specs built in code without a job file."""
    job_schema, _ = load_schemas()
    return _filled(job_schema, {section: {}}, job_schema)[section]


def _filled(schema: dict[str, Any], value: Any, root: dict[str, Any]) -> Any:
    schema = _resolved(schema, root)
    properties = schema.get("properties")
    if not properties or not isinstance(value, dict):
        return value
    out = dict(value)
    for key, subschema in properties.items():
        subschema = _resolved(subschema, root)
        if key not in out:
            if "default" in subschema:
                out[key] = copy.deepcopy(subschema["default"])
            elif subschema.get("properties") and _holds_defaults(subschema, root):
                out[key] = {}
            else:
                continue
        out[key] = _filled(subschema, out[key], root)
    return out


def _holds_defaults(schema: dict[str, Any], root: dict[str, Any]) -> bool:
    return any(
        "default" in sub or _holds_defaults(sub, root)
        for sub in (_resolved(s, root) for s in schema.get("properties", {}).values())
    )


def _resolved(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    """A subschema with a local `$ref` (`#/$defs/NAME`) replaced by what it names."""
    ref = schema.get("$ref", "")
    if not ref.startswith("#/$defs/"):
        return schema
    return _resolved(root["$defs"][ref.removeprefix("#/$defs/")], root)
