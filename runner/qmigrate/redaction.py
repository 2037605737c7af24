"""Secrets never reach output: everything qmigrate prints passes through `redact`.

Masking by key (`render` shows `api_key: ***`) is not enough: a secret can also turn up
inside a URL, in a value the schema rejects, or in a message a client library wrote. So
each secret value of a loaded job is remembered, and every line written to stdout and
stderr is cleaned of those values and of URL passwords, whatever wrote it.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from typing import Any, TextIO

MASK = "***"
SECRET_KEY_PARTS = ("api_key", "password", "token", "secret")
# scheme://user:password@host -> scheme://user:***@host
URL_PASSWORD = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://[^/\s:@\[\]]*:)([^@\s/\[\]]+)@")

# Shorter values are masked only where they stand (by key, in a URL): masking "ab"
# everywhere would garble every message.
MIN_MASKED_LENGTH = 4

_secrets: set[str] = set()
_lock = threading.Lock()


def is_secret_key(key: str) -> bool:
    """Keys whose values never reach output (`token_header` names a header, not a secret)."""
    return any(part in key for part in SECRET_KEY_PARTS) and not key.endswith("_header")


def mask_secrets(value: Any) -> Any:
    """A copy of `value` with every secret-looking key's value replaced by ***."""
    if isinstance(value, Mapping):
        return {
            k: (MASK if is_secret_key(str(k)) and v not in (None, "") else mask_secrets(v))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [mask_secrets(v) for v in value]
    return value


def remember_secrets(value: Any, key: str = "") -> None:
    """Note every secret in a job document: values of secret keys, and URL passwords."""
    if isinstance(value, Mapping):
        for child_key, child in value.items():
            remember_secrets(child, str(child_key))
    elif isinstance(value, list):
        for child in value:
            remember_secrets(child, key)
    elif isinstance(value, str):
        found = [value] if is_secret_key(key) else []
        found += [match.group(2) for match in URL_PASSWORD.finditer(value)]
        with _lock:
            _secrets.update(s for s in found if len(s) >= MIN_MASKED_LENGTH)


def forget_secrets() -> None:
    """Start a new set: for a process that loads jobs of unrelated runs (tests)."""
    with _lock:
        _secrets.clear()


def redact(text: str) -> str:
    """`text` with URL passwords and every remembered secret masked."""
    text = URL_PASSWORD.sub(rf"\1{MASK}@", text)
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)  # a longer one may contain another
    for secret in secrets:
        text = text.replace(secret, MASK)
    return text


class RedactingStream:
    """A text stream that redacts what is written to it; the rest is the wrapped stream's."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        self.stream.write(redact(text))
        return len(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)
