"""The command line as a user meets it: exit codes, one-line errors, JSON output, no tracebacks."""

from __future__ import annotations

import contextlib
import json
import pkgutil
import re
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from qdrant_client import QdrantClient, models

import qmigrate.commands
from tests.conftest import REPO, CliResult, run_cli
from tests.servers.process import free_port
from tests.servers.qdrant_rest import running

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


COMMANDS = (
    "validate",
    "render",
    "plan",
    "apply",
    "sync",
    "verify",
    "cutover",
    "rollback",
    "status",
    "reset",
    "schema",
    "init",
    "completion",
)


def listed_commands(help_text: str) -> list[str]:
    """The entries of --help's "commands:" section: argparse indents each subcommand's name
    by four spaces there (its help text, and the description above, never start so)."""
    section = help_text.split("\ncommands:\n", 1)[1]
    return re.findall(r"^    (\S+)", section, flags=re.MULTILINE)


def test_help_lists_every_command() -> None:
    modules = {m.name for m in pkgutil.iter_modules(qmigrate.commands.__path__)} - {"common"}
    assert modules == set(COMMANDS), "one module in qmigrate/commands per subcommand"
    result = run_cli("--help")
    assert result.code == 0
    listed = listed_commands(result.stdout)
    assert listed == list(COMMANDS), f"missing: {set(COMMANDS) - set(listed)}"


def test_usage_error_exits_2() -> None:
    assert run_cli("apply").code == 2
    assert run_cli("frobnicate").code == 2


def test_validate_reports_each_file(tmp_path: Path, write_job: Callable, cli: Cli) -> None:
    write_job(file_job(tmp_path), "a.yaml")
    write_job(file_job(tmp_path, parallelism=0), "b.yaml")
    result = cli("validate", ".")
    assert result.code == 2
    assert result.stdout.strip() == "a.yaml: ok", "errors go to stderr"
    assert result.stderr.startswith("qmigrate: error: b.yaml:")
    assert "parallelism:" in result.stderr
    data = cli("validate", "--output", "json", ".").json()
    assert data["ok"] is False and data["error"] == "1 of 2 job files are invalid"
    assert [f["ok"] for f in data["files"]] == [True, False]


