"""The job lease: one run of a job at a time, whatever machine it runs on."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
import uuid

from qmigrate.checkpoint import CheckpointStore, Lease
from qmigrate.engine.wiring import Warn
from qmigrate.errors import QmigrateError
from qmigrate.retry import retried
from qmigrate.spec import Job


class JobLease:
    """A claim on a job in its checkpoint store, renewed while the run lives.

    Stores offer no compare-and-swap, so a claim is written, then read back after a short
    pause: of two runs that claimed at once, the one whose write landed last holds it, and
    the other sees that and steps back. A claim of a process of this machine that is gone is
    taken over at once; one from elsewhere expires after `lease_seconds`.
    """

    SETTLE = 0.3  # seconds between writing a claim and reading it back

    def __init__(
        self, store: CheckpointStore, job: Job, wait: bool, warn: Warn, command: str = "apply"
    ) -> None:
        self.store = store
        self.warn = warn
        self.job = job
        self.wait = wait
        self.command = command
        # The command is part of the holder, so that a refused run is told which one it met.
        host = socket.gethostname()
        self.holder = f"{command} on {host} pid {os.getpid()} ({uuid.uuid4().hex[:8]})"
        self.stop = threading.Event()
        self.heartbeat = threading.Thread(target=self._renew, name="lease", daemon=True)

    def __enter__(self) -> JobLease:
        while True:
            current = self._load()
            if current is None or current.stale() or current.holder == self.holder:
                self._claim()
                time.sleep(self.SETTLE)
                current = self._load()
                if current is not None and current.holder == self.holder:
                    break
                if current is None:  # our claim is not readable yet: claim again
                    continue
            if not self.wait:
                until = time.strftime("%H:%M:%S", time.localtime(current.expires))
                raise QmigrateError(
                    f"job '{self.job.name}' is in use by {current.holder} (its lease "
                    f"runs until {until} and is renewed while it lives): {self._waiting}; "
                    "a run that was killed lets go when its lease expires"
                )
            time.sleep(1)
        self.heartbeat.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        if self.heartbeat.is_alive():
            self.heartbeat.join()
        # One try, no retries: a store that stopped answering has already held the run up
        # for retry.give_up_after, and an unreleased lease only expires.
        with contextlib.suppress(Exception):
            current = self.store.load_lease(self.job.name)
            if current is not None and current.holder == self.holder:
                self.store.save_lease(self.job.name, None)

    @property
    def _waiting(self) -> str:
        if self.command in ("apply", "sync"):  # the commands with --wait
            return f"wait for it with `{self.command} --wait`"
        return "run it again once that run has finished"

    def _load(self) -> Lease | None:
        return retried(lambda: self.store.load_lease(self.job.name), "reading the job's lease")

    def _claim(self) -> None:
        lease = Lease(
            self.holder, time.time() + self.job.lease_seconds, socket.gethostname(), os.getpid()
        )
        retried(lambda: self.store.save_lease(self.job.name, lease), "claiming the job's lease")

    def _renew(self) -> None:
        while not self.stop.wait(self.job.lease_seconds / 3):
            try:
                current = self._load()
                if current is not None and current.holder != self.holder:
                    self.warn(
                        f"warning: job '{self.job.name}': the lease expired and "
                        f"{current.holder} took it over; this run no longer renews it"
                    )
                    return
                self._claim()
            except QmigrateError as exc:
                self.warn(f"warning: {exc}")
