"""`--output markdown` of plan, apply and verify: one style, ready for a PR comment or a CI
job summary."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tests.conftest import CliResult
from tests.test_cli import file_job

Cli = Callable[..., CliResult]
CHANGED_FILTER = {"must": [{"key": "color", "match": {"value": "red"}}]}


def test_plan_markdown_covers_every_job_and_says_what_to_do_on_a_changed_job(
    tmp_path: Path, write_job: Callable, cli: Cli
) -> None:
    jobs = tmp_path / "jobs"
    jobs.mkdir()

    def job(**extra: object) -> dict[str, object]:
        spec = file_job(tmp_path, **extra)
        spec["source"]["path"] = str(tmp_path / "data.jsonl")
        return spec

    write_job(job(), "jobs/a.yaml")
    write_job(job(name="second"), "jobs/b.yaml")
    planned = cli("plan", "--output", "markdown", "jobs")
    assert planned.code == 0, planned.stderr
    text = planned.stdout
    assert text.count("### qmigrate plan ") == 2
    assert "### qmigrate plan `cli-job`: ✅ ready" in text
    assert "### qmigrate plan `second`: ✅ ready" in text
    assert "| source | file, 20 records |" in text
    assert "| target action | ✅ create |" in text
    assert "| filter | none |" in text
    assert "| checkpoint | none, 0 points written (target store) |" in text

    assert cli("apply", "jobs/a.yaml").code == 0
    write_job(job(filter=CHANGED_FILTER), "jobs/a.yaml")
    refused = cli("plan", "--output", "markdown", "jobs/a.yaml")
    assert refused.code == 1, "apply would refuse: plan still exits 1 with markdown"
    text = refused.stdout
    assert "### qmigrate plan `cli-job`: ❌ apply would refuse" in text
    assert "| checkpoint | changed job (apply will refuse), 20 points written" in text
    assert "#### Apply would refuse" in text and "(changed: filter)" in text
    assert "set `restart: restart`" in text
    assert "evaluated client-side" in text
    assert "apply would refuse" in refused.stderr


def test_apply_and_verify_markdown_share_the_style(
    tmp_path: Path, write_job: Callable, cli: Cli
) -> None:
    write_job(file_job(tmp_path))
    applied = cli("apply", "--output", "markdown", "--verify", "--queries", "2", "job.yaml")
    assert applied.code == 0, applied.stderr
    text = applied.stdout
    assert "### qmigrate apply `cli-job`: ✅ done" in text
    assert "| written | 20 |" in text
    assert "| count check | ✅ ok (target holds 20 points" in text
    assert "### qmigrate verify `cli-job`: ✅ pass" in text
    verified = cli("verify", "--output", "markdown", "--queries", "2", "job.yaml")
    assert verified.code == 0, verified.stderr
    assert verified.stdout.startswith("### qmigrate verify `cli-job`: ✅ pass\n\n| check |")
    assert "| sample | ✅ pass |" in verified.stdout

    stopped = cli("apply", "--output", "markdown", "missing.yaml")
    assert stopped.code == 2
    assert "### qmigrate apply: ❌ stopped" in stopped.stdout


def test_plan_markdown_on_an_invalid_file_says_what_is_wrong(
    tmp_path: Path, write_job: Callable, cli: Cli
) -> None:
    job = file_job(tmp_path, filter={"must": [{"has_id": ["not-a-uuid"]}]})
    job["batch_sise"] = 7
    path = write_job(job)
    planned = cli("plan", "--output", "markdown", "job.yaml")
    assert planned.code == 2
    assert planned.stdout.startswith("### qmigrate plan: ❌ stopped\n\n```\n")
    assert f"{path.name}:" in planned.stdout
    assert "batch_sise: unknown key" in planned.stdout
    assert "filter.must[0].has_id[0]: 'not-a-uuid' is not a point ID" in planned.stdout


def test_plan_json_puts_jobs_under_the_key_the_other_commands_use(
    tmp_path: Path, write_job: Callable, cli: Cli
) -> None:
    write_job(file_job(tmp_path))
    planned = cli("plan", "--output", "json", "job.yaml").json()
    applied = cli("apply", "--output", "json", "job.yaml").json()
    status = cli("status", "--output", "json", "job.yaml").json()
    assert set(planned) == set(applied) == set(status) == {"ok", "jobs"}
    assert planned["jobs"][0]["job"] == applied["jobs"][0]["job"] == "cli-job"
