"""Progress for people and for CI: a live bar on a terminal, a plain line every few seconds elsewhere."""

from __future__ import annotations

import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TextIO

from qmigrate.retry import WAITING

BAR_WIDTH = 24
WAIT_CHECK = 0.2  # seconds between looks at the operations failing now


def human_duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


class Progress:
    """Counts points and draws them from a background thread, so workers never block on output."""

    def __init__(
        self,
        label: str,
        total: int | None,
        done: int = 0,
        stream: TextIO | None = None,
        interactive: bool | None = None,
        interval: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.label = label
        self.total = total
        self.done = done
        self.stream = stream or sys.stderr
        self.interactive = self.stream.isatty() if interactive is None else interactive
        self.interval = interval or (0.2 if self.interactive else 5.0)
        self.clock = clock  # tests pass their own, to know the rate and ETA exactly
        self._lock = threading.Lock()
        self._samples: deque[tuple[float, int]] = deque(maxlen=50)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="progress", daemon=True)

    def __enter__(self) -> Progress:
        self._samples.append((self.clock(), self.done))
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        if self.interactive:
            self._draw()
            self.stream.write("\n")
            self.stream.flush()

    def advance(self, points: int) -> None:
        with self._lock:
            self.done += points

    def rate(self) -> float:
        """Points per second over the last few seconds."""
        now = self.clock()
        with self._lock:
            self._samples.append((now, self.done))
        start_time, start_done = self._samples[0]
        elapsed = now - start_time
        return (self.done - start_done) / elapsed if elapsed > 0 else 0.0

    def line(self) -> str:
        rate = self.rate()
        parts = [f"{self.done:,}"]
        if self.total:
            fraction = min(1.0, self.done / self.total)
            parts = [f"{self.done:,}/{self.total:,} ({fraction:.0%})"]
            if self.interactive:
                filled = int(fraction * BAR_WIDTH)
                parts.insert(0, "[" + "#" * filled + "-" * (BAR_WIDTH - filled) + "]")
        parts.append(f"{rate:,.0f} points/s")
        if self.total and rate > 0 and self.done < self.total:
            parts.append(f"ETA {human_duration((self.total - self.done) / rate)}")
        return f"{self.label}: " + " ".join(parts) + self._waiting()

    @staticmethod
    def _waiting() -> str:
        """What the job waits on, while a read, write or save keeps failing."""
        wait = WAITING.longest()
        if wait is None:
            return ""
        who, seconds, retry = wait
        return f", waiting on {who} for {human_duration(seconds)}, retry {retry}"

    def _draw(self) -> None:
        if self.interactive:
            self.stream.write("\r\033[K" + self.line())
        else:
            self.stream.write(self.line() + "\n")
        self.stream.flush()

    def _run(self) -> None:
        """Draw every `interval`, and at once when a wait begins or its retry changes (CI
        draws every 5 s, and a bound of a few seconds must still show its wait)."""
        drawn_at, known = time.monotonic(), None
        while not self._stop.wait(min(self.interval, WAIT_CHECK)):
            wait = WAITING.longest()
            now = None if wait is None else (wait[0], wait[2])
            news, known = now is not None and now != known, now
            if news or time.monotonic() - drawn_at >= self.interval:
                self._draw()
                drawn_at = time.monotonic()
