"""The Docker image's install steps, without a container engine: build the wheel, install
it with every extra in a fresh venv, run the CLI from there.

SLOW (marked image_install): a fresh venv with chromadb, pyarrow, pinecone and qdrant-client,
one install per run (about 1-2 minutes with a warm pip cache). Deselect with
`pytest -m "not image_install"`.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.image_install


def run(*command: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    completed = subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    return completed.stdout + completed.stderr


def size_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6


def test_the_wheel_installs_with_every_extra_and_runs(tmp_path: Path) -> None:
    started = time.monotonic()
    dist = tmp_path / "dist"
    pip = ("-m", "pip", "--disable-pip-version-check")
    run(sys.executable, *pip, "wheel", "--no-deps", "--wheel-dir", dist, REPO, cwd=tmp_path)
    (wheel,) = dist.glob("qmigrate-*.whl")
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv, cwd=tmp_path)
    python = venv / "bin" / "python"
    run(python, *pip, "install", "--quiet", f"{wheel}[all]", cwd=tmp_path)
    qmigrate = venv / "bin" / "qmigrate"

    version = run(qmigrate, "--version", cwd=tmp_path)
    assert re.fullmatch(r"qmigrate \d+\.\d+\.\d+\n", version)
    jobs = REPO / "jobs"
    names = set(
        re.findall(r"env\.([A-Z_][A-Z0-9_]*)", "".join(p.read_text() for p in jobs.glob("*.yaml")))
    )
    env = {n: "https://example.invalid" if n.endswith("URL") else "placeholder" for n in names}
    env["STAGE"] = "prod"
    validated = run(qmigrate, "validate", jobs, cwd=tmp_path, env=env)
    assert validated.count(": ok") == len(list(jobs.glob("*.yaml")))
    broken = tmp_path / "broken.yaml"
    broken.write_text((jobs / "quickstart.yaml").read_text().replace("collection:", "colection:"))
    rejected = subprocess.run([qmigrate, "validate", broken], capture_output=True, text=True)
    assert rejected.returncode == 2, "the schemas shipped in the wheel are in force"
    assert "unknown key (did you mean 'collection'?)" in rejected.stderr
    for extra in ("chromadb", "pinecone", "pyarrow"):
        run(python, "-c", f"import {extra}", cwd=tmp_path)

    site = next((venv / "lib").glob("python3*/site-packages"))
    print(
        f"\nimage install: wheel {wheel.stat().st_size / 1e3:.0f} kB, site-packages "
        f"{size_mb(site):.0f} MB, {time.monotonic() - started:.0f}s"
    )
