"""Markdown for CI job summaries and PR comments, shared by plan, apply and verify.

One style for all three, so a pipeline's summary reads the same from plan to verify: a
heading per job with a verdict mark, a two- or three-column table, then bullet lists.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

PASS, FAIL, SKIP, WARN = "✅", "❌", "➖", "⚠️"


def cell(value: Any) -> str:
    """A table cell: one line, pipes escaped, JSON for structures."""
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text.replace("|", "\\|").replace("\n", " ")


def code(value: Any) -> str:
    """Inline code that survives backticks in the value."""
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return f"`` {text} ``" if "`" in text else f"`{text}`"


def heading(command: str, job: str, ok: bool, verdict: str | None = None) -> str:
    mark = PASS if ok else FAIL
    return f"### qmigrate {command} {code(job)}: {mark} {verdict or ('pass' if ok else 'fail')}"


def table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(value) for value in row) + " |" for row in rows]
    return lines


def bullets(title: str, items: Iterable[str]) -> list[str]:
    """A titled list, or nothing when there are no items."""
    items = list(items)
    if not items:
        return []
    return ["", f"#### {title}", "", *[f"- {item}" for item in items]]


def document(sections: Iterable[list[str]]) -> str:
    """Sections separated by a blank line; the whole ends with one newline."""
    return "\n\n".join("\n".join(lines).strip("\n") for lines in sections) + "\n"
