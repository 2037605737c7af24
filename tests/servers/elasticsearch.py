"""A real Elasticsearch node: the integ-test-zip distribution from Maven Central, which
`.ci/servers/elasticsearch.sh` unpacks under ~/.cache/qmigrate-ci.

It has the server (dense_vector, sparse_vector, kNN, point in time), the transport module
and x-pack security, which the node runs with: one file-realm user, so wrong credentials
are tested for real (API keys need the `.security` index, whose analysers this
distribution lacks). Elasticsearch refuses to run as root, so under root it runs as
`nobody` in a directory of its own. Java 17 (the machine's) runs 8.19.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import tempfile
import urllib.error
import urllib.request
from base64 import b64encode
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.servers.process import free_port, server_process

VERSION = os.environ.get("QMIGRATE_ES_VERSION", "8.19.21")
HOME = Path.home() / ".cache" / "qmigrate-ci" / f"elasticsearch-{VERSION}"
USER = "qmigrate"
PASSWORD = "s3cret-es-pw"
# bcrypt of PASSWORD, as `elasticsearch-users useradd` writes it (a test password; running
# that tool would cost a JVM start per session).
PASSWORD_HASH = "$2a$10$ufQuoK7ZWvJSdgfBauyGD.8jKrP8oB4cR6B4tehny//9L0Pj74Rgi"
JAVA_HOMES = ("/usr/lib/jvm/java-17-openjdk-amd64", "/usr/lib/jvm/temurin-25-jdk-amd64")


@dataclass(frozen=True)
class SearchRest:
    """Plain REST calls to an Elasticsearch or OpenSearch node, for what tests set up."""

    url: str
    user: str | None = None
    password: str | None = None

    def request(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        return self._send(method, path, data, "application/json")

    def bulk(self, lines: list[dict[str, Any]]) -> None:
        """`_bulk` with refresh; fails on any item's error."""
        data = "".join(json.dumps(line) + "\n" for line in lines).encode()
        reply = self._send("POST", "/_bulk?refresh=true", data, "application/x-ndjson")
        assert not reply["errors"], [i for i in reply["items"] if "error" in next(iter(i.values()))]

    def _send(self, method: str, path: str, data: bytes | None, content_type: str) -> Any:
        request = urllib.request.Request(f"{self.url}{path}", data=data, method=method)
        if self.user is not None:
            token = b64encode(f"{self.user}:{self.password}".encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        request.add_header("Content-Type", content_type)
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read() or b"null")


@dataclass(frozen=True)
class ElasticsearchServer(SearchRest):
    directory: Path = Path()
    user: str | None = USER
    password: str | None = PASSWORD

    def client(self) -> Any:
        from elasticsearch import Elasticsearch

        return Elasticsearch(self.url, basic_auth=(USER, PASSWORD), request_timeout=60)


def _ready(server: ElasticsearchServer) -> bool:
    try:
        health = server.request("GET", "/_cluster/health?wait_for_status=yellow&timeout=1s")
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return False
    return health.get("status") in ("yellow", "green")


def _java_home() -> str:
    for home in (os.environ.get("ES_JAVA_HOME", ""), *JAVA_HOMES):
        if home and Path(home, "bin", "java").exists():
            return home
    raise RuntimeError("no Java for Elasticsearch: set ES_JAVA_HOME")


@contextlib.contextmanager
def running_elasticsearch() -> Iterator[ElasticsearchServer]:
    """A single node on a free loopback port, with security on, stopped by PID at the end."""
    if not (HOME / "bin" / "elasticsearch").exists():
        raise RuntimeError(f"no Elasticsearch at {HOME}: run .ci/servers/elasticsearch.sh")
    # Not under pytest's tmp_path: its parent is private to root, and the node runs as nobody.
    directory = Path(tempfile.mkdtemp(prefix="qmigrate-es-"))
    config = directory / "config"
    shutil.copytree(HOME / "config", config)
    (config / "users").write_text(f"{USER}:{PASSWORD_HASH}\n")
    (config / "users_roles").write_text(f"superuser:{USER}\n")
    for name in ("data", "logs", "tmp"):
        (directory / name).mkdir()
    port = free_port()
    server = ElasticsearchServer(f"http://127.0.0.1:{port}", directory=directory)
    command = [str(HOME / "bin" / "elasticsearch")]
    for setting in (
        "discovery.type=single-node",
        "network.host=127.0.0.1",
        f"http.port={port}",
        f"transport.port={free_port()}",
        f"path.data={directory / 'data'}",
        f"path.logs={directory / 'logs'}",
        "xpack.security.enabled=true",
        "xpack.security.http.ssl.enabled=false",
        "xpack.security.transport.ssl.enabled=false",
        "cluster.routing.allocation.disk.threshold_enabled=false",
        "action.destructive_requires_name=false",
    ):
        command += ["-E", setting]
    if os.geteuid() == 0:
        os.chown(directory, 65534, 65534)
        for path in directory.rglob("*"):
            os.chown(path, 65534, 65534)
        command = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *command]
    env = {
        "ES_JAVA_HOME": _java_home(),
        "ES_PATH_CONF": str(config),
        "ES_TMPDIR": str(directory / "tmp"),
        # C1 only and no heap pre-touch: startup is class loading and JIT on shared cores.
        "ES_JAVA_OPTS": "-Xms512m -Xmx512m -XX:-AlwaysPreTouch -XX:TieredStopAtLevel=1",
    }
    try:
        with server_process(
            command,
            ready=lambda: _ready(server),
            log=directory / "server.log",
            timeout=180,
            env=env,
            stop_signal=signal.SIGTERM,
        ):
            yield server
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="session")
def elasticsearch_server() -> Iterator[ElasticsearchServer]:
    pytest.importorskip("elasticsearch")
    with running_elasticsearch() as server:
        yield server
