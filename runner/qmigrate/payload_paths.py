"""Payload paths in `mapping.payload` (include, exclude, rename), in Qdrant's key syntax.

`meta.origin` is key `origin` inside object `meta`; `tags[].note` is key `note` in every
object of array `tags`; `"a.b"` (double quotes) is one key holding a dot. The schema
checks the syntax (PATH_PATTERN), so a path that parses here has been validated.
"""

from __future__ import annotations

import json
import re
from typing import Any

_SEGMENT = r'(?:[^.\[\]"]+|"(?:[^"\\]|\\.)*")'
PATH_PATTERN = rf"^{_SEGMENT}(?:\[\])?(?:\.{_SEGMENT}(?:\[\])?)*$"  # include, exclude
PLAIN_PATH_PATTERN = rf"^{_SEGMENT}(?:\.{_SEGMENT})*$"  # rename: one value, no arrays
_PART = re.compile(rf"({_SEGMENT})(\[\])?(?:\.|$)")

Path = tuple[tuple[str, bool], ...]  # (key, every element of the array under it)


def parse(path: str) -> Path:
    parts = []
    for match in _PART.finditer(path):
        key, each = match.group(1), match.group(2) is not None
        parts.append((json.loads(key) if key.startswith('"') else key, each))
    return tuple(parts)


def keep(payload: dict[str, Any], paths: list[Path]) -> dict[str, Any]:
    """Only the values under `paths` (an object or array on the way keeps its other
    members out)."""
    kept: dict[str, Any] = {}
    for (key, each), *rest in paths:
        if key not in payload:
            continue
        value = payload[key]
        if not rest:
            kept[key] = value
            continue
        deeper = [tuple(rest)]
        if each and isinstance(value, list):
            previous = kept.get(key) or [{} for _ in value]
            kept[key] = [
                _merge(old, keep(item, deeper)) if isinstance(item, dict) else item
                for old, item in zip(previous, value, strict=True)
            ]
        elif not each and isinstance(value, dict):
            kept[key] = _merge(kept.get(key, {}), keep(value, deeper))
    return kept


def _merge(left: dict[str, Any], right: dict[str, Any]) -> dict[str, Any]:
    merged = dict(left)
    for key, value in right.items():
        both = isinstance(merged.get(key), dict) and isinstance(value, dict)
        merged[key] = _merge(merged[key], value) if both else value
    return merged


def drop(payload: dict[str, Any], path: Path) -> dict[str, Any]:
    """The payload without the value under `path`; what holds it is copied, not changed."""
    (key, each), *rest = path
    if key not in payload:
        return payload
    copy = dict(payload)
    if not rest:
        del copy[key]
        return copy
    value = payload[key]
    if each and isinstance(value, list):
        copy[key] = [drop(item, tuple(rest)) if isinstance(item, dict) else item for item in value]
    elif not each and isinstance(value, dict):
        copy[key] = drop(value, tuple(rest))
    return copy


def take(payload: dict[str, Any], path: Path) -> tuple[bool, Any]:
    """(found, the value under a path without arrays)."""
    value: Any = payload
    for key, _ in path:
        if not isinstance(value, dict) or key not in value:
            return False, None
        value = value[key]
    return True, value


def put(payload: dict[str, Any], path: Path, value: Any) -> dict[str, Any]:
    """The payload with `value` under `path`, objects on the way created or copied."""
    (key, _), *rest = path
    copy = dict(payload)
    if not rest:
        copy[key] = value
    else:
        inner = copy.get(key)
        copy[key] = put(inner if isinstance(inner, dict) else {}, tuple(rest), value)
    return copy
