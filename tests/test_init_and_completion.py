"""`qmigrate init` writes skeletons that validate; `qmigrate completion` completes in a shell."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from qmigrate import job_schema
from qmigrate.commands.init import source_types
from tests.conftest import run_cli

ENV_LINE = re.compile(r"^# Environment variables it reads: (.*)$", re.MULTILINE)


def placeholder_env(skeleton: str) -> dict[str, str]:
    """A value per variable the skeleton reads: a URL where the name says so."""
    found = ENV_LINE.search(skeleton)
    names = found.group(1).split(", ") if found else []
    return {n: "http://localhost:6333" if n.endswith("URL") else "placeholder" for n in names}


def test_source_types_come_from_the_schema() -> None:
    enum = job_schema.job_schema_bundle()["$defs"]
    assert set(source_types()) == {
        name.removeprefix("source_") for name in enum if name.startswith("source_")
    }


@pytest.mark.parametrize("source_type", source_types())
def test_init_skeleton_validates_once_its_placeholders_are_set(
    tmp_path: Path, source_type: str
) -> None:
    job = tmp_path / f"{source_type}.yaml"
    written = run_cli("init", source_type, "--output", str(job))
    assert written.code == 0, written.stderr
    skeleton = job.read_text()
    assert f"  type: {source_type}\n" in skeleton
    assert "# batch_size: 256" in skeleton, "optional keys are commented out"
    assert "# sync: {changed_field: updated_at}" in skeleton, "sync's key is offered"
    assert "# Records per read page: how many records one request to the source" in skeleton, (
        "descriptions become comments"
    )
    env = placeholder_env(skeleton)
    if source_type != "file":
        assert env, "secrets and URLs are env placeholders"
    validated = run_cli("validate", str(job), env=env)
    assert validated.code == 0, validated.stderr + skeleton
    assert run_cli("init", source_type, "--output", str(job)).code == 2, "never overwrites"


@pytest.mark.parametrize("source_type", source_types())
def test_init_local_targets_an_embedded_directory(tmp_path: Path, source_type: str) -> None:
    """A first job to try with no Qdrant server: the target is `target.path`, not a URL."""
    job = tmp_path / f"{source_type}.yaml"
    written = run_cli("init", source_type, "--local", "--output", str(job))
    assert written.code == 0, written.stderr
    skeleton = job.read_text()
    target = yaml.safe_load(skeleton)["target"]
    assert "path" in target and "url" not in target, skeleton
    assert "QDRANT_URL" not in placeholder_env(skeleton), "no server URL to set"
    validated = run_cli("validate", str(job), env=placeholder_env(skeleton))
    assert validated.code == 0, validated.stderr + skeleton


def test_init_rejects_an_unknown_source() -> None:
    result = run_cli("init", "nosuch")
    assert result.code == 2 and "expected one of: file" in result.stderr


def complete(script: str, words: list[str]) -> list[str]:
    """Run the completion function in bash as TAB would, with the last word being typed."""
    line = " ".join(words)
    program = f"""
{script}
COMP_WORDS=({line})
COMP_CWORD={len(words) - 1}
_qmigrate
printf '%s\\n' "${{COMPREPLY[@]}}"
"""
    completed = subprocess.run(
        ["bash", "--norc", "-c", program], capture_output=True, text=True, check=True
    )
    return completed.stdout.split()


@pytest.fixture(scope="module")
def bash_script() -> str:
    return run_cli("completion", "bash").stdout


def test_bash_completion_is_valid_bash(bash_script: str, tmp_path: Path) -> None:
    script = tmp_path / "qmigrate.bash"
    script.write_text(bash_script)
    checked = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr


def test_bash_completes_commands_options_and_choices(bash_script: str) -> None:
    assert complete(bash_script, ["qmigrate", "pl"]) == ["plan"]
    assert complete(bash_script, ["qmigrate", "in"]) == ["init"]
    assert complete(bash_script, ["qmigrate", "init", "--lo"]) == ["--local"]
    assert complete(bash_script, ["qmigrate", "plan", "--out"]) == ["--output"]
    assert complete(bash_script, ["qmigrate", "apply", "--ver"]) == ["--verify"]
    assert complete(bash_script, ["qmigrate", "completion", "z"]) == ["zsh"]
    assert complete(bash_script, ["qmigrate", "cu"]) == ["cutover"]
    assert complete(bash_script, ["qmigrate", "ro"]) == ["rollback"]
    assert complete(bash_script, ["qmigrate", "cutover", "--no"]) == ["--no-verify"]
    assert complete(bash_script, ["qmigrate", "sy"]) == ["sync"]
    assert complete(bash_script, ["qmigrate", "sync", "--dr"]) == ["--dry-run"]


@pytest.mark.skipif(
    shutil.which("zsh") is None, reason="zsh is not installed (.ci/run installs it)"
)
def test_zsh_completion_is_valid_zsh(tmp_path: Path) -> None:
    script = tmp_path / "_qmigrate.zsh"
    script.write_text(run_cli("completion", "zsh").stdout)
    checked = subprocess.run(["zsh", "-n", str(script)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    loaded = subprocess.run(
        [
            "zsh",
            "-f",
            "-c",
            f"autoload -U compinit && compinit -u && source {script} && "
            "print -r -- ${_comps[qmigrate]}",
        ],
        capture_output=True,
        text=True,
    )
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.strip(), "the completion is registered for qmigrate"
