"""Telling transient failures from fatal ones, and retrying the transient ones.

Written once for every source and the target: clients are recognised by what their
exceptions carry (an HTTP status, a gRPC code), not by importing each client.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from typing import TypeVar

from qmigrate.errors import QmigrateError

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


class Backoff:
    """Exponential backoff with full jitter, honouring Retry-After; gives up after `attempts`."""

    def __init__(
        self,
        attempts: int = 8,
        base: float = 0.2,
        cap: float = 30.0,
        stop: threading.Event | None = None,
    ) -> None:
        self.attempts = attempts
        self.base = base
        self.cap = cap
        self.stop = stop or threading.Event()

    def wait(self, attempt: int, exc: BaseException) -> bool:
        """Sleep before retry number `attempt` (1-based); False when out of attempts or stopped."""
        if attempt >= self.attempts or self.stop.is_set():
            return False
        delay = random.uniform(0, min(self.cap, self.base * 2**attempt))
        asked = retry_after(exc)
        if asked is not None:
            delay = max(delay, min(asked, self.cap))
        return not self.stop.wait(delay)

    def call(self, fn: Callable[[], T], on_retry: Callable[[BaseException], None]) -> T:
        attempt = 0
        while True:
            try:
                return fn()
            except Exception as exc:
                attempt += 1
                if not is_transient(exc) or not self.wait(attempt, exc):
                    raise
                on_retry(exc)


def retried(
    call: Callable[[], T],
    what: str,
    stop: threading.Event | None = None,
    on_retry: Callable[[BaseException], None] | None = None,
) -> T:
    """`call()` with transient failures retried (bounded backoff); a failure that stays
    becomes one line, "<what> failed: <cause>". A QmigrateError passes as it is."""
    try:
        return Backoff(stop=stop).call(call, on_retry=on_retry or (lambda _exc: None))
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
    if code == "UNAVAILABLE" or type(exc).__name__ in ("ResponseHandlingException", "ConnectError"):
        return "cannot connect (is the server running and the URL right?)"
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0][:300] if lines else ''}".rstrip(": ")
