"""A real Chroma server (`chroma run`) for the session, and an auth gate to put in front of it.

Chroma 1.x's Rust server has no authentication of its own (its auth providers were part
of the Python server, which 1.x no longer runs), so `auth_gate` checks credentials the way
Chroma's auth providers did and forwards accepted requests to the real server.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import http.client
import json
import shutil
import sys
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.servers.netns import LoopbackNamespace
from tests.servers.process import free_port, server_process

HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


@dataclass(frozen=True)
class ChromaServer:
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self, **options: Any) -> Any:
        """A chromadb HTTP client for loading test data."""
        import chromadb
        from chromadb.config import Settings

        settings = Settings(anonymized_telemetry=False)
        return chromadb.HttpClient(host=self.url, settings=settings, **options)

    def admin(self) -> Any:
        """A chromadb admin client, to create tenants and databases."""
        import chromadb
        from chromadb.config import Settings

        return chromadb.AdminClient(
            Settings(
                anonymized_telemetry=False,
                chroma_api_impl="chromadb.api.fastapi.FastAPI",
                chroma_server_host="127.0.0.1",
                chroma_server_http_port=self.port,
            )
        )


def _chroma_binary() -> str:
    beside_python = Path(sys.executable).with_name("chroma")
    found = str(beside_python) if beside_python.exists() else shutil.which("chroma")
    if found is None:
        pytest.skip("the chroma CLI is not installed (pip install chromadb)")
    return found


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/api/v2/heartbeat", timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


@contextlib.contextmanager
def running_chroma(
    directory: Path, port: int | None = None, namespace: LoopbackNamespace | None = None
) -> Iterator[ChromaServer]:
    """`chroma run` on `port` (default: a free one) with its data in `directory`, stopped by
    PID at the end; the same directory and port restart the same server. With `namespace`,
    it runs there (for clients inside it, such as Ray tasks)."""
    server = ChromaServer(port or free_port())
    command = [_chroma_binary(), "run", "--path", str(directory / "data"), "--host", "127.0.0.1"]
    command += ["--port", str(server.port)]
    ready = functools.partial(_answers, server.url)
    if namespace is not None:
        command = namespace.command(command)
        ready = functools.partial(namespace.call, ready)
    with server_process(command, ready=ready, log=directory / "chroma.log"):
        yield server


@pytest.fixture(scope="session")
def chroma_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChromaServer]:
    pytest.importorskip("chromadb")
    with running_chroma(tmp_path_factory.mktemp("chroma")) as server:
        yield server


class _Gate(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, upstream: str, accepted: set[tuple[str, str]]) -> None:
        super().__init__(("127.0.0.1", 0), _GateHandler)
        self.upstream = upstream.removeprefix("http://")
        self.accepted = accepted


class _GateHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Gate

    def _forward(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if not any(self.headers.get(name) == value for name, value in self.server.accepted):
            # What Chroma's auth providers answered: ChromaAuthError as JSON, status 403.
            self._reply(
                403, [], json.dumps({"error": "AuthError", "message": "Forbidden"}).encode()
            )
            return
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_HEADERS}
        connection = http.client.HTTPConnection(self.server.upstream, timeout=60)
        try:
            connection.request(self.command, self.path, body=body, headers=headers)
            response = connection.getresponse()
            self._reply(response.status, response.getheaders(), response.read())
        finally:
            connection.close()

    def _reply(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.send_response(status)
        for name, value in headers:
            if name.lower() not in HOP_HEADERS:
                self.send_header(name, value)
        if not headers:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _forward

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def auth_gate(upstream: str, *, basic: tuple[str, str], token: str, api_key: str) -> Iterator[str]:
    """A URL that forwards to `upstream` only requests with one of Chroma's credentials:
    basic auth, a Bearer token in Authorization, or a token (API key) in X-Chroma-Token.
    """
    pair = base64.b64encode(f"{basic[0]}:{basic[1]}".encode()).decode()
    accepted = {
        ("Authorization", f"Basic {pair}"),
        ("Authorization", f"Bearer {token}"),
        ("X-Chroma-Token", token),
        ("X-Chroma-Token", api_key),
    }
    gate = _Gate(upstream, accepted)
    thread = threading.Thread(target=gate.serve_forever, name="chroma-auth-gate", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{gate.server_address[1]}"
    finally:
        gate.shutdown()
        gate.server_close()
        thread.join()
