"""Progress output: a bar on a terminal, plain lines in CI."""

from __future__ import annotations

import io

from qmigrate.progress import Progress, human_duration


def test_plain_lines_for_ci_carry_counts_rate_and_eta() -> None:
    stream = io.StringIO()
    with Progress("job", total=1000, stream=stream, interactive=False, interval=0.01) as progress:
        progress.advance(250)
        line = progress.line()
    assert line.startswith("job: 250/1,000 (25%)")
    assert "points/s" in line
    assert "[" not in line, "no bar outside a terminal"
    assert "\r" not in stream.getvalue()


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
