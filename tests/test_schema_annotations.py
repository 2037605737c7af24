"""Editor support: every key of the published schema tells what it is and shows a value."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema

from qmigrate import job_schema
from tests.conftest import run_cli

ANNOTATIONS = ("title", "description", "examples")
NESTED_MAPS = ("properties", "$defs")  # dependentSchemas only forbid keys named elsewhere
NESTED_LISTS = ("allOf", "anyOf", "oneOf", "prefixItems")
NESTED = ("then", "else", "items", "additionalProperties")


def properties(schema: Any, where: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every (location, subschema) that `properties` of any subschema names, at any depth."""
    if not isinstance(schema, dict):
        return
    for name, sub in schema.get("properties", {}).items():
        yield f"{where}/{name}", sub
    for key in NESTED_MAPS:
        for name, sub in schema.get(key, {}).items():
            yield from properties(sub, f"{where}/{key}/{name}")
    for key in NESTED_LISTS:
        for index, sub in enumerate(schema.get(key, [])):
            yield from properties(sub, f"{where}/{key}/{index}")
    for key in NESTED:
        yield from properties(schema.get(key), f"{where}/{key}")


def test_every_key_has_a_title_a_description_and_examples() -> None:
    bundle = job_schema.job_schema_bundle()
    found = list(properties(bundle))
    assert len(found) > 100, "the walk reaches the nested keys and every source"
    assert any(where.startswith("/$defs/source_pinecone/") for where, _ in found)
    missing = [
        f"{where}: {', '.join(a for a in ANNOTATIONS if not sub.get(a))}"
        for where, sub in found
        if not all(sub.get(a) for a in ANNOTATIONS)
    ]
    assert not missing, "\n".join(missing)


def test_examples_are_valid_values_of_their_key() -> None:
    """An editor offers them and `qmigrate init` writes the first: each must validate."""
    bundle = job_schema.job_schema_bundle()
    wrong = []
    for where, sub in properties(bundle):
        assert isinstance(sub.get("examples"), list), where
        validator = jsonschema.Draft202012Validator({**sub, "$defs": bundle["$defs"]})
        wrong += [
            f"{where}: {example!r}"
            for example in sub["examples"]
            if not validator.is_valid(example)
        ]
    assert not wrong, "\n".join(wrong)


def test_schema_output_writes_the_file(tmp_path: Path) -> None:
    target = tmp_path / "qmigrate.schema.json"
    written = run_cli("schema", "--output", str(target))
    assert written.code == 0, written.stderr
    assert written.stdout == ""
    assert json.loads(target.read_text()) == job_schema.job_schema_bundle()
    printed = run_cli("schema")
    assert json.loads(printed.stdout) == job_schema.job_schema_bundle()
