"""`sync.changed_field`: read only records changed since a watermark.

The field holds a modification time (an RFC 3339 / ISO 8601 string) or an increasing number.
Each pass notes the largest value it read (`High`, per partition, beside the ID files, so a
resumed pass keeps it), and a finished pass saves it in the checkpoint store under
"<job> sync watermark". The overlap: a pass reads `field >= ` the largest value of the pass
*before the last* finished one, inclusive. So a record changed while a pass ran (its value
then below what that pass had already seen elsewhere) is read by the next pass, and values
equal to the bound that arrive late too; until two passes have finished, a pass reads
everything. The bound is added to the job's filter as a `range` condition before
`push_down`: a source that evaluates ranges takes it, the engine filters the rest.
"""

from __future__ import annotations

import datetime
import json
import threading
from pathlib import Path
from typing import Any

from qmigrate import payload_paths
from qmigrate.checkpoint import CheckpointStore, PartitionState
from qmigrate.sync.history import WATERMARK_KEY, watermark_name


def load(store: CheckpointStore, job: str, field: str) -> list[Any]:
    """The largest values of the last (up to) two finished passes, older first; a watermark
    of another field counts as none."""
    saved = store.load_partitions(watermark_name(job)).get(WATERMARK_KEY)
    cursor = saved.cursor if saved is not None else None
    if not isinstance(cursor, dict) or cursor.get("field") != field:
        return []
    return list(cursor.get("highs") or [])


def save(
    store: CheckpointStore, job: str, field: str, highs: list[Any], new: Any, pass_id: str
) -> None:
    """Add the finished pass's largest value; `pass_id` keeps a pass from adding twice."""
    kept = ([*highs, new] if new is not None else list(highs))[-2:]
    cursor = {"field": field, "highs": kept, "pass": pass_id}
    state = PartitionState(WATERMARK_KEY, cursor=cursor, done=True)
    store.save_partition(watermark_name(job), state)


def lower_bound(highs: list[Any]) -> Any:
    """Where a pass starts reading: the high of the pass before the last; None: from the start."""
    return highs[0] if len(highs) >= 2 else None


def with_range(filter: dict[str, Any] | None, field: str, bound: Any) -> dict[str, Any]:
    """The job's filter and `field >= bound`."""
    condition = {"key": field, "range": {"gte": bound}}
    if not filter:
        return {"must": [condition]}
    must = filter.get("must") or []
    return {**filter, "must": [*(must if isinstance(must, list) else [must]), condition]}


def _order(value: Any) -> tuple[int, Any] | None:
    """A value's place among the field's values: numbers, or date-times (as UTC); None for
    anything else (ignored)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return (0, value)
    if isinstance(value, str):
        try:
            moment = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=datetime.timezone.utc)
        return (1, moment)
    return None


def larger(a: Any, b: Any) -> Any:
    """The larger of two field values (None: no value); values of another kind lose."""
    order_a, order_b = _order(a), _order(b)
    if order_b is None:
        return a if order_a is not None else None
    if order_a is None or order_a[0] != order_b[0]:
        return b if order_a is None else a
    return b if order_b[1] > order_a[1] else a


class High:
    """The largest value read per partition, kept in a file beside the pass's ID files."""

    def __init__(self, directory: Path, field: str) -> None:
        self.path = directory / "high.json"
        self.field = field
        self.parsed = payload_paths.parse(field)
        self.lock = threading.Lock()
        try:
            self.values: dict[str, Any] = json.loads(self.path.read_text())
        except (OSError, ValueError):
            self.values = {}

    def of_records(self, payloads: list[dict[str, Any]]) -> Any:
        high = None
        for payload in payloads:
            found, value = payload_paths.take(payload, self.parsed)
            if found:
                high = larger(high, value)
        return high

    def note(self, partition: str, value: Any) -> None:
        if value is None:
            return
        with self.lock:
            self.values[partition] = larger(self.values.get(partition), value)
            self.path.write_text(json.dumps(self.values))

    def largest(self) -> Any:
        high = None
        for value in self.values.values():
            high = larger(high, value)
        return high
