"""Every example job in jobs/ is valid (with each environment variable it reads set)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from qmigrate import spec
from tests.conftest import REPO

JOBS = sorted((REPO / "jobs").glob("*.yaml"))


def test_there_are_example_jobs() -> None:
    assert any(p.name == "quickstart.yaml" for p in JOBS)


@pytest.mark.parametrize("path", JOBS, ids=[p.name for p in JOBS])
def test_example_job_validates(path: Path) -> None:
    names = set(re.findall(r"env\.([A-Za-z_][A-Za-z0-9_]*)", path.read_text()))
    job = spec.load(path, {name: f"dummy-{name.lower()}" for name in names})
    assert job.name
