"""Fuzzing the job loader: whatever a job file holds, loading it ends in a job or in exit 2
with every message line naming the file, never in another exception (a traceback)."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qmigrate import spec
from qmigrate.errors import EXIT_INVALID, QmigrateError

KEYS = [
    "version",
    "name",
    "source",
    "target",
    "type",
    "path",
    "url",
    "collection",
    "vectors",
    "distance",
    "mapping",
    "payload",
    "filter",
    "must",
    "key",
    "match",
    "value",
    "range",
    "batch_size",
    "parallelism",
    "restart",
    "checkpoint",
    "on_invalid",
    "verify",
    "api_key",
]
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True),
    st.text(max_size=20),
    st.sampled_from(["file", "qdrant", "cosine", "x.jsonl", "{{ env.X }}"]),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=8), inner, max_size=5)
    ),
    max_leaves=30,
)
TEMPLATE_BITS = st.sampled_from(
    [
        "{{",
        "}}",
        "{%",
        "%}",
        "{{ env.NOPE }}",
        "{{ env.HOME | default('x') }}",
        "{% if x %}",
        "{% endif %}",
        "{{ job_dir }}",
        "{# c #}",
        "{{ 1/0 }}",
        "{{ env }}",
        "\n",
        ": ",
        "- ",
        "'",
    ]
)
FUZZ = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def load_or_reject(tmp_path: Path, text: str) -> None:
    path = tmp_path / "job.yaml"
    path.write_text(text)
    try:
        spec.load(path, {"HOME": "/root"})
    except QmigrateError as exc:
        assert exc.exit_code == EXIT_INVALID, exc.message
        for line in exc.message.splitlines():
            assert line.startswith(str(path)), line


@FUZZ
@given(st.text(max_size=300))
def test_any_text(tmp_path: Path, text: str) -> None:
    load_or_reject(tmp_path, text)


@FUZZ
@given(VALUES)
def test_any_yaml_structure(tmp_path: Path, value: object) -> None:
    load_or_reject(tmp_path, yaml.safe_dump(value, allow_unicode=True))


@FUZZ
@given(VALUES)
def test_any_json_structure(tmp_path: Path, value: object) -> None:
    load_or_reject(tmp_path, json.dumps(value))


@FUZZ
@given(st.lists(st.one_of(TEMPLATE_BITS, st.text(max_size=10)), max_size=12))
def test_any_templating(tmp_path: Path, bits: list[str]) -> None:
    base = "version: 1\nname: fuzz\nsource: {type: file, path: x.jsonl, vectors: {v: {distance: dot}}}\n"
    load_or_reject(tmp_path, base + "target: {path: q, collection: " + "".join(bits) + "}\n")