def test_validating_a_job_without_a_filter_does_not_load_qdrant_client() -> None:
    """qdrant-client takes a second or more to import; only a filter's check needs it, so a
    pre-commit hook over many job files stays quick (bench: validate, BENCHMARKS.md)."""
    probe = (
        "import sys\n"
        "from qmigrate.cli import main\n"
        "code = main(['validate', 'jobs/quickstart.yaml'])\n"
        "print(code, 'qdrant_client' in sys.modules)\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert completed.stdout.split()[-2:] == ["0", "False"], completed.stderr


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
        cli("render", "--output", "json", "job.yaml", "--var", "KEY=x").json()["job"]["target"][
            "api_key"
        ]
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
    assert result.json()["job"]["target"]["collection"] == "from-file-from-var"


def test_schema_prints_json_schema() -> None:
    result = run_cli("schema")
    assert result.code == 0
    schema = json.loads(result.stdout)
    assert schema["$schema"].endswith("2020-12/schema")
    assert "source_file" in schema["$defs"]


def test_apply_plan_status_reset_round_trip(tmp_path: Path, write_job: Callable, cli: Cli) -> None:
    write_job(file_job(tmp_path))
    plan = cli("plan", "--output", "json", "job.yaml").json()["jobs"][0]
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
        target = {"url": url, "collection": "x", "prefer_grpc": False}  # a REST-only server
        write_job(file_job(tmp_path, target=target))
        for command in ("plan", "apply"):
            assert_one_line_error(cli(command, "job.yaml"), 1, "unexpected failure: HTTP 418")


def test_a_foreign_checkpoint_file_is_a_clear_error(
    tmp_path: Path, write_job: Callable, cli: Cli
) -> None:
    write_job(file_job(tmp_path, checkpoint={"store": "file", "path": "state.json"}))
    (tmp_path / "state.json").write_text("{}")
    assert_one_line_error(cli("status", "job.yaml"), 1, "is not a qmigrate checkpoint file")


# --- trust: what a new, then a hostile, user tried ----------------------------------------


def test_non_finite_vector_values_are_invalid_records(
    tmp_path: Path, write_job: Callable, cli: Cli
) -> None:
    lines = [json.dumps({"id": i, "embedding": [float(i), 1.0, 0.5]}) for i in range(20)]
    for row, bad in zip(
        (2, 5, 8, 11, 14), ("Infinity", "-Infinity", "NaN", "1e39", "true"), strict=True
    ):
        lines[row] = f'{{"id": {row}, "embedding": [1.0, {bad}, 0.5]}}'
    write_job(file_job(tmp_path, on_invalid={"action": "dead_letter", "path": "dead.jsonl"}))
    (tmp_path / "data.jsonl").write_text("\n".join(lines) + "\n")  # in place of file_job's
    result = cli("apply", "--output", "json", "job.yaml")
    assert result.code == 0, result.stderr
    assert "Warning" not in result.stderr, "no numpy warning reaches the user"
    summary = result.json()["jobs"][0]
    assert (summary["written"], summary["invalid"], summary["count_check"]) == (15, 5, "ok")
    letters = [json.loads(line) for line in (tmp_path / "dead.jsonl").read_text().splitlines()]
    assert [d["id"] for d in letters] == [2, 5, 8, 11, 14]
    assert all("not finite in float32" in d["error"] for d in letters[:4])
    assert "not a number" in letters[4]["error"]


def test_a_record_without_an_id_is_named_by_file_and_line(
    tmp_path: Path, write_job: Callable, cli: Cli
) -> None:
    write_job(file_job(tmp_path))
    with (tmp_path / "data.jsonl").open("a") as handle:
        handle.write(json.dumps({"identifier": 99, "embedding": [1.0, 1.0, 1.0]}) + "\n")
    assert_one_line_error(
        cli("apply", "job.yaml"),
        1,
        "the record at data.jsonl line 21 cannot be migrated: it has no ID",
    )


def test_secrets_never_appear_in_any_output(tmp_path: Path, write_job: Callable, cli: Cli) -> None:
    secret = "S3cret-Sentinel-Value"
    port = free_port()
    chroma = {
        "type": "chroma",
        "url": f"http://admin:{secret}@127.0.0.1:{port}",
        "collection": "docs",
    }
    write_job(file_job(tmp_path, source=chroma), "url.yaml")
    # The same secret as an API key, and by mistake as a (non-secret) URL too.
    target = {"url": "{{ env.KEY }}", "api_key": "{{ env.KEY }}", "collection": "x"}
    write_job(file_job(tmp_path, target=target), "echo.yaml")
    env = {"KEY": secret}
    for command in ("validate", "render", "plan", "apply", "status"):
        for file in ("url.yaml", "echo.yaml"):
            outputs = (
                ("text", "json", "markdown") if command in ("plan", "apply") else ("text", "json")
            )
            for output in outputs:
                result = cli(command, file, "--output", output, env=env)
                both = result.stdout + result.stderr
                assert secret not in both, (command, file, output, both)
    assert "admin:***@127.0.0.1" in cli("plan", "url.yaml").stderr
    assert "url: http://admin:***@127.0.0.1" in cli("render", "url.yaml").stdout
    echoed = cli("validate", "echo.yaml", env=env)
    assert echoed.code == 2 and "target.url: '***' does not match" in echoed.stderr


def test_sigterm_stops_like_ctrl_c_and_resumes_exactly(tmp_path: Path, write_job: Callable) -> None:
    import signal
    import subprocess
    import sys
    import time

    from tests.conftest import checkpoint_points, read_collection

    rows = [{"id": i, "embedding": [float(i), 1.0, 0.5], "n": i} for i in range(6000)]
    job = file_job(tmp_path, batch_size=20, checkpoint={"store": "file", "path": "cp.json"})
    job_file = write_job(job)
    (tmp_path / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))  # ours
    process = subprocess.Popen(
        [sys.executable, "-m", "qmigrate", "apply", str(job_file)],
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while checkpoint_points(tmp_path / "cp.json") < 200 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert process.poll() is None, "still running when the signal is sent"
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 143, stderr
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1] == (
        "qmigrate: terminated; progress up to the last checkpoint is kept"
    )
    written = checkpoint_points(tmp_path / "cp.json")
    assert 200 <= written < 6000, "stopped mid-run"
    again = run_cli("apply", "--output", "json", str(job_file), cwd=tmp_path)
    assert again.code == 0, again.stderr
    assert again.json()["jobs"][0]["count_check"] == "ok"
    points = read_collection(tmp_path / "qdrant_data", "points")
    assert sorted(points) == list(range(6000))
    assert all(points[i].payload == {"n": i} for i in range(0, 6000, 97))


def test_a_target_path_that_is_a_file_is_one_line(
    tmp_path: Path, write_job: Callable, cli: Cli
) -> None:
    (tmp_path / "qdrant_data").write_text("not a directory")
    write_job(file_job(tmp_path))
    assert_one_line_error(cli("apply", "job.yaml"), 1, "target path qdrant_data is a file")


def test_deep_nesting_in_a_job_file_is_one_line(tmp_path: Path, cli: Cli) -> None:
    deep = "[" * 2000 + "]" * 2000
    (tmp_path / "job.yaml").write_text(f"version: 1\nname: deep\nsource: {deep}\n")
    result = cli("validate", "job.yaml")
    assert result.code == 2 and "Traceback" not in result.stderr
    assert result.stderr.startswith("qmigrate: error: job.yaml")


