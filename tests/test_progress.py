"""Progress output: a bar on a terminal, plain lines in CI."""

from __future__ import annotations

import io

import pytest

from qmigrate.progress import Progress, human_duration
from qmigrate.records import CursorLost
from qmigrate.retry import WAITING, Backoff


def test_plain_lines_for_ci_carry_counts_and_rate() -> None:
    stream = io.StringIO()
    with Progress("job", total=1000, stream=stream, interactive=False, interval=0.01) as progress:
        progress.advance(250)
        line = progress.line()
    assert line.startswith("job: 250/1,000 (25%)")
    assert "points/s" in line
    assert "[" not in line, "no bar outside a terminal"
    assert "\r" not in stream.getvalue()


class Clock:
    """A clock the test moves, so the rate and the ETA are known exactly."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_eta_is_the_remaining_points_at_the_recent_rate() -> None:
    clock = Clock()
    # A resumed job: 2,000 points were done before this run, and do not count in its rate.
    progress = Progress(
        "job", total=10_000, done=2_000, stream=io.StringIO(), interactive=False, clock=clock
    )
    with progress:
        clock.now += 10
        progress.advance(500)  # 50 points/s: 7,500 left take 150 s
        assert progress.line() == "job: 2,500/10,000 (25%) 50 points/s ETA 2m30s"
        clock.now += 10
        progress.advance(1_500)  # 2,000 in 20 s: 100 points/s, 6,000 left
        assert progress.line() == "job: 4,000/10,000 (40%) 100 points/s ETA 1m00s"
        clock.now += 60
        progress.advance(6_000)
        assert progress.line() == "job: 10,000/10,000 (100%) 100 points/s", "no ETA when done"


def test_terminal_gets_a_bar_redrawn_in_place() -> None:
    stream = io.StringIO()
    with Progress("job", total=100, stream=stream, interactive=True, interval=0.01) as progress:
        progress.advance(100)
    output = stream.getvalue()
    assert "\r" in output
    assert "[########################] 100/100 (100%)" in output
    assert output.endswith("\n")


def test_unknown_total_shows_count_without_eta() -> None:
    progress = Progress("job", total=None, stream=io.StringIO(), interactive=False)
    progress.advance(42)
    line = progress.line()
    assert line.startswith("job: 42 ")
    assert "ETA" not in line


def test_human_duration() -> None:
    assert human_duration(5) == "5s"
    assert human_duration(125) == "2m05s"
    assert human_duration(7300) == "2h01m"


def test_a_wait_ends_with_its_operation_however_it_ends() -> None:
    """A read that failed once and then lost its cursor (or was interrupted) must not leave
    "waiting on the source" in every later progress line of the process."""
    with pytest.raises(CursorLost), Backoff("reading", "the source", base=0.001) as backoff:
        backoff.began()
        assert backoff.failed(ConnectionError("dropped"))
        assert WAITING.longest() is not None, "the retry shows while it waits"
        raise CursorLost("the scroll expired")
    assert WAITING.longest() is None

    calls = []

    def interrupted() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionError("dropped")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        Backoff("writing", "the target", base=0.001).call(interrupted, on_retry=lambda _e: None)
    assert WAITING.longest() is None
