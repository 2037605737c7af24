"""A real OpenSearch node with the k-NN plugin for the session (`opensearch_server`).

`.ci/servers/opensearch.sh` unpacks the node (the integ-test-zip distribution of the version
it pins, plus the k-NN plugin) into the CI cache; this module runs it on 127.0.0.1 with its
data, logs and config in a temporary directory. OpenSearch refuses to run as root, and the
tests run as root in CI: there the node runs in a user namespace that maps root to uid 1000,
so it is not root to itself while the files it reads and writes stay root's.

The k-NN plugin on Central carries no native library: only its Lucene engine works here.
Name it in every test mapping (`"method": {"name": "hnsw", "engine": "lucene"}`): indexing
into a FAISS field (3.x's default for a knn_vector without a method) or an NMSLIB one fails
to load the library, and that error ends the whole node.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.servers.process import free_port, server_process

REPO = Path(__file__).resolve().parents[2]
INSTALL_SCRIPT = REPO / ".ci" / "servers" / "opensearch.sh"
# Startup is mostly class loading and JIT on 2 shared cores: C1 alone and no heap pre-touch
# halve its CPU time (22 s -> 10 s here); the tests' data is small.
JAVA_OPTIONS = "-Xms512m -Xmx512m -XX:-AlwaysPreTouch -XX:TieredStopAtLevel=1"
START_TIMEOUT = 240


@dataclass(frozen=True)
class OpenSearchServer:
    port: int
    version: str
    pid: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self, **options: Any) -> Any:
        """An opensearch-py client, for loading test data; its requests may wait 60 s
        (the client's 10 s default is short for a bulk on 2 busy cores)."""
        from opensearchpy import OpenSearch

        return OpenSearch(hosts=[self.url], **{"timeout": 60, **options})


def installed_node() -> tuple[Path, Path]:
    """The unpacked node's home and the JDK it runs on, as the install script left them;
    fails the test (one line, no skip) when the script has not been run."""
    pinned = re.search(r"^OPENSEARCH_VERSION=(\S+)$", INSTALL_SCRIPT.read_text(), re.MULTILINE)
    assert pinned, f"{INSTALL_SCRIPT} pins no OPENSEARCH_VERSION"
    cache = Path(os.environ.get("QMIGRATE_CI_CACHE", Path.home() / ".cache" / "qmigrate-ci"))
    home = cache / f"opensearch-{pinned.group(1)}"
    marker = home / ".qmigrate-java-home"
    if not marker.is_file():
        pytest.fail(
            f"no OpenSearch node in {home}: run .ci/servers/opensearch.sh first", pytrace=False
        )
    return home, Path(marker.read_text().strip())


def _health(url: str) -> str | None:
    """The cluster's health status once it is yellow or green, else None."""
    try:
        with urllib.request.urlopen(
            f"{url}/_cluster/health?wait_for_status=yellow&timeout=1s", timeout=3
        ) as response:
            status: str = json.load(response)["status"]
    except (OSError, ValueError, KeyError):
        return None
    return status if status in ("yellow", "green") else None


def _version(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        number: str = json.load(response)["version"]["number"]
    return number


@contextlib.contextmanager
def running_opensearch(directory: Path) -> Iterator[OpenSearchServer]:
    """One single-node cluster on free HTTP and transport ports, its data, logs and config
    under `directory`, stopped by PID at the end."""
    home, java_home = installed_node()
    config = directory / "config"
    shutil.copytree(home / "config", config)
    for name in ("data", "logs", "tmp"):
        (directory / name).mkdir()
    # jvm.options names the GC log, heap dumps and crash logs relative to the node's home
    # (the launcher changes into it), which every node shares: point them into `directory`.
    jvm_options = config / "jvm.options"
    jvm_options.write_text(
        jvm_options.read_text()
        .replace("file=logs/", f"file={directory}/logs/")
        .replace("HeapDumpPath=data", f"HeapDumpPath={directory}/data")
        .replace("ErrorFile=logs/", f"ErrorFile={directory}/logs/")
    )
    port = free_port()
    command = [
        str(home / "bin" / "opensearch"),
        "-Enetwork.host=127.0.0.1",
        f"-Ehttp.port={port}",
        f"-Etransport.port={free_port()}",
        "-Ediscovery.type=single-node",
        "-Ecluster.name=qmigrate-test",
        "-Enode.name=qmigrate-test",
        "-Ebootstrap.memory_lock=false",
        # Shards are allocated however full the disk is (this machine's has run low).
        "-Ecluster.routing.allocation.disk.threshold_enabled=false",
        f"-Epath.data={directory / 'data'}",
        f"-Epath.logs={directory / 'logs'}",
    ]
    if os.geteuid() == 0:
        command = ["unshare", "--user", "--map-user=1000", "--map-group=1000", *command]
    environment = {
        "OPENSEARCH_JAVA_HOME": str(java_home),
        "OPENSEARCH_PATH_CONF": str(config),
        "OPENSEARCH_TMPDIR": str(directory / "tmp"),
        "OPENSEARCH_JAVA_OPTS": JAVA_OPTIONS,
    }
    url = f"http://127.0.0.1:{port}"
    with server_process(
        command,
        ready=lambda: _health(url) is not None,
        log=directory / "opensearch.out",
        timeout=START_TIMEOUT,
        env=environment,
    ) as process:
        yield OpenSearchServer(port, _version(url), process.pid)


@pytest.fixture(scope="session")
def opensearch_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenSearchServer]:
    with running_opensearch(tmp_path_factory.mktemp("opensearch")) as server:
        yield server
