"""A sync pass said in text (people) and markdown (CI summaries, PR comments)."""

from __future__ import annotations

from typing import Any

from qmigrate import markdown as md
from qmigrate.sync.run import SyncSummary


def _ids(ids: list[Any]) -> str:
    return ", ".join(repr(i) for i in ids)


def render_text(summary: SyncSummary) -> str:
    verb = ("would write", "would delete") if summary.status == "dry run" else ("wrote", "deleted")
    lines = [
        f"job {summary.job}: sync {summary.status} ({summary.mode}). read {summary.read:,}, "
        f"{verb[0]} {summary.written:,} ({summary.new:,} new, {summary.changed:,} changed), "
        f"{verb[1]} {summary.deleted:,}, unchanged {summary.unchanged:,}, "
        f"in {summary.elapsed:.1f}s"
    ]
    if summary.written_examples:
        lines.append(f"  {verb[0]} e.g. {_ids(summary.written_examples)}")
    if summary.deleted_examples:
        lines.append(f"  {verb[1]} e.g. {_ids(summary.deleted_examples)}")
    if summary.mode == "changed_field":
        lines.append(
            f"  read changes from {summary.watermark_from!r}; compared {summary.ids_read:,} IDs"
        )
    if summary.watermark is not None:
        lines.append(f"  watermark now {summary.watermark!r}")
    if summary.resumed:
        lines.append("  resumed an interrupted pass")
    if summary.invalid:
        lines.append(f"  invalid records: {summary.invalid:,}")
    if summary.deletes_skipped:
        lines.append(f"  deletes skipped: {summary.deletes_skipped}")
    lines += [f"  note: {note}" for note in summary.notes]
    return "\n".join(lines)


def render_markdown(summaries: list[dict[str, Any]], error: str | None = None) -> str:
    sections = []
    for s in summaries:
        lines = [md.heading("sync", s["job"], s["ok"], f"{s['status']} ({s['mode']})"), ""]
        rows = [
            ("read", f"{s['read']:,}"),
            ("written" if s["status"] == "done" else "would write", f"{s['written']:,}"),
            ("new / changed", f"{s['new']:,} / {s['changed']:,}"),
            ("deleted" if s["status"] == "done" else "would delete", f"{s['deleted']:,}"),
            ("unchanged", f"{s['unchanged']:,}"),
            ("time", f"{s['elapsed']:.1f}s"),
        ]
        if s["written_examples"]:
            rows.append(("written e.g.", _ids(s["written_examples"])))
        if s["deleted_examples"]:
            rows.append(("deleted e.g.", _ids(s["deleted_examples"])))
        if s["mode"] == "changed_field":
            rows.append(("changes read from", repr(s["watermark_from"])))
        if s["watermark"] is not None:
            rows.append(("watermark", repr(s["watermark"])))
        lines += md.table(("item", "value"), rows)
        notes = [f"deletes skipped: {s['deletes_skipped']}"] if s["deletes_skipped"] else []
        lines += md.bullets("Notes", notes + s["notes"])
        sections.append(lines)
    if error is not None:
        sections.append([f"### qmigrate sync: {md.FAIL} stopped", "", "```", error, "```"])
    return md.document(sections)
