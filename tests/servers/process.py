"""Start a server process, wait until it answers, stop it by PID (its whole process group)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


def wait_until(ready: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        time.sleep(0.1)
    raise TimeoutError(f"{what} was not ready after {timeout}s")


@contextlib.contextmanager
def server_process(
    command: list[str],
    ready: Callable[[], bool],
    log: Path,
    timeout: float = 60,
    env: dict[str, str] | None = None,
    stop_signal: signal.Signals = signal.SIGTERM,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run `command` in its own process group until the block ends; SIGKILL what ignores
    `stop_signal`."""
    with log.open("wb") as output:
        process = subprocess.Popen(
            command,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **(env or {})},
        )

        def alive_and_ready() -> bool:
            # A server that exited will not become ready: say so now, not at the timeout.
            if process.poll() is not None:
                raise RuntimeError(
                    f"{command[0]} exited ({process.returncode}) before it was ready; "
                    f"log:\n{log.read_text()[-3000:]}"
                )
            return ready()

        try:
            try:
                wait_until(alive_and_ready, timeout, command[0])
            except TimeoutError:
                raise RuntimeError(
                    f"{command[0]} did not start; log:\n{log.read_text()[-3000:]}"
                ) from None
            yield process
        finally:
            stop(process, stop_signal=stop_signal)


def stop(
    process: subprocess.Popen[bytes],
    grace: float = 5,
    stop_signal: signal.Signals = signal.SIGTERM,
) -> None:
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, stop_signal)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
