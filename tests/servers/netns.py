"""A network namespace that holds only `lo`, so that test traffic stays on loopback.

Ray replaces 127.0.0.1 with the machine's own non-loopback address for its nodes. Inside a
namespace with no other interface, that address is 127.0.0.1. Servers and drivers run in it
as `ip netns exec NAME ...` processes; what the test process itself does there (loading a
source, reading the target) runs on one thread that joined the namespace (`call`): sockets
belong to the namespace of the thread that opens them, whichever thread uses them later.
Creating a namespace needs root, as the tests and CI run.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest

CLONE_NEWNET = 0x40000000
T = TypeVar("T")


@dataclass(frozen=True)
class LoopbackNamespace:
    name: str
    _thread: ThreadPoolExecutor

    def command(self, argv: list[str]) -> list[str]:
        """`argv` run inside the namespace."""
        return ["ip", "netns", "exec", self.name, *argv]

    def call(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """`function(*args, **kwargs)` on the thread that joined the namespace."""
        return self._thread.submit(function, *args, **kwargs).result()

    def enter(self) -> None:
        """Move the calling thread into the namespace, and with it every thread and process
        it starts from then on (a benchmark that is its own driver)."""
        _join(self.name)


def _join(name: str) -> None:
    """Move the calling thread (only it) into the namespace."""
    descriptor = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if ctypes.CDLL(None, use_errno=True).setns(descriptor, CLONE_NEWNET) != 0:
            error = ctypes.get_errno()
            raise OSError(error, f"setns into network namespace {name}: {os.strerror(error)}")
    finally:
        os.close(descriptor)


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


@contextlib.contextmanager
def loopback_namespace() -> Iterator[LoopbackNamespace]:
    """A namespace of a unique name with `lo` up, deleted at the end."""
    if shutil.which("ip") is None:
        raise RuntimeError("`ip` is missing: install iproute2 (.ci/run does)")
    if os.geteuid() != 0:
        pytest.skip("a network namespace needs root (`ip netns add`), as CI runs")
    name = f"qmigrate-test-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    _ip("netns", "add", name)
    try:
        _ip("netns", "exec", name, "ip", "link", "set", "lo", "up")
        with ThreadPoolExecutor(1, f"netns-{name}", initializer=_join, initargs=(name,)) as thread:
            yield LoopbackNamespace(name, thread)
    finally:
        _ip("netns", "delete", name)


@pytest.fixture(scope="session")
def loopback_netns() -> Iterator[LoopbackNamespace]:
    with loopback_namespace() as namespace:
        yield namespace
