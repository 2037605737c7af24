"""The command line as a user meets it: exit codes, one-line errors, JSON output, no tracebacks."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from qdrant_client import QdrantClient, models

from tests.conftest import REPO, CliResult, run_cli
from tests.servers.process import free_port

Cli = Callable[..., CliResult]


def file_job(tmp_path: Path, **extra: Any) -> dict[str, Any]:
    rows = [
        {"id": i, "embedding": [float(i), 1.0, 0.5], "color": "red" if i % 2 else "blue"}
        for i in range(20)
    ]
    (tmp_path / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    job = {
        "version": 1,
        "name": "cli-job",
        "source": {
            "type": "file",
            "path": "data.jsonl",
            "vectors": {"embedding": {"distance": "dot"}},
        },
        "target": {"path": "qdrant_data", "collection": "points"},
        "batch_size": 7,
    }
    job.update(extra)
    return job


def assert_one_line_error(result: CliResult, code: int, *fragments: str) -> None:
    assert result.code == code, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_help_lists_every_command() -> None:
    result = run_cli("--help")
    assert result.code == 0
    for command in ("validate", "render", "plan", "apply", "status", "reset", "schema"):
        assert command in result.stdout


def test_usage_error_exits_2() -> None:
    assert run_cli("apply").code == 2
    assert run_cli("frobnicate").code == 2


def test_validate_reports_each_file(tmp_path: Path, write_job: Callable, cli: Cli) -> None:
    write_job(file_job(tmp_path), "a.yaml")
    write_job(file_job(tmp_path, parallelism=0), "b.yaml")
    result = cli("validate", ".")
    assert result.code == 2
    assert "a.yaml: ok" in result.stdout
    assert "b.yaml:" in result.stdout and "parallelism:" in result.stdout
    data = cli("validate", "--output", "json", ".").json()
    assert data["valid"] is False
    assert [f["valid"] for f in data["files"]] == [True, False]


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("version: 1\nname: [unclosed\n", "malformed YAML"),
        ("version: 1\nname: x\n", "source: required"),
        ("version: 1\nname: 5\n", "name: expected string, got integer"),
        ("version: 1\nname: x\ncolour: red\n", "colour: unknown key"),
        (
            "version: 1\nname: '{{ env.QMIGRATE_TEST_UNSET }}'\n",
            "environment variable QMIGRATE_TEST_UNSET is not set",
        ),
    ],
    ids=["malformed-yaml", "schema-error", "wrong-type", "unknown-key", "missing-env-var"],
)
def test_invalid_job_files_exit_2_with_one_line(
    tmp_path: Path, cli: Cli, text: str, fragment: str
) -> None:
    (tmp_path / "job.yaml").write_text(text)
    result = cli("apply", "job.yaml")
    assert result.code == 2
    assert "Traceback" not in result.stderr
    assert fragment in result.stderr
    assert result.stderr.startswith("qmigrate: error: job.yaml:")


def test_unreachable_target_fails_before_moving_data(
    tmp_path: Path, write_job: Callable, cli: Cli
) -> None:
    port = free_port()
    write_job(file_job(tmp_path, target={"url": f"http://127.0.0.1:{port}", "collection": "x"}))
    result = cli("apply", "job.yaml")
    assert_one_line_error(result, 1, f"target Qdrant at http://127.0.0.1:{port}", "cannot connect")


class _RejectingQdrant(BaseHTTPRequestHandler):
    """Answers like a Qdrant server whose API key does not match (no Qdrant binary runs here)."""

    def do_GET(self) -> None:
        status = 401 if self.headers.get("api-key") != "right" else 200
        reply(self, status, b'{"status":{"error":"Invalid api-key"}}')

    def log_message(self, *args: Any) -> None:
        pass


def reply(handler: BaseHTTPRequestHandler, status: int, body: bytes) -> None:
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


@contextlib.contextmanager
def serving(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """A stand-in HTTP server on a free port, for answers no real server here gives."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def rejecting_qdrant() -> Iterator[str]:
    with serving(_RejectingQdrant) as url:
        yield url