def test_plan_is_read_only_and_exits_1_when_apply_would_refuse(
    tmp_path: Path, write_job: Callable, cli: Cli
) -> None:
    write_job(file_job(tmp_path))
    planned = cli("plan", "job.yaml")
    assert planned.code == 0, planned.stderr
    assert not (tmp_path / "qdrant_data").exists(), "plan creates nothing"
    assert cli("apply", "job.yaml").code == 0
    write_job(file_job(tmp_path, filter={"must": [{"key": "color", "match": {"value": "red"}}]}))
    refused = cli("plan", "--output", "json", "job.yaml")
    assert refused.code == 1
    data = refused.json()
    assert data["ok"] is False and "(changed: filter)" in data["error"]
    assert "changed: filter" in data["jobs"][0]["refusals"][0]
    text = cli("plan", "job.yaml")
    assert text.code == 1 and "apply would refuse: job 'cli-job' changed" in text.stdout


def test_a_directory_is_validated_whole_before_any_job_runs(
    tmp_path: Path, write_job: Callable, cli: Cli
) -> None:
    (tmp_path / "jobs").mkdir()
    write_job(file_job(tmp_path), "jobs/a.yaml")
    write_job(file_job(tmp_path, batch_size=0), "jobs/b.yml")
    result = cli("apply", "jobs")
    assert result.code == 2
    assert "b.yml" in result.stderr and "batch_size" in result.stderr
    assert not (tmp_path / "qdrant_data").exists(), "a.yaml did not run"


def test_the_checkpoint_collection_is_no_target(
    tmp_path: Path, write_job: Callable, cli: Cli
) -> None:
    write_job(file_job(tmp_path, target={"path": "q", "collection": "_migration_offsets"}))
    assert_one_line_error(
        cli("validate", "job.yaml"),
        2,
        'target.collection: must not be "_migration_offsets"',
    )


def test_every_error_line_carries_the_prefix(tmp_path: Path, cli: Cli) -> None:
    (tmp_path / "job.yaml").write_text("version: 2\nname: 5\n")
    result = cli("apply", "job.yaml")
    lines = result.stderr.strip().splitlines()
    assert result.code == 2 and len(lines) >= 3
    assert all(line.startswith("qmigrate: error: ") for line in lines), lines


def test_plan_and_summary_name_a_fallback_to_rest(
    tmp_path: Path, write_job: Callable, cli: Cli
) -> None:
    """No gRPC answering is no error: plan says how the target will be written, and the
    summary notes it once."""
    port = free_port()
    with running() as (url, _store, _faults):
        write_job(file_job(tmp_path, target={"url": url, "collection": "x", "grpc_port": port}))
        planned = cli("plan", "job.yaml")
        assert planned.code == 0, planned.stderr
        assert f"at {url} over REST (no gRPC on port {port}: UNAVAILABLE)" in planned.stdout
        applied = cli("apply", "--output", "json", "job.yaml")
        assert applied.code == 0, applied.stderr
        notes = applied.json()["jobs"][0]["notes"]
        assert f"target written over REST (no gRPC on port {port}: UNAVAILABLE)" in notes
        assert applied.stderr.strip() == "", "nothing on stderr for a working job"


@pytest.mark.parametrize(
    "dead_letter_path",
    ["/proc/dl.jsonl", "a-directory", "a-file/dl.jsonl"],
    ids=["under-proc", "a-directory", "under-a-file"],
)
def test_an_unwritable_dead_letter_file_is_refused_before_anything_is_written(
    tmp_path: Path, write_job: Callable, cli: Cli, dead_letter_path: str
) -> None:
    (tmp_path / "a-directory").mkdir()
    (tmp_path / "a-file").write_text("")
    on_invalid = {"action": "dead_letter", "path": dead_letter_path}
    write_job(file_job(tmp_path, on_invalid=on_invalid))
    for command in ("plan", "apply"):
        assert_one_line_error(
            cli(command, "job.yaml"), 1, "cannot write the dead-letter file", dead_letter_path
        )
    target = tmp_path / "qdrant_data"
    if target.exists():  # no collection, and so no checkpoint either (they live in the target)
        client = QdrantClient(path=str(target))
        try:
            assert client.get_collections().collections == []
        finally:
            client.close()


def test_the_dead_letter_check_leaves_nothing_behind(
    tmp_path: Path, write_job: Callable, cli: Cli
) -> None:
    for path in ("letters/new/dl.jsonl", "dl.jsonl"):
        write_job(file_job(tmp_path, on_invalid={"action": "dead_letter", "path": path}))
        assert cli("plan", "job.yaml").code == 0
        assert not (tmp_path / path.split("/")[0]).exists(), f"{path}: nothing left behind"
    (tmp_path / "dl.jsonl").write_text("an earlier line\n")
    assert cli("plan", "job.yaml").code == 0
    assert (tmp_path / "dl.jsonl").read_text() == "an earlier line\n", "an existing file is kept"
