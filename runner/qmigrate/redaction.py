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
from urllib.parse import parse_qsl, urlencode, urlsplit

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


# Query parameters and libpq key=value settings that carry a credential, besides secret keys.
CREDENTIAL_PARAMETERS = frozenset({"user", "username", "apikey", "key", "auth", "pass", "pwd"})
URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
# One libpq setting: key = value, the value bare or single-quoted with backslash escapes.
DSN_SETTING = re.compile(r"(\w+)\s*=\s*('(?:\\.|[^'\\])*'|\S*)")


def _is_credential_parameter(name: str) -> bool:
    name = name.lower().replace("-", "_")
    return is_secret_key(name) or name in CREDENTIAL_PARAMETERS


def without_credentials(value: Any) -> Any:
    """`value` with every credential taken out, for what is hashed or stored: secret keys
    at any depth, URL user info (user and password), credential query parameters, and the
    user and password settings of a libpq key=value string.

    A value without credentials comes back as it was, so hashes of it do not change.
    """
    if isinstance(value, Mapping):
        return {k: without_credentials(v) for k, v in value.items() if not is_secret_key(str(k))}
    if isinstance(value, list):
        return [without_credentials(v) for v in value]
    if not isinstance(value, str):
        return value
    if URL.match(value):
        return _url_without_credentials(value)
    settings = [m for m in DSN_SETTING.finditer(value) if m.group(0)]
    if settings and DSN_SETTING.sub("", value).strip() == "":
        kept = [m.group(0) for m in settings if not _is_credential_parameter(m.group(1))]
        return value if len(kept) == len(settings) else " ".join(kept)
    return value


def _url_without_credentials(url: str) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]
    query = parse_qsl(parts.query, keep_blank_values=True)
    kept = [(k, v) for k, v in query if not _is_credential_parameter(k)]
    if netloc == parts.netloc and len(kept) == len(query):
        return url
    return parts._replace(netloc=netloc, query=urlencode(kept)).geturl()


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
        found += _parameter_secrets(value)
        with _lock:
            _secrets.update(s for s in found if len(s) >= MIN_MASKED_LENGTH)


# Environment variable names that hold credentials by convention, beyond SECRET_KEY_PARTS:
# AWS_SECRET_ACCESS_KEY and GITHUB_TOKEN are caught by those, OPENAI_KEY or PGPASS here.
SECRET_VARIABLE_PARTS = ("key", "pass", "credential", "private", "auth")


def is_secret_variable(name: str) -> bool:
    """An environment variable whose value is masked wherever a job puts it."""
    lowered = name.lower()
    return is_secret_key(lowered) or any(part in lowered for part in SECRET_VARIABLE_PARTS)


def remember_secret_variables(variables: Mapping[str, str]) -> None:
    """Note the values of the secret-named variables a job file read, wherever it put
    them: a pull request could render `name: "{{ env.AWS_SECRET_ACCESS_KEY }}"` into a
    field no key marks secret, and a plan posted as a comment would show it."""
    found = [v for k, v in variables.items() if is_secret_variable(k)]
    with _lock:
        _secrets.update(v for v in found if len(v) >= MIN_MASKED_LENGTH)


def _parameter_secrets(value: str) -> list[str]:
    """Values of secret query parameters and libpq password settings in `value`."""
    if URL.match(value):
        pairs = parse_qsl(urlsplit(value).query, keep_blank_values=True)
    else:
        pairs = [(m.group(1), m.group(2).strip("'")) for m in DSN_SETTING.finditer(value)]
    return [v for k, v in pairs if is_secret_key(k.lower().replace("-", "_"))]


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
