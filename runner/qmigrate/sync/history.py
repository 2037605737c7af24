"""What `status` says of a job's sync: the last finished pass, a pass in progress, and the
watermark. Sync records the last pass beside its watermark; the rest are its checkpoints."""

from __future__ import annotations

import time
from typing import Any

from qmigrate.checkpoint import CheckpointStore, PartitionState

LAST_PASS_KEY = "last pass"
WATERMARK_KEY = "watermark"
PASS_KEY = "\0pass"  # the marker of the pass in progress, among its partitions


def checkpoint_names(job: str) -> tuple[str, str]:
    """Where a pass checkpoints its two phases: every record, and the changed ones."""
    return f"{job} sync", f"{job} sync changes"


def watermark_name(job: str) -> str:
    return f"{job} sync watermark"


def record(store: CheckpointStore, job: str, last_pass: dict[str, Any]) -> None:
    """Keep a finished pass's counts, with the time it finished."""
    cursor = {"finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **last_pass}
    store.save_partition(watermark_name(job), PartitionState(LAST_PASS_KEY, cursor=cursor))


def status(store: CheckpointStore, job: str) -> dict[str, Any] | None:
    """The job's sync as `status` shows it; None when it never synced."""
    saved = store.load_partitions(watermark_name(job))
    last = saved.get(LAST_PASS_KEY)
    mark = saved.get(WATERMARK_KEY)
    highs = mark.cursor.get("highs") if mark is not None and isinstance(mark.cursor, dict) else []
    ids_name = checkpoint_names(job)[0]
    running = store.load_job(ids_name)
    in_progress = None
    if running is not None:
        states = store.load_partitions(ids_name)
        done = sum(1 for p in running.partitions if states.get(p.key, PartitionState("")).done)
        in_progress = {"partitions_done": done, "partitions": len(running.partitions)}
    if last is None and in_progress is None:
        return None
    return {
        "last_pass": last.cursor if last is not None else None,
        "watermark": highs[-1] if highs else None,
        "in_progress": in_progress,
    }


def render_text(sync: dict[str, Any]) -> list[str]:
    lines = []
    last = sync["last_pass"]
    if last is not None:
        lines.append(
            f"  sync: last pass finished {last['finished']} ({last['mode']}): wrote "
            f"{last['written']:,}, deleted {last['deleted']:,}, unchanged {last['unchanged']:,}"
        )
    if sync["watermark"] is not None:
        lines.append(f"  sync: watermark {sync['watermark']!r}")
    if (running := sync["in_progress"]) is not None:
        lines.append(
            f"  sync: a pass is in progress ({running['partitions_done']}/"
            f"{running['partitions']} partitions done); `sync` resumes it"
        )
    return lines
