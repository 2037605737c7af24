"""Every example job in jobs/ is valid (with each environment variable it reads set)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from qmigrate import spec
from tests.conftest import REPO, run_cli

JOBS = sorted((REPO / "jobs").glob("*.yaml"))


def test_there_are_example_jobs() -> None:
    assert any(p.name == "quickstart.yaml" for p in JOBS)


@pytest.mark.parametrize("path", JOBS, ids=[p.name for p in JOBS])
def test_example_job_validates(path: Path) -> None:
    names = set(re.findall(r"env\.([A-Za-z_][A-Za-z0-9_]*)", path.read_text()))
    env = {n: f"https://{n.lower()}.example" if "URL" in n else f"dummy-{n.lower()}" for n in names}
    env["STAGE"] = "dev"  # a job serving several stages knows only its own
    job = spec.load(path, env)
    assert job.name


STAGES_JOB = REPO / "jobs" / "products-by-stage.yaml"


def test_one_job_file_serves_dev_stage_and_prod() -> None:
    rendered = {
        stage: spec.load(STAGES_JOB, {"STAGE": stage, "QDRANT_API_KEY": "key"})
        for stage in ("dev", "stage", "prod")
    }
    assert {s: j.name for s, j in rendered.items()} == {
        "dev": "products-dev",
        "stage": "products-stage",
        "prod": "products-prod",
    }
    assert {s: j.target.collection for s, j in rendered.items()} == {
        "dev": "products_dev",
        "stage": "products_stage",
        "prod": "products_prod",
    }
    urls = {s: j.target.url for s, j in rendered.items()}
    assert urls["dev"] == "http://localhost:6333"
    assert len(set(urls.values())) == 3 and all(
        u.startswith("https://") for s, u in urls.items() if s != "dev"
    )
    assert {s: j.target.on_missing for s, j in rendered.items()} == {
        "dev": "create",
        "stage": "create",
        "prod": "fail",
    }
    assert {s: j.mapping.set for s, j in rendered.items()} == {s: {"stage": s} for s in rendered}
    # Everything else is the same job.
    assert len({json.dumps(j.source, sort_keys=True) for j in rendered.values()}) == 1


def test_an_unknown_stage_fails_the_render() -> None:
    result = run_cli("validate", str(STAGES_JOB), env={"STAGE": "qa", "QDRANT_API_KEY": "key"})
    assert result.code == 2 and "products-by-stage.yaml:16" in result.stderr


def documented_jobs() -> list[str]:
    """The complete job examples of the README and docs/ (YAML blocks that start with
    `version: 1`): what a reader copies must be a valid job."""
    pages = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
    blocks = [b for page in pages for b in re.findall(r"```yaml\n(.*?)```", page.read_text(), re.S)]
    return [b for b in blocks if b.lstrip().startswith("version: 1")]


def test_unrendered_jobs_pass_check_jsonschema_against_the_published_schema(
    tmp_path: Path,
) -> None:
    """What editors and CI linters see: job files before templating, `qmigrate schema`."""
    schema = tmp_path / "job.schema.json"
    schema.write_text(run_cli("schema").stdout)
    examples = []
    for number, text in enumerate(documented_jobs()):
        examples.append(tmp_path / f"documented-{number}.yaml")
        examples[-1].write_text(text)
    assert len(examples) >= 3, "the README and docs/ show complete jobs"
    checker = Path(sys.executable).with_name("check-jsonschema")
    result = subprocess.run(
        [str(checker), "--schemafile", str(schema), *map(str, JOBS + examples)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    broken = tmp_path / "broken.yaml"
    complete = next(e.read_text() for e in examples if "batch_size: 256" in e.read_text())
    broken.write_text(complete.replace("batch_size: 256", "batch_size: many"))
    result = subprocess.run(
        [str(checker), "--schemafile", str(schema), str(broken)], capture_output=True, text=True
    )
    assert result.returncode == 1, "a wrong literal is still caught"