def test_wrong_api_key_is_named_and_never_printed(
    tmp_path: Path, write_job: Callable, cli: Cli, rejecting_qdrant: str
) -> None:
    target = {"url": rejecting_qdrant, "api_key": "{{ env.KEY }}", "collection": "x"}
    write_job(file_job(tmp_path, target=target))
    result = cli("apply", "job.yaml", env={"KEY": "wrong-secret-value"})
    assert_one_line_error(result, 1, "rejected the API key")
    assert "wrong-secret-value" not in result.stderr + result.stdout


def test_incompatible_collection_is_refused_before_any_write(
    tmp_path: Path, write_job: Callable, cli: Cli
) -> None:
    client = QdrantClient(path=str(tmp_path / "qdrant_data"))
    client.create_collection(
        "points", vectors_config=models.VectorParams(size=4, distance=models.Distance.COSINE)
    )
    client.close()
    write_job(file_job(tmp_path))
    result = cli("apply", "job.yaml")
    assert_one_line_error(
        result,
        1,
        "target collection 'points' is incompatible",
        "vector 'embedding' is missing (it has: \"\" (unnamed))",
    )
    write_job(file_job(tmp_path, mapping={"vectors": {"embedding": ""}}))
    result = cli("apply", "job.yaml")
    assert_one_line_error(
        result,
        1,
        "the unnamed vector has size 4, the source has 3",
        "the unnamed vector has distance Cosine, the source has Dot",
    )
    client = QdrantClient(path=str(tmp_path / "qdrant_data"))
    assert client.count("points").count == 0
    assert not client.collection_exists("_migration_offsets")
    client.close()


def test_on_missing_fail_refuses_to_create(tmp_path: Path, write_job: Callable, cli: Cli) -> None:
    job = file_job(tmp_path)
    job["target"]["on_missing"] = "fail"
    write_job(job)
    assert_one_line_error(cli("apply", "job.yaml"), 1, "does not exist (target.on_missing is fail)")


def test_render_masks_secrets(tmp_path: Path, write_job: Callable, cli: Cli) -> None:
    target = {"url": "http://localhost:6333", "api_key": "{{ env.KEY }}", "collection": "x"}
    write_job(file_job(tmp_path, target=target))
    result = cli("render", "job.yaml", "--var", "KEY=hunter2")
    assert result.code == 0
    assert "hunter2" not in result.stdout
    assert "api_key: '***'" in result.stdout
    assert (
        cli("render", "--output", "json", "job.yaml", "--var", "KEY=x").json()["target"]["api_key"]
        == "***"
    )


def test_var_and_env_file_feed_the_template(tmp_path: Path, write_job: Callable, cli: Cli) -> None:
    job = file_job(tmp_path)
    job["target"]["collection"] = "{{ env.A }}-{{ env.B }}"
    write_job(job)
    (tmp_path / "vars.env").write_text("A=from-file\nB=from-file\n")
    result = cli(
        "render", "job.yaml", "--env-file", "vars.env", "--var", "B=from-var", "--output", "json"
    )
    assert result.json()["target"]["collection"] == "from-file-from-var"


def test_schema_prints_json_schema() -> None:
    result = run_cli("schema")
    assert result.code == 0
    schema = json.loads(result.stdout)
    assert schema["$schema"].endswith("2020-12/schema")
    assert "source_file" in schema["$defs"]


