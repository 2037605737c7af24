"""The pre-commit hook, run by the real pre-commit on a throwaway job repo.

Slow the first time in a session (~1 min): pre-commit builds a virtualenv and pip-installs
qmigrate from a snapshot of this checkout. PRE_COMMIT_HOME is shared by the tests of a
session, so that happens once.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO

PRE_COMMIT = Path(sys.executable).with_name("pre-commit")
GOOD_JOB = """\
version: 1
name: good
source: {type: file, path: data.jsonl, vectors: {embedding: {distance: cosine}}}
target: {path: qdrant_data, collection: products}
"""
BAD_JOB = GOOD_JOB.replace("collection: products", "colection: products")


def git(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    identity = ["-c", "user.name=test", "-c", "user.email=test@example.com"]
    return subprocess.run(
        ["git", *identity, *args], cwd=cwd, capture_output=True, text=True, timeout=600
    )


@pytest.fixture(scope="session")
def hook_repo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """This checkout as it is now (uncommitted work included) committed in a new repo:
    pre-commit clones `repo` at `rev`, so the hook must be in a commit."""
    snapshot = tmp_path_factory.mktemp("hook-repo")
    listed = git(REPO, "ls-files", "--cached", "--others", "--exclude-standard", "-z")
    for name in filter(None, listed.stdout.split("\0")):
        source = REPO / name
        if source.is_file():
            (snapshot / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, snapshot / name)
    git(snapshot, "init", "-q")
    git(snapshot, "add", "-A")
    assert git(snapshot, "commit", "-q", "-m", "snapshot").returncode == 0
    return snapshot, git(snapshot, "rev-parse", "HEAD").stdout.strip()


@pytest.fixture(scope="session")
def pre_commit_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("pre-commit-home")


def test_the_hook_file_names_qmigrate_validate_for_job_files() -> None:
    hooks = yaml.safe_load((REPO / ".pre-commit-hooks.yaml").read_text())
    hook = next(h for h in hooks if h["id"] == "qmigrate-validate")
    assert (hook["entry"], hook["language"]) == ("qmigrate validate", "python")


def test_a_bad_job_fails_the_commit_and_a_good_one_passes(
    tmp_path: Path, hook_repo: tuple[Path, str], pre_commit_home: Path
) -> None:
    repo_path, rev = hook_repo
    jobs_repo = tmp_path / "jobs-repo"
    (jobs_repo / "jobs").mkdir(parents=True)
    git(jobs_repo, "init", "-q")
    config = {
        "repos": [{"repo": str(repo_path), "rev": rev, "hooks": [{"id": "qmigrate-validate"}]}]
    }
    (jobs_repo / ".pre-commit-config.yaml").write_text(yaml.safe_dump(config))
    env = {**os.environ, "PRE_COMMIT_HOME": str(pre_commit_home)}
    installed = subprocess.run(
        [str(PRE_COMMIT), "install"], cwd=jobs_repo, env=env, capture_output=True, text=True
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr

    def commit(name: str, text: str) -> subprocess.CompletedProcess[str]:
        (jobs_repo / "jobs" / name).write_text(text)
        git(jobs_repo, "add", "-A")
        return subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-m", name],
            cwd=jobs_repo,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )

    bad = commit("bad.yaml", BAD_JOB)
    assert bad.returncode != 0, bad.stdout + bad.stderr
    said = bad.stdout + bad.stderr
    assert "qmigrate validate" in said and "Failed" in said
    assert "target.colection: unknown key (did you mean 'collection'?)" in said

    (jobs_repo / "jobs" / "bad.yaml").unlink()
    good = commit("good.yaml", GOOD_JOB)
    assert good.returncode == 0, good.stdout + good.stderr
    assert "Passed" in good.stdout + good.stderr
    assert git(jobs_repo, "log", "--oneline").stdout.count("\n") == 1
