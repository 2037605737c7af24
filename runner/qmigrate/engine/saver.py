"""Checkpoints saved off the write path."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from qmigrate.checkpoint import PartitionState


class CheckpointSaver:
    """Saves a partition's newest state on a thread of its own, so that a checkpoint's round
    trip to the store never holds up the writes. While one save is under way, the states
    offered meanwhile collapse into the newest, up to `most` offers; the next waits for the
    saver to take them, which bounds what a kill leaves unsaved. A state's dead letters are
    written just before it is saved, so a replayed page does not repeat them; `on_saved`
    hears how many records each save covered. A failed save stops the partition: `offer`
    and the end of the block raise it. The end of the block waits for the last save.

    With `every` (seconds), saves are at least that far apart, and offers are not bounded:
    the store's cost per save, not the pages in flight, sets how much a kill leaves unsaved.
    """

    def __init__(
        self,
        save: Callable[[PartitionState], None],
        dead_letter: Callable[[list[str]], None],
        on_saved: Callable[[int], None],
        most: int,
        every: float = 0.0,
    ) -> None:
        self.save = save
        self.most = most if every == 0 else sys.maxsize
        self.every = every
        self.offers = 0  # collapsed into `pending`
        self.dead_letter = dead_letter
        self.on_saved = on_saved
        self.pending: PartitionState | None = None
        self.pending_read = 0
        self.pending_dead_letters: list[str] = []
        self.closing = False
        self.error: BaseException | None = None
        self.changed = threading.Condition()
        self.thread = threading.Thread(target=self._run, name="checkpoint", daemon=True)

    def __enter__(self) -> CheckpointSaver:
        self.thread.start()
        return self

    def offer(self, state: PartitionState, read: int, dead_letters: list[str]) -> None:
        with self.changed:
            while self.offers >= self.most and self.error is None:
                self.changed.wait()
            if self.error is not None:
                raise self.error
            self.pending = replace(state)  # a snapshot: the writer goes on changing `state`
            self.pending_read += read
            self.pending_dead_letters += dead_letters
            self.offers += 1
            self.changed.notify_all()

    def __exit__(self, kind: Any, exc: Any, tb: Any) -> None:
        with self.changed:
            self.closing = True
            self.changed.notify_all()
        self.thread.join()
        if self.error is not None and self.error is not exc:
            raise self.error  # the first failure, even when the block ended with another

    def _run(self) -> None:
        next_save = 0.0
        while True:
            with self.changed:
                while not self.closing and (self.pending is None or time.monotonic() < next_save):
                    self.changed.wait(max(0.0, next_save - time.monotonic()) or None)
                state, self.pending = self.pending, None
                read, self.pending_read = self.pending_read, 0
                dead_letters, self.pending_dead_letters = self.pending_dead_letters, []
                self.offers = 0
                self.changed.notify_all()
            if state is None:
                return
            next_save = time.monotonic() + self.every
            try:
                self.dead_letter(dead_letters)
                self.save(state)
                self.on_saved(read)
            except BaseException as exc:
                with self.changed:
                    self.error = exc
                    self.changed.notify_all()
                return
