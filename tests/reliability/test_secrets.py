"""One sentinel secret in every secret field and in the environment: it appears in no
output, log, checkpoint, dead-letter file, report or plan, whatever the command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from qmigrate.cli import main
from tests.servers.qdrant_rest import Faults, Store, running

SENTINEL = "Sentinel-7f3a9c-DoNotPrint"


def test_the_sentinel_appears_nowhere(
    tmp_path: Path,
    stand_in: tuple[str, Store, Faults],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Every command, in this process through `cli.main` as the console script runs it."""
    url, store, _ = stand_in
    rows = [{"id": i, "v": [1.0, float(i)], "k": i} for i in range(40)]
    rows[7]["v"] = [1.0]  # one invalid record, for the dead-letter file
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    job = {
        "version": 1,
        "name": "secrets",
        "source": {"type": "file", "path": "rows.jsonl", "vectors": {"v": {"distance": "dot"}}},
        "target": {"url": url, "api_key": "{{ env.QM_KEY }}", "collection": "copy"},
        "mapping": {"vectors": {"v": ""}},
        "on_invalid": {"action": "dead_letter", "path": "dead.jsonl"},
    }
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(job))
    # The same secret in a URL's user-info, and echoed by mistake into a non-secret field.
    bad = {**job, "name": "echo", "target": {**job["target"], "url": "{{ env.QM_KEY }}"}}
    (tmp_path / "echo.yaml").write_text(yaml.safe_dump(bad))
    chroma = {
        **job,
        "name": "url",
        "source": {
            "type": "chroma",
            "collection": "c",
            "url": "http://admin:{{ env.QM_KEY }}@127.0.0.1:9",
        },
    }
    (tmp_path / "url.yaml").write_text(yaml.safe_dump(chroma))
    monkeypatch.setenv("QM_KEY", SENTINEL)
    monkeypatch.setenv("OTHER_SECRET", SENTINEL)
    monkeypatch.chdir(tmp_path)
    outputs = []
    commands = ("validate", "render", "plan", "apply", "sync", "verify", "status", "reset", "apply")
    for command in commands:
        for file in ("job.yaml", "echo.yaml", "url.yaml"):
            for output in ("text", "json"):
                options = ["--report", "report.md"] if command == "verify" else []
                main([command, file, "--output", output, *options])
                captured = capsys.readouterr()
                outputs.append((command, file, output, captured.out + captured.err))
    leaks = [(c, f, o) for c, f, o, text in outputs if SENTINEL in text]
    assert not leaks, leaks
    assert any("***" in text for *_, text in outputs)
    files = [p for p in tmp_path.rglob("*") if p.is_file() and p.suffix != ".yaml"]
    assert {"dead.jsonl", "report.md"} <= {p.name for p in files}
    for path in files:
        assert SENTINEL not in path.read_text(errors="replace"), path
    checkpoints, _ = store.call("scroll", "_migration_offsets", limit=1000, with_payload=True)
    assert checkpoints and SENTINEL not in json.dumps([p.payload for p in checkpoints])


def test_checkpoints_record_a_target_url_without_its_credentials() -> None:
    from qmigrate.spec import TargetSpec
    from qmigrate.target import QdrantTarget

    with running() as (url, _, _):
        with_password = url.replace("http://", f"http://user:{SENTINEL}@")
        target = QdrantTarget(TargetSpec(collection="c", url=with_password))
        try:
            assert target.identity == {"location": url, "collection": "c"}
        finally:
            target.close()


@pytest.mark.parametrize("variable", ["DEPLOY_TOKEN", "AWS_SECRET_ACCESS_KEY", "OPENAI_KEY"])
def test_a_secret_variable_rendered_into_any_field_is_masked(
    tmp_path: Path,
    variable: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A pull request that renders a CI secret into fields no key marks secret (the job's
    name, a payload constant) cannot read it back from a plan comment or a render."""
    (tmp_path / "rows.jsonl").write_text('{"id": 1, "v": [1.0, 2.0]}\n')
    reference = "{{ env." + variable + " }}"
    job = {
        "version": 1,
        "name": "leak-" + reference,
        "source": {"type": "file", "path": "rows.jsonl", "vectors": {"v": {"distance": "dot"}}},
        "target": {"path": "target", "collection": "copy"},
        "mapping": {"vectors": {"v": ""}, "payload": {"set": {"x": reference}}},
    }
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(job))
    monkeypatch.setenv(variable, SENTINEL)
    monkeypatch.chdir(tmp_path)
    for command, output in [("render", "text"), ("plan", "text"), ("plan", "markdown")]:
        main([command, "job.yaml", "--output", output])
        captured = capsys.readouterr()
        assert "leak-***" in captured.out, (command, output, captured)
        assert SENTINEL not in captured.out + captured.err, (command, output)
