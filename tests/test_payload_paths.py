"""Nested payload paths in mapping.payload (include, exclude, rename), in Qdrant's key
syntax, through the CLI; and refused at validation when they do not parse."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from qmigrate import payload_paths
from tests.conftest import read_collection, run_cli

ROW = {
    "id": 1,
    "v": [1.0, 0.0],
    "title": "a",
    "meta": {"origin": "crawler", "lang": "en", "deep": {"x": 1, "y": 2}},
    "tags": [{"note": "n1", "k": 1}, {"note": "n2", "k": 2}, "plain"],
    "a.b": "dotted key",
}


def job_file(tmp_path: Path, payload: dict[str, Any]) -> Path:
    data = tmp_path / "rows.jsonl"
    data.write_text(json.dumps(ROW) + "\n")
    document = {
        "version": 1,
        "name": "paths",
        "source": {"type": "file", "path": str(data), "vectors": {"v": {"distance": "dot"}}},
        "target": {"path": str(tmp_path / "target"), "collection": "copy"},
        "mapping": {"payload": payload},
    }
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def migrated(tmp_path: Path, payload: dict[str, Any]) -> dict[str, Any]:
    job = job_file(tmp_path, payload)
    applied = run_cli("apply", str(job), cwd=tmp_path)
    assert applied.code == 0, applied.stderr
    verified = run_cli("verify", str(job), "--sample", "all", cwd=tmp_path)
    assert verified.code == 0, verified.stdout + verified.stderr
    return read_collection(tmp_path / "target", "copy")[1].payload


def test_exclude_and_rename_reach_into_objects_and_arrays(tmp_path: Path) -> None:
    payload = migrated(
        tmp_path,
        {
            "exclude": ["meta.origin", "tags[].k", "meta.deep.y"],
            "rename": {"meta.lang": "lang", '"a.b"': "ab.c"},
        },
    )
    assert payload == {
        "title": "a",
        "meta": {"deep": {"x": 1}},
        "tags": [{"note": "n1"}, {"note": "n2"}, "plain"],
        "lang": "en",
        "ab": {"c": "dotted key"},
    }


def test_include_keeps_only_the_named_nested_values(tmp_path: Path) -> None:
    payload = migrated(tmp_path, {"include": ["meta.deep.x", "meta.lang", "tags[].note"]})
    assert payload == {
        "meta": {"deep": {"x": 1}, "lang": "en"},
        "tags": [{"note": "n1"}, {"note": "n2"}, "plain"],
    }


def test_a_path_that_does_not_parse_is_refused_at_validation(tmp_path: Path) -> None:
    job = job_file(tmp_path, {"exclude": ["meta..origin"], "rename": {"tags[].note": "note"}})
    result = run_cli("validate", str(job), cwd=tmp_path)
    assert result.code == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert any(
        re.search(r"job\.yaml:\d+: mapping\.payload\.exclude\[0\]: \"meta\.\.origin\" is not", line)
        for line in lines
    ), result.stderr
    assert any('"tags[].note" is not a payload path' in line for line in lines), result.stderr


def test_the_schema_holds_the_patterns_the_mapper_parses() -> None:
    schema = json.loads(Path("schemas/job.schema.json").read_text())
    payload = schema["$defs"]["mapping"]["properties"]["payload"]["properties"]
    assert payload["exclude"]["items"]["pattern"] == payload_paths.PATH_PATTERN
    assert payload["include"]["items"]["pattern"] == payload_paths.PATH_PATTERN
    assert payload["rename"]["propertyNames"]["pattern"] == payload_paths.PLAIN_PATH_PATTERN
