"""Job files: templating, validation errors with paths and lines, secrets, typed jobs."""

from __future__ import annotations

from pathlib import Path

import pytest

from qmigrate import job_schema, spec
from qmigrate.errors import EXIT_INVALID, QmigrateError
from qmigrate.redaction import mask_secrets

VALID = """\
version: 1
name: demo
source:
  type: file
  path: data.jsonl
  vectors:
    embedding: {distance: cosine}
target:
  path: qdrant_data
  collection: demo
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "job.yaml"
    path.write_text(text)
    return path


def errors_of(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(QmigrateError) as caught:
        spec.load(write(tmp_path, text), env or {})
    assert caught.value.exit_code == EXIT_INVALID
    return caught.value.message.splitlines()


def test_valid_job_loads_with_defaults(tmp_path: Path) -> None:
    job = spec.load(write(tmp_path, VALID), {})
    assert job.name == "demo"
    assert job.batch_size == 256
    assert job.parallelism == 1
    assert job.restart == "resume"
    assert job.checkpoint_store == "target"
    assert job.target.on_missing == "create"
    assert job.mapping.keep_original_id_as == "original_id"


def test_missing_required_key_names_its_path_and_line(tmp_path: Path) -> None:
    text = VALID.replace("  collection: demo\n", "")
    assert errors_of(tmp_path, text) == [f"{tmp_path / 'job.yaml'}:8: target.collection: required"]


def test_unknown_key_is_reported_with_a_suggestion(tmp_path: Path) -> None:
    text = VALID + "batch_sise: 10\n"
    (error,) = errors_of(tmp_path, text)
    assert error.endswith(":11: batch_sise: unknown key (did you mean 'batch_size'?)")


def test_wrong_type_names_expected_and_actual(tmp_path: Path) -> None:
    text = VALID + "parallelism: many\n"
    (error,) = errors_of(tmp_path, text)
    assert error.endswith(":11: parallelism: expected integer, got string")


def test_every_error_is_reported_at_once(tmp_path: Path) -> None:
    text = VALID.replace("version: 1", "version: 2") + "restart: sometimes\n"
    errors = errors_of(tmp_path, text)
    assert len(errors) == 2
    assert "version: must be 1" in errors[0]
    assert (
        'restart: must be one of "resume", "restart", "recreate", "fail" (got "sometimes")'
        in errors[1]
    )


def test_source_part_is_checked_by_its_own_schema(tmp_path: Path) -> None:
    text = VALID.replace("  path: data.jsonl\n", "")
    (error,) = errors_of(tmp_path, text)
    assert error.endswith(":3: source.path: required")


def test_target_needs_exactly_one_of_path_or_url(tmp_path: Path) -> None:
    text = VALID.replace("  path: qdrant_data\n", "  path: a\n  url: http://localhost:6333\n")
    (error,) = errors_of(tmp_path, text)
    assert "target: set exactly one of: url, path" in error


def test_filter_conditions_are_explained_by_the_form_meant(tmp_path: Path) -> None:
    text = VALID + (
        "filter:\n  must:\n"
        "    - {key: price, match: {value: 1.5}}\n"
        "    - {key: price, rang: {gt: 1}}\n"
        "    - {must: [{key: a, match: {valu: 1}}]}\n"
    )
    errors = errors_of(tmp_path, text)
    assert errors[0].endswith(
        ":13: filter.must[0].match.value: expected string or integer or boolean, got number"
    )
    assert ":14: filter.must[1]: does not match any allowed form: " in errors[1]
    assert "{key, range}" in errors[1]
    assert errors[2].endswith(
        ":15: filter.must[2].must[0].match.valu: unknown key (did you mean 'value'?)"
    )


def test_malformed_yaml_gives_the_line(tmp_path: Path) -> None:
    (error,) = errors_of(tmp_path, VALID + "mapping: [unclosed\n")
    assert error.startswith(f"{tmp_path / 'job.yaml'}:")
    assert "malformed YAML" in error


def test_a_job_must_be_a_mapping(tmp_path: Path) -> None:
    (error,) = errors_of(tmp_path, "- just\n- a list\n")
    assert "a job file must be a YAML mapping" in error


def test_missing_environment_variable_names_itself_and_the_file(tmp_path: Path) -> None:
    text = VALID.replace("collection: demo", "collection: '{{ env.TARGET_COLLECTION }}'")
    (error,) = errors_of(tmp_path, text)
    assert error.startswith(f"{tmp_path / 'job.yaml'}:10:")
    assert "environment variable TARGET_COLLECTION is not set" in error


def test_defaults_and_environment_render(tmp_path: Path) -> None:
    text = VALID.replace(
        "collection: demo", "collection: \"{{ env.NAME | default('fallback') }}-{{ env.SUFFIX }}\""
    )
    job = spec.load(write(tmp_path, text), {"SUFFIX": "v2"})
    assert job.target.collection == "fallback-v2"


def test_template_syntax_error_is_invalid(tmp_path: Path) -> None:
    (error,) = errors_of(tmp_path, VALID.replace("demo\n", "{{ oops\n", 1))
    assert "template error" in error


def test_secret_values_never_appear_in_schema_errors(tmp_path: Path) -> None:
    text = VALID.replace("  path: qdrant_data\n", "  url: http://x:6333\n  api_key: 12345\n")
    (error,) = errors_of(tmp_path, text)
    assert "target.api_key: expected string, got integer" in error
    assert "12345" not in error


def test_mask_secrets_masks_keys_but_not_header_names() -> None:
    masked = mask_secrets(
        {"api_key": "s3cret", "nested": {"password": "pw", "token_header": "X-Token"}, "empty": ""}
    )
    assert masked == {
        "api_key": "***",
        "nested": {"password": "***", "token_header": "X-Token"},
        "empty": "",
    }


def test_env_file_parsing(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(
        "# comment\nexport A=1\nB='two'\n\nC=\"three\"  # quoted\nD=four # a comment\nE=${A}5\n"
    )
    assert spec.read_env_file(str(env_file)) == {
        "A": "1",
        "B": "two",
        "C": "three",
        "D": "four",
        "E": "15",
    }
    env_file.write_text("A=1\n\nno equals sign\n")
    with pytest.raises(QmigrateError, match=r"\.env:3: expected KEY=VALUE"):
        spec.read_env_file(str(env_file))


def test_fingerprint_ignores_credentials_but_not_what_is_read(tmp_path: Path) -> None:
    base = spec.load(write(tmp_path, VALID), {})
    moved = spec.load(write(tmp_path, VALID.replace("qdrant_data", "elsewhere")), {})
    filtered = spec.load(
        write(tmp_path, VALID + "filter: {must: [{key: a, match: {value: 1}}]}\n"), {}
    )
    other_file = spec.load(write(tmp_path, VALID.replace("data.jsonl", "other.jsonl")), {})
    assert base.fingerprint() == moved.fingerprint()
    assert base.fingerprint() != filtered.fingerprint()
    assert base.fingerprint() != other_file.fingerprint(), "another file is other data"


def test_job_files_expands_directories_in_name_order(tmp_path: Path) -> None:
    (tmp_path / "b.yaml").write_text(VALID)
    (tmp_path / "a.yml").write_text(VALID)
    (tmp_path / "notes.txt").write_text("x")
    assert [p.name for p in spec.job_files([str(tmp_path)])] == ["a.yml", "b.yaml"]
    with pytest.raises(QmigrateError, match="no such file"):
        spec.job_files([str(tmp_path / "missing.yaml")])


def test_schema_bundle_inlines_every_source() -> None:
    bundle = job_schema.job_schema_bundle()
    refs = [b["then"]["$ref"] for b in bundle["properties"]["source"]["allOf"]]
    assert refs and all(r.startswith("#/$defs/source_") for r in refs)
    for ref in refs:
        assert ref.removeprefix("#/$defs/") in bundle["$defs"]


def test_fingerprint_does_not_depend_on_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    (jobs / "job.yaml").write_text(
        VALID.replace("path: data.jsonl", 'path: "{{ job_dir }}/data.jsonl"')
    )
    monkeypatch.chdir(tmp_path)
    from_root = spec.load(Path("jobs/job.yaml"), {})
    monkeypatch.chdir(jobs)
    from_jobs = spec.load(Path("job.yaml"), {})
    assert from_root.source["path"] != from_jobs.source["path"], "the paths as written differ"
    assert from_root.fingerprint() == from_jobs.fingerprint()


def test_duplicate_keys_are_refused_naming_both_lines(tmp_path: Path) -> None:
    text = VALID + "batch_size: 10\ntarget: {path: other, collection: demo}\nbatch_size: 20\n"
    text += "mapping:\n  payload: {exclude: [a], exclude: [b]}\n"
    path = tmp_path / "job.yaml"
    assert errors_of(tmp_path, text) == [
        f"{path}:12: duplicate key 'target' (first at line 8)",
        f"{path}:13: duplicate key 'batch_size' (first at line 11)",
        f"{path}:15: duplicate key 'exclude' (first at line 15)",
    ]


def test_anchors_and_merge_keys_are_no_duplicates(tmp_path: Path) -> None:
    text = VALID + "verify: &v {sample: 10}\nx-other: {<<: *v, sample: 20}\n"
    errors = errors_of(tmp_path, text)
    assert not any("duplicate" in e for e in errors), errors


@pytest.mark.parametrize(
    "condition, problem",
    [
        (
            '{has_id: ["not-a-uuid", -1, 7, "6C0B1E8A-3F7D-4E0C-9A51-8D7F3C2B1A90"]}',
            [
                "filter.must[0].has_id[0]: 'not-a-uuid' is not a point ID",
                "filter.must[0].has_id[1]: -1 is not a point ID",
            ],
        ),
        (
            "{key: d, range: {gte: yesterday}}",
            ["filter.must[0].range.gte: 'yesterday' is neither a number nor an RFC 3339"],
        ),
        (
            "{key: d, range: {gte: '2024-1-1', lt: '2024-01-02'}}",
            ["filter.must[0].range.gte: '2024-1-1' is neither a number nor an RFC 3339"],
        ),
        (
            "{key: d, range: {gte: 1, lt: '2024-01-01T00:00:00Z'}}",
            ["filter.must[0].range: mixes numbers and datetimes"],
        ),
        (
            "{key: a, match: {any: [x, 1]}}",
            ["filter.must[0].match.any: must be all strings or all integers"],
        ),
        (
            "{key: a, match: {value: 9223372036854775808}}",
            ["filter.must[0].match.value: 9223372036854775808 is outside the 64-bit"],
        ),
        ("{key: a, values_count: {gte: -1}}", ["filter.must[0].values_count.gte: -1 is less"]),
        (
            "{key: loc, geo_radius: {center: {lat: 91, lon: 0}, radius: 10}}",
            ["filter.must[0].geo_radius.center.lat: 91 is greater than the maximum of 90"],
        ),
        (
            "{key: loc, geo_polygon: {exterior: {points: "
            "[{lat: 0, lon: 0}, {lat: 1, lon: 0}, {lat: 1, lon: 1}, {lat: 0, lon: 1}]}}}",
            ["filter.must[0].geo_polygon.exterior.points: the last point must repeat the first"],
        ),
        (
            "{nested: {key: parts, filter: {must: [{key: n, range: {lt: soon}}]}}}",
            ["filter.must[0].nested.filter.must[0].range.lt: 'soon' is neither"],
        ),
    ],
)
def test_filter_values_qdrant_refuses_are_errors_one_line_each(
    tmp_path: Path, condition: str, problem: list[str]
) -> None:
    text = VALID + "filter:\n  should: [{key: z, match: {value: 1}}]\n  must:\n"
    text += f"    - {condition}\n"
    errors = errors_of(tmp_path, text)
    assert len(errors) == len(problem), errors
    for error, expected in zip(errors, problem, strict=True):
        assert error.startswith(f"{tmp_path / 'job.yaml'}:14: {expected}"), error


def test_geo_nested_and_datetime_filters_are_valid(tmp_path: Path) -> None:
    text = VALID + (
        "filter:\n  must:\n"
        "    - {key: loc, geo_radius: {center: {lat: 52.5, lon: 13.4}, radius: 1000}}\n"
        "    - {key: loc, geo_bounding_box: {top_left: {lat: 53, lon: 13}, "
        "bottom_right: {lat: 52, lon: 14}}}\n"
        "    - {key: loc, geo_polygon: {exterior: {points: [{lat: 0, lon: 0}, {lat: 1, lon: 0},"
        " {lat: 1, lon: 1}, {lat: 0, lon: 0}]}}}\n"
        "    - {nested: {key: parts, filter: {must: [{key: color, match: {value: red}}]}}}\n"
        "    - {key: at, range: {gte: '2024-01-01T00:00:00Z', lt: '2025-01-01'}}\n"
        "    - {has_id: [0, 18446744073709551615, 6C0B1E8A-3F7D-4E0C-9A51-8D7F3C2B1A90]}\n"
    )
    job = spec.load(write(tmp_path, text), {})
    assert job.filter is not None and len(job.filter["must"]) == 6
