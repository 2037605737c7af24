"""The benchmark harness's measuring of child processes (`bench/harness.py`): what it
reports must be the child's own, whatever the benchmark process holds."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from bench.harness import cpu_seconds, run_child_usage

PARENT_MIB = 400


def test_a_child_s_peak_rss_does_not_carry_the_parent_s() -> None:
    # Linux carries the spawning process's RSS high-water mark into the child over exec;
    # the benchmark holds the whole data set, so it must not spawn the measured steps itself.
    held = bytearray(PARENT_MIB * 1024 * 1024)
    held[::4096] = b"x" * len(held[::4096])  # touch every page: resident
    small = run_child_usage([sys.executable, "-c", "print('small')"])
    big = run_child_usage(
        [sys.executable, "-c", "b = bytearray(200 << 20); b[::4096] = b'x' * len(b[::4096])"]
    )
    assert small.out == "small\n"
    assert small.rss_kib < 60 * 1024, small
    assert 200 * 1024 < big.rss_kib < (PARENT_MIB - 100) * 1024, big
    del held


def test_a_failed_child_raises_or_reports_its_last_error_line() -> None:
    command = [sys.executable, "-c", "import sys; print('first', file=sys.stderr); sys.exit('why')"]
    assert run_child_usage(command, check=False).failure == "why"
    with pytest.raises(SystemExit, match="why"):
        run_child_usage(command)


def test_cpu_seconds_reads_another_process_s_cpu_from_proc() -> None:
    """The sink's share of a run is the difference of its CPU across the run: another
    process's, read while it runs."""
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        first, deadline = cpu_seconds(busy.pid), time.monotonic() + 60
        while cpu_seconds(busy.pid) < first + 0.2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert cpu_seconds(busy.pid) >= first + 0.2  # a busy loop: its CPU grows
    finally:
        busy.kill()
        busy.wait()
    idle = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert cpu_seconds(idle.pid) < 1
    finally:
        idle.kill()
        idle.wait()
