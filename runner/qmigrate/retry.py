"""Telling transient failures from fatal ones, and retrying the transient ones.

Written once for every source and the target: clients are recognised by what their
exceptions carry (an HTTP status, a gRPC code), not by importing each client.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from qmigrate.errors import QmigrateError, TransientError

T = TypeVar("T")

TRANSIENT_HTTP = {408, 425, 429, 500, 502, 503, 504}
TRANSIENT_GRPC = {"UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "ABORTED"}
TRANSIENT_NAMES = {
    # httpx / httpcore / urllib3 / requests transport failures, by class name.
    "ConnectError",
    "ConnectTimeout",
    "ReadTimeout",
    "WriteTimeout",
    "PoolTimeout",
    "ReadError",
    "WriteError",
    "RemoteProtocolError",
    "ProtocolError",
    "NewConnectionError",
    "MaxRetryError",
    "ResponseHandlingException",
    # redis-py's own ConnectionError/TimeoutError do not subclass the builtins; matched by
    # the exact class name, so its AuthenticationError (a ConnectionError subclass) is fatal.
    "ConnectionError",
    "TimeoutError",
    "BusyLoadingError",
}


def http_status(exc: BaseException) -> int | None:
    """The HTTP status an exception carries, whatever client raised it."""
    for attribute in ("status_code", "status"):
        value = getattr(exc, attribute, None)
        if isinstance(value, int) and 100 <= value < 600:
            return value
    response = getattr(exc, "response", None)
    value = getattr(response, "status_code", None)
    return value if isinstance(value, int) else None


def grpc_code(exc: BaseException) -> str | None:
    code = getattr(exc, "code", None)
    if callable(code):
        try:
            return getattr(code(), "name", None)
        except Exception:
            return None
    return None


def is_transient(exc: BaseException) -> bool:
    """Worth another try: timeouts, throttling, 5xx, dropped connections."""
    if isinstance(exc, QmigrateError):
        return False  # already a verdict, e.g. retries that ran out further down
    if isinstance(exc, TransientError):
        return True
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return True
    if retry_after(exc) is not None:  # throttled, and told for how long
        return True
    status = http_status(exc)
    if status is not None:
        return status in TRANSIENT_HTTP
    code = grpc_code(exc)
    if code is not None:
        return code in TRANSIENT_GRPC
    chain = [exc, exc.__cause__, exc.__context__]
    return any(e is not None and type(e).__name__ in TRANSIENT_NAMES for e in chain)


def retry_after(exc: BaseException) -> float | None:
    """Seconds a server asked us to wait (Retry-After), if it said."""
    seconds = getattr(exc, "retry_after_s", None)  # qdrant-client's 429 with Retry-After
    if isinstance(seconds, (int, float)):
        return float(seconds)
    trailers = getattr(exc, "trailing_metadata", None)  # gRPC: Qdrant's `retry-after` entry
    if callable(trailers):
        try:
            asked = dict(trailers() or ()).get("retry-after")
            return float(asked) if asked is not None else None
        except (TypeError, ValueError):
            return None
    headers = getattr(exc, "headers", None) or getattr(
        getattr(exc, "response", None), "headers", None
    )
    if not headers:
        return None
    try:
        value = headers.get("Retry-After") or headers.get("retry-after")
        return float(value) if value is not None else None
    except (TypeError, ValueError, AttributeError):
        return None


# A Retry-After is waited in full up to this: Qdrant's rate limiters ask up to a minute
# (their bucket holds a minute's worth); a retry sooner would only be refused again.
RETRY_AFTER_MOST = 60.0
DEFAULT_GIVE_UP_AFTER = 300.0  # seconds; the job file's retry.give_up_after
_give_up_after = DEFAULT_GIVE_UP_AFTER


def request_timeout(timeout: float, give_up_after: float) -> float:
    """A client's per-request timeout held to a third of the bound: a request that never
    returns fails in time to be sent once more before the retries give up."""
    return min(timeout, give_up_after / 3)


def give_up_after(seconds: float) -> None:
    """The bound of every retry this process makes from now on: the job's
    `retry.give_up_after`, set when the job is resolved. One job runs at a time in a
    process (apply runs its jobs in turn, a Ray worker one task at a time)."""
    global _give_up_after
    _give_up_after = seconds


class Waiting:
    """The operations failing right now, so the progress line can say what the job waits
    on, for how long; a background thread draws it while the workers wait."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waits: dict[int, tuple[str, float, int]] = {}  # id(backoff) -> who, since, retry

    def update(self, key: int, who: str, since: float, retry: int) -> None:
        with self._lock:
            self._waits[key] = (who, since, retry)

    def end(self, key: int) -> None:
        with self._lock:
            self._waits.pop(key, None)

    def longest(self) -> tuple[str, float, int] | None:
        """(who, seconds failing, retry number) of the operation failing the longest."""
        with self._lock:
            if not self._waits:
                return None
            who, since, retry = min(self._waits.values(), key=lambda wait: wait[1])
        return who, time.monotonic() - since, retry


WAITING = Waiting()


class GaveUp(QmigrateError):
    """An operation kept failing for longer than its bound."""


