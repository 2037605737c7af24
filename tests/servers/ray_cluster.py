"""A real Ray cluster for the session: a head node and one more worker node on this machine.

Both are `ray start --block` processes in their own process groups (Ray's daemons and
workers stay in the group), stopped by PID at the end. CPUs are bounded, the dashboard and
usage stats are off, and every port is a free one, so nothing reaches out or collides.
Ray replaces 127.0.0.1 with the machine's own non-loopback address, so the nodes run in a
network namespace that holds only `lo` (tests/servers/netns.py), where that address is
127.0.0.1; drivers, and the servers the tasks talk to, must run in it too.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.servers.netns import LoopbackNamespace
from tests.servers.process import free_port, wait_until

REPO = Path(__file__).resolve().parents[2]
HEAD_CPUS = 2
WORKER_CPUS = 2
OBJECT_STORE_BYTES = 80 * 1024 * 1024


@dataclass(frozen=True)
class RayCluster:
    address: str  # HOST:PORT of the head's GCS, what `--ray-address` takes
    env: dict[str, str]  # what a driver process needs (qmigrate of this checkout first)
    worker_node: subprocess.Popen[bytes]
    namespace: LoopbackNamespace  # where the nodes run, and drivers must


def ray_env() -> dict[str, str]:
    paths = [str(REPO / "runner"), os.environ.get("PYTHONPATH", "")]
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(p for p in paths if p),
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_DISABLE_DOCKER_CPU_WARNING": "1",
    }


def _ray_binary() -> str:
    beside_python = Path(sys.executable).with_name("ray")
    if not beside_python.exists():
        pytest.skip("Ray is not installed (pip install 'qmigrate[ray]')")
    return str(beside_python)


def _node_command(temp: Path, cpus: int) -> list[str]:
    """`ray start` options shared by both nodes: bounded, quiet, every port a free one."""
    return [
        _ray_binary(),
        "start",
        "--block",
        "--disable-usage-stats",
        f"--num-cpus={cpus}",
        "--num-gpus=0",
        f"--object-store-memory={OBJECT_STORE_BYTES}",
        f"--temp-dir={temp}",
        f"--dashboard-agent-listen-port={free_port()}",
        f"--dashboard-agent-grpc-port={free_port()}",
        f"--runtime-env-agent-port={free_port()}",
        f"--metrics-export-port={free_port()}",
    ]


def _start(command: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    with log.open("wb") as output:
        return subprocess.Popen(
            command, stdout=output, stderr=subprocess.STDOUT, start_new_session=True, env=env
        )


def _logged(process: subprocess.Popen[bytes], log: Path, pattern: str) -> re.Match[str] | None:
    """The first match of `pattern` in the node's log so far; a node that exited is an error."""
    if process.poll() is not None:
        raise RuntimeError(f"ray start exited; log:\n{log.read_text()[-3000:]}")
    return re.search(pattern, log.read_text())


def stop_node(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the node's process group, then SIGKILL what is left of it (gcs_server and
    Ray's monitor outlive a SIGTERM)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(5)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


@contextlib.contextmanager
def running_ray(namespace: LoopbackNamespace) -> Iterator[RayCluster]:
    """A head and a worker node inside `namespace`."""
    # A short directory: Ray's Unix sockets live under it, and their paths have a size limit.
    temp = Path(tempfile.mkdtemp(prefix="qmray-", dir="/tmp"))
    env = ray_env()
    nodes: list[subprocess.Popen[bytes]] = []
    try:
        head_log = temp / "head.log"
        head = [
            *_node_command(temp, HEAD_CPUS),
            "--head",
            "--include-dashboard=false",
            f"--port={free_port()}",
            f"--ray-client-server-port={free_port()}",
            f"--dashboard-port={free_port()}",
        ]
        nodes.append(_start(namespace.command(head), head_log, env))
        # The head says "started" a few lines before it prints the address to join; wait
        # for the address itself (reading after "started" once found it not yet written).
        join = r"ray start --address='([^']+)'"
        wait_until(lambda: _logged(nodes[0], head_log, join) is not None, 60, "the Ray head node")
        found = _logged(nodes[0], head_log, join)
        assert found
        address = found.group(1)
        worker_log = temp / "worker.log"
        worker = [*_node_command(temp, WORKER_CPUS), f"--address={address}"]
        nodes.append(_start(namespace.command(worker), worker_log, env))
        wait_until(
            lambda: _logged(nodes[1], worker_log, "Ray runtime started") is not None,
            60,
            "the Ray worker node",
        )
        time.sleep(1)  # the worker node registers with the head just after it says started
        yield RayCluster(address, env, nodes[1], namespace)
    finally:
        for node in reversed(nodes):
            stop_node(node)
        shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="session")
def ray_cluster(loopback_netns: LoopbackNamespace) -> Iterator[RayCluster]:
    with running_ray(loopback_netns) as cluster:
        yield cluster
