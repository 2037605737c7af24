"""Rendering runs no code: a job file from a contributor is rendered by CI with its secrets
in the environment, so the template sees only what the docs list, and anything else stops
`validate` with the file and line before it could act."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from qmigrate import spec
from qmigrate.errors import EXIT_INVALID, QmigrateError
from tests.conftest import CliResult
from tests.test_spec import VALID, write

# The valid job of test_spec, its collection name the place a template goes.
JOB = VALID.replace("collection: demo", 'collection: "COLLECTION"')


def job_with(tmp_path: Path, collection: str) -> Path:
    return write(tmp_path, JOB.replace("COLLECTION", collection))


# Each tries to run `touch MARKER` while the file is rendered.
EXPLOITS = [
    "{{ cycler.__init__.__globals__.os.popen('touch MARKER').read() }}",
    "{{ joiner.__init__.__globals__.os.system('touch MARKER') }}",
    "{{ namespace.__init__.__globals__.os.popen('touch MARKER').read() }}",
    "{{ lipsum.__globals__['os'].popen('touch MARKER').read() }}",
    "{{ self._TemplateReference__context.cycler.__init__.__globals__.os.popen('touch MARKER') }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ job_dir.__class__.__mro__[1].__subclasses__() }}",
    "{{ ''['__class__'] }}",
    "{{ env.HOME.__class__.__base__.__subclasses__() }}",
    "{{ (env|attr('__class__')) }}",
    "{{ 'x'.format.__globals__ }}",
    "{{ '{0.__class__}'.format(job_dir) }}",
]


@pytest.mark.parametrize("template", EXPLOITS)
def test_validate_refuses_code_in_a_template_and_runs_none(
    tmp_path: Path, cli: Callable[..., CliResult], template: str
) -> None:
    marker = tmp_path / "marker"
    job = job_with(tmp_path, template.replace("MARKER", str(marker)))
    result = cli("validate", str(job))
    assert result.code == EXIT_INVALID, result.stderr
    assert f"{job}:10: " in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert not marker.exists(), "rendering the job file ran a command"


@pytest.mark.parametrize(
    "template, problem",
    [
        ("{{ range(10**10) | list }}", "'range' is not available"),
        ("{{ 'a' * 10**10 }}", "'*' would build a value too long"),
        ("{{ [0] * 10**10 }}", "'*' would build a value too long"),
        ("{{ 9 ** (9 ** 9) }}", "'**' would build a number too large"),
        ("{{ '%999999999d' % 1 }}", "'%' formatting is not available"),
        (
            "{{ 'a' | replace('a', 'a' * 999) | replace('a', 'a' * 999) | replace('a', 'aa') }}",
            "'replace' would build",
        ),
        ("{{ env.HOME | center(10**9) }}", "No filter named 'center'"),
        ("{{ env.HOME is divisibleby 3 }}", "No test named 'divisibleby'"),
        ("{% for k in [1, 2] %}{% endfor %}", "loops are not available"),
        ("{% macro m() %}{% endmacro %}", "macros are not available"),
        ("{% include 'x' %}", "includes are not available"),
        ("{{ env.items() }}", "environment variable items is not set"),
        ("{{ env | tojson }}", "env is read one variable at a time"),
        ("{{ env }}", "env is read one variable at a time"),
        ("{% set e = env %}{{ e.HOME }}", "env is read one variable at a time"),
    ],
)
def test_what_the_docs_do_not_list_is_an_error_with_the_line(
    tmp_path: Path, template: str, problem: str
) -> None:
    with pytest.raises(QmigrateError) as caught:
        spec.load(job_with(tmp_path, template), {"HOME": "/home/u"})
    assert caught.value.exit_code == EXIT_INVALID
    (line,) = caught.value.message.splitlines()
    assert line.startswith(f"{tmp_path / 'job.yaml'}:10: "), line
    assert problem in line, line


@pytest.mark.parametrize(
    "template, rendered",
    [
        ("{{ env.STAGE }}", "prod"),
        ("{{ env['STAGE'] | upper }}", "PROD"),
        ("{{ env.NOPE | default('dev') }}", "dev"),
        ("{{ {'dev': 'a', 'prod': 'b'}[env.STAGE] }}", "b"),
        ("{{ 'fail' if env.STAGE == 'prod' else 'create' }}", "fail"),
        ("{% set s = env.STAGE %}{{ s ~ '-' ~ (env.N | int + 1) }}", "prod-3"),
        ("{{ env.STAGE | replace('o', '0') | trim | title }}", "Pr0d"),
        ("{{ 'x' if env.NOPE is defined else 'y' }}", "y"),
        ("{{ job_dir | length > 0 }}", "True"),
    ],
)
def test_the_documented_templates_render(tmp_path: Path, template: str, rendered: str) -> None:
    job = spec.load(job_with(tmp_path, template), {"STAGE": "prod", "N": "2"})
    assert job.target.collection == rendered


def test_every_missing_variable_is_reported_at_once(tmp_path: Path) -> None:
    path = tmp_path / "job.yaml"
    path.write_text(
        JOB.replace("data.jsonl", "{{ env.DATA_DIR }}/data.jsonl")
        .replace("COLLECTION", "{{ env.PREFIX }}-{{ env.DATA_DIR }}-{{ env.SUFFIX }}")
        .replace("demo", "{{ env.OPTIONAL | default('demo') }}")
    )
    with pytest.raises(QmigrateError) as caught:
        spec.load(path, {})
    assert caught.value.message.splitlines() == [
        f"{path}:5: environment variable DATA_DIR is not set "
        "(give it a default with `| default(...)` if it is optional)",
        f"{path}:10: environment variable PREFIX is not set "
        "(give it a default with `| default(...)` if it is optional)",
        f"{path}:10: environment variable SUFFIX is not set "
        "(give it a default with `| default(...)` if it is optional)",
    ]
