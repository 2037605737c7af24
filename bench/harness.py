"""What the benchmarks share: the repo on sys.path, the sink (or a stand-in) in a process of
its own, timing a child process from the kernel's accounting, and timing jobs in-process
through the engine."""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the servers and fakes the benchmarks start live with the tests

from tests.servers.process import free_port, port_open, wait_until  # noqa: E402


class Server(NamedTuple):
    """A server a benchmark started: its ports, and its PID for its CPU (`cpu_seconds`)."""

    rest: int
    grpc: int
    pid: int


@contextlib.contextmanager
def running_server(command: list[str], what: str, timeout: float) -> Iterator[Server]:
    """`command --rest-port R --grpc-port G` in a process of its own, run from the repo,
    until the block ends."""
    rest, grpc_port = free_port(), free_port()
    command = [*command, "--rest-port", str(rest), "--grpc-port", str(grpc_port)]
    server = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL)
    try:
        wait_until(lambda: port_open(rest) and port_open(grpc_port), timeout, what)
        yield Server(rest, grpc_port, server.pid)
    finally:
        server.terminate()
        server.wait()


def cpu_seconds(pid: int) -> float:
    """User + system CPU a running process has used so far (/proc/PID/stat, fields 14-15):
    the sink's share of a run is the difference across it."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def running_sink() -> contextlib.AbstractContextManager[Server]:
    """`bench/sink.py` in a process of its own: (REST port, gRPC port) until the block ends."""
    return running_server([sys.executable, str(REPO / "bench" / "sink.py")], "the sink", 30)


class Usage(NamedTuple):
    """One child process, from the kernel's accounting (`os.wait4`): nothing else running
    can blur its CPU or memory."""

    wall: float  # seconds
    cpu: float  # seconds, user + system
    rss_kib: int  # peak
    out: str  # what it printed
    failure: str  # the last line of its stderr if it failed, else ""


# A child's peak RSS (`ru_maxrss`) starts from the RSS of the process that spawned it (Linux
# carries the old address space's high-water mark over `exec`), so children are spawned by
# this small launcher, not by the benchmark, whose RSS holds the data set.
LAUNCHER = """
import json, os, sys, time
started = time.perf_counter()
pid = os.posix_spawnp(sys.argv[2], sys.argv[2:], os.environ)
_, status, usage = os.wait4(pid, 0)
wall = time.perf_counter() - started
with open(sys.argv[1], "w") as report:
    cpu = usage.ru_utime + usage.ru_stime
    json.dump([wall, cpu, usage.ru_maxrss, os.waitstatus_to_exitcode(status)], report)
"""


def run_child_usage(
    command: list[str],
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    check: bool = True,
) -> Usage:
    """Run `command` to its end; a failure raises unless `check` is false."""
    with tempfile.TemporaryDirectory() as scratch, open(f"{scratch}/out", "w+b") as out:
        report = Path(scratch) / "usage.json"
        with open(f"{scratch}/err", "w+b") as err:
            subprocess.run(
                [sys.executable, "-S", "-c", LAUNCHER, str(report), *command],
                cwd=cwd, env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL,
                stdout=out, stderr=err, check=True,
            )  # fmt: skip
            out.seek(0)
            err.seek(0)
            printed, errors = out.read().decode(), err.read().decode(errors="replace")
        wall, cpu, rss_kib, code = json.loads(report.read_text())
    failure = ""
    if code != 0:
        if check:
            raise SystemExit(f"{command[:4]} failed:\n{errors[-3000:]}")
        failure = errors.strip().splitlines()[-1] if errors.strip() else f"exit code {code}"
    return Usage(wall, cpu, rss_kib, printed, failure)


def timed_apply(document: dict[str, Any], root: Path) -> float:
    """Seconds for one `apply` of `document` in this process, connecting and the count check
    included."""
    from qmigrate import engine, spec

    job_file = root / f"{document['name']}.yaml"
    job_file.write_text(json.dumps(document))
    started = time.perf_counter()
    resolved = engine.resolve(spec.load(job_file, {}))
    try:
        with open("/dev/null", "w") as quiet:
            summary = engine.apply(resolved, progress_stream=quiet)
    finally:
        resolved.close()
    elapsed = time.perf_counter() - started
    assert summary.count_check == "ok", summary.count_check
    return elapsed


def print_runs_table(column: str, times: dict[Any, list[float]], points: int, base: Any) -> None:
    """A Markdown table: each setting's run times, median, points/s and speed-up over `base`."""
    baseline = statistics.median(times[base])
    print(f"| {column} | runs (s) | median (s) | points/s | vs {base} |")
    print("|---|---|---:|---:|---:|")
    for setting, runs in times.items():
        median = statistics.median(runs)
        shown = ", ".join(f"{t:.2f}" for t in runs)
        print(
            f"| {setting} | {shown} | {median:.2f} | {points / median:,.0f} "
            f"| {baseline / median:.2f}x |"
        )


def median_rate(points: int, runs: int, measure: Callable[[], float]) -> float:
    """Median points/s over `runs` calls of `measure` (which returns seconds)."""
    return statistics.median(points / measure() for _ in range(runs))