def test_apply_plan_status_reset_round_trip(tmp_path: Path, write_job: Callable, cli: Cli) -> None:
    write_job(file_job(tmp_path))
    plan = cli("plan", "--output", "json", "job.yaml").json()["plans"][0]
    assert plan["source"]["count"] == 20
    assert plan["target"]["action"] == "create"
    assert plan["checkpoint"]["state"] == "none"
    assert not (tmp_path / "qdrant_data" / "collection").exists(), "plan must write nothing"

    applied = cli("apply", "--output", "json", "job.yaml")
    assert applied.code == 0, applied.stderr
    summary = applied.json()["jobs"][0]
    assert (summary["status"], summary["written"], summary["count_check"]) == ("done", 20, "ok")

    again = cli("apply", "--output", "json", "job.yaml").json()["jobs"][0]
    assert (again["status"], again["written"], again["target_count"]) == ("already done", 0, 20)

    status = cli("status", "--output", "json", "job.yaml").json()["jobs"][0]
    assert status["status"] == "done" and status["points"] == 20

    assert cli("reset", "job.yaml").code == 0
    status = cli("status", "--output", "json", "job.yaml").json()["jobs"][0]
    assert status["status"] == "not started"
    text = cli("status", "job.yaml").stdout
    assert "job cli-job: not started" in text


def test_json_output_on_failure_is_still_json(
    tmp_path: Path, write_job: Callable, cli: Cli
) -> None:
    write_job(
        file_job(tmp_path, target={"url": f"http://127.0.0.1:{free_port()}", "collection": "x"})
    )
    result = cli("apply", "--output", "json", "job.yaml")
    assert result.code == 1
    data = result.json()
    assert data["ok"] is False and "cannot connect" in data["error"]


def test_quickstart_job_runs_from_the_repo(tmp_path: Path) -> None:
    result = run_cli(
        "apply",
        "jobs/quickstart.yaml",
        "--output",
        "json",
        cwd=REPO,
        env={"QMIGRATE_TARGET_PATH": str(tmp_path / "quickstart")},
    )
    assert result.code == 0, result.stderr
    summary = result.json()["jobs"][0]
    assert summary["written"] == 1000
    assert summary["count_check"] == "ok"


def test_failed_count_check_exits_1_with_the_summary(
    tmp_path: Path, write_job: Callable, cli: Cli
) -> None:
    write_job(file_job(tmp_path))
    with (tmp_path / "data.jsonl").open("a") as handle:  # the same ID twice: one point
        handle.write(json.dumps({"id": 3, "embedding": [1.0, 1.0, 1.0]}) + "\n")
    result = cli("apply", "--output", "json", "job.yaml")
    assert result.code == 1
    data = result.json()
    assert data["ok"] is False
    assert (
        "count check failed: the source holds 1 records whose ID an earlier record"
        in (data["error"])
    )
    assert data["jobs"][0]["total_points"] == 21
    with (tmp_path / "job.yaml").open("a") as handle:  # the way out: accept them
        handle.write("on_duplicate: last_wins\n")
    again = cli("apply", "--output", "json", "job.yaml")
    assert again.code == 0, again.stderr
    assert again.json()["jobs"][0]["status"] == "already done"
    assert again.json()["jobs"][0]["duplicates"] == 1


class _BrokenQdrant(BaseHTTPRequestHandler):
    """Lists collections, then fails every other request in a way no layer expects."""

    def do_GET(self) -> None:
        if self.path.startswith("/collections?") or self.path == "/collections":
            body, status = b'{"result":{"collections":[]},"status":"ok","time":0}', 200
        else:
            body, status = b"I'm a teapot\nsecond line", 418
        reply(self, status, body)

    def log_message(self, *args: Any) -> None:
        pass


def test_unexpected_server_answers_are_one_line_not_a_traceback(
    tmp_path: Path, write_job: Callable, cli: Cli
) -> None:
    with serving(_BrokenQdrant) as url:
        write_job(file_job(tmp_path, target={"url": url, "collection": "x"}))
        for command in ("plan", "apply"):
            assert_one_line_error(cli(command, "job.yaml"), 1, "unexpected failure: HTTP 418")


def test_a_foreign_checkpoint_file_is_a_clear_error(
    tmp_path: Path, write_job: Callable, cli: Cli
) -> None:
    write_job(file_job(tmp_path, checkpoint={"store": "file", "path": "state.json"}))
    (tmp_path / "state.json").write_text("{}")
    assert_one_line_error(cli("status", "job.yaml"), 1, "is not a qmigrate checkpoint file")
