"""A source that fails while it is described fails in one line naming it, before any
data moves, whichever source it is: the engine says so once (`engine.before_data_moves`).
Before that, a Qdrant source's server error reached the CLI as "unexpected failure"."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.conftest import run_cli


class BrokenServer(BaseHTTPRequestHandler):
    """Lists no collections (so connecting works), then answers everything with a 500, as a
    Qdrant server in trouble may."""

    def _answer(self) -> None:
        if self.path == "/collections":
            status, body = 200, b'{"result": {"collections": []}, "status": "ok", "time": 0}'
        else:
            status, body = 500, b'{"status": {"error": "disk on fire"}, "time": 0}'
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = _answer

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def broken_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), BrokenServer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_qdrant_source_server_error_is_one_line_naming_the_source(
    broken_url: str, tmp_path: Path
) -> None:
    job = tmp_path / "job.yaml"
    job.write_text(
        "version: 1\nname: setup-errors\n"
        f"source: {{type: qdrant, url: '{broken_url}', collection: origin}}\n"
        f"target: {{path: '{tmp_path / 'target'}', collection: copy}}\n"
    )
    result = run_cli("apply", str(job))
    assert result.code == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"qmigrate: error: source Qdrant at {broken_url}: HTTP 500"), lines
    assert not (tmp_path / "target").exists(), "nothing may be written"