class Backoff:
    """Retries of one operation: exponential backoff with full jitter, honouring
    Retry-After, for as long as `give_up_after` seconds from the start of the attempt
    that first failed. It gives up sooner when the next attempt, taking as long as the
    last, would end past that bound: a silent server's requests each last their timeout,
    and the job must stop within the bound, not a timeout after it.

    `doing` names the operation in the error ("job 'x': reading from the source ..."),
    `waiting_on` the party in the progress line ("waiting on the source for 45s, retry 3").
    Use it as a context manager: leaving it ends the wait the progress line shows.
    """

    def __init__(
        self,
        doing: str = "",
        waiting_on: str | None = None,
        give_up_after: float | None = None,
        base: float = 0.2,
        cap: float = 30.0,
        stop: threading.Event | None = None,
    ) -> None:
        self.doing = doing
        self.waiting_on = waiting_on or doing
        self.give_up_after = _give_up_after if give_up_after is None else give_up_after
        self.base = base
        self.cap = cap
        self.stop = stop or threading.Event()
        self.attempt_began: float | None = None
        self.failing_since: float | None = None
        self.retries = 0

    def __enter__(self) -> Backoff:
        return self

    def __exit__(self, *exc: object) -> None:
        """However the operation ends (a lost cursor, an interrupt, a closed generator),
        the progress line stops saying the job waits on it."""
        WAITING.end(id(self))

    def began(self) -> None:
        """An attempt starts now (a request is sent, or the next page is asked for)."""
        self.attempt_began = time.monotonic()

    def succeeded(self) -> None:
        if self.failing_since is not None:
            self.failing_since = None
            self.retries = 0
            WAITING.end(id(self))

    def failed(self, exc: BaseException) -> bool:
        """After a failed attempt: sleep, and True to try again; False when `exc` is not
        transient or the job stops. Raises GaveUp once the bound would pass."""
        now = time.monotonic()
        began = self.attempt_began if self.attempt_began is not None else now
        if self.failing_since is None:
            self.failing_since = began
        if not is_transient(exc) or self.stop.is_set():
            return False
        self.retries += 1
        left = self.failing_since + self.give_up_after - now - (now - began)
        delay = random.uniform(0, min(self.cap, self.base * 2**self.retries))
        asked = retry_after(exc)
        if asked is not None:
            delay = max(delay, min(asked, RETRY_AFTER_MOST))
        if left <= 0 or (asked is not None and delay > left):
            raise GaveUp(
                f"{self.doing} kept failing for {now - self.failing_since:.0f}s, and "
                f"retry.give_up_after ({self.give_up_after:g}s) leaves no time for another "
                f"try: {describe(exc)}. Apply again once it answers: the job resumes from its "
                "checkpoints"
            ) from exc
        WAITING.update(id(self), self.waiting_on, self.failing_since, self.retries)
        return not self.stop.wait(min(delay, left))  # True: the job stopped while it slept

    def call(self, fn: Callable[[], T], on_retry: Callable[[BaseException], None]) -> T:
        with self:
            while True:
                self.began()
                try:
                    result = fn()
                except Exception as exc:
                    if not self.failed(exc):
                        raise
                    on_retry(exc)
                else:
                    self.succeeded()
                    return result


def retried(
    call: Callable[[], T],
    what: str,
    stop: threading.Event | None = None,
    on_retry: Callable[[BaseException], None] | None = None,
    waiting_on: str | None = None,
) -> T:
    """`call()` with transient failures retried (bounded backoff); a failure that stays
    becomes one line, "<what> failed: <cause>". A QmigrateError passes as it is."""
    try:
        backoff = Backoff(what, waiting_on, stop=stop)
        return backoff.call(call, on_retry=on_retry or (lambda _exc: None))
    except QmigrateError:
        raise
    except Exception as exc:
        raise QmigrateError(f"{what} failed: {describe(exc)}") from exc


def describe(exc: BaseException) -> str:
    """A one-line cause for a failed call, whichever client made it."""
    status = http_status(exc)
    code = grpc_code(exc)
    if status in (401, 403) or code in ("UNAUTHENTICATED", "PERMISSION_DENIED"):
        return "the server rejected the API key (unauthorized)"
    if status is not None:
        content = getattr(exc, "content", None)
        if isinstance(content, bytes):
            detail = content.decode(errors="replace")
        else:
            detail = str(getattr(exc, "message", "") or "")
        first_line = (detail.strip().splitlines() or [""])[0][:300]
        return f"HTTP {status} {first_line}".strip()
    if code == "DEADLINE_EXCEEDED" or any("Timeout" in name for name in _names(exc)):
        return "no answer within the request timeout (the server is silent or too slow)"
    if code == "UNAVAILABLE" or type(exc).__name__ in ("ResponseHandlingException", "ConnectError"):
        return "cannot connect (is the server running and the URL right?)"
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0][:300] if lines else ''}".rstrip(": ")


def _names(exc: BaseException) -> list[str]:
    """Class names of an exception and of what it wraps (qdrant-client keeps the httpx
    exception in `source`)."""
    chain = [exc, exc.__cause__, exc.__context__, getattr(exc, "source", None)]
    return [type(e).__name__ for e in chain if isinstance(e, BaseException)]
