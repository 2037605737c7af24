"""Target points no record of the job's source maps to, for `verify`'s counts check.

Counts alone cannot name them, and one extra point hides one lost point. Before the pass
over the source, the target's point IDs are taken (all of them for `sample: all`, else a
random sample of that many); each ID the source maps to is struck off during the pass,
and what is left was not written from this source. Memory holds point IDs only.
"""

from __future__ import annotations

import random
import threading
import uuid
from collections.abc import Iterable
from typing import Any

from qmigrate.target import QdrantTarget

SCROLL_PAGE = 1000  # point IDs per scroll request
EXAMPLES = 5  # extra IDs a message names at most


def _normal(point_id: Any) -> Any:
    """One form per ID: Qdrant answers UUIDs lower-case and hyphenated."""
    return str(uuid.UUID(point_id)) if isinstance(point_id, str) else point_id


class ExtraPoints:
    def __init__(self, target: QdrantTarget, sample: int | None) -> None:
        self.sample = sample  # None: every target point
        self.lock = threading.Lock()
        self.total = 0  # target points seen by the scroll
        self.unmatched: set[Any] = set(self._target_ids(target))
        self.checked = len(self.unmatched)

    def _target_ids(self, target: QdrantTarget) -> list[Any]:
        """Every point ID of the target, or a reservoir sample of `sample` of them."""
        kept: list[Any] = []
        chooser = random.Random()
        offset = None
        while True:
            with target.connection.lock:
                points, offset = target.client.scroll(
                    target.collection,
                    limit=SCROLL_PAGE,
                    offset=offset,
                    with_payload=False,
                    with_vectors=False,
                )
            for point in points:
                self.total += 1
                if self.sample is None or len(kept) < self.sample:
                    kept.append(_normal(point.id))
                elif (slot := chooser.randrange(self.total)) < self.sample:
                    kept[slot] = _normal(point.id)
            if offset is None:
                return kept

    def strike(self, point_ids: Iterable[Any]) -> None:
        """IDs the source maps to: not extra."""
        normal = [_normal(i) for i in point_ids]
        with self.lock:
            self.unmatched.difference_update(normal)

    def problem(self) -> str | None:
        """What the counts check says of the points left, None when there are none."""
        if not self.unmatched:
            return None
        examples = ", ".join(repr(i) for i in sorted(self.unmatched, key=str)[:EXAMPLES])
        found = len(self.unmatched)
        points = "point" if found == 1 else "points"
        if self.checked == self.total:
            what = f"the target holds {found:,} {points}"
        else:
            what = f"{found:,} of {self.checked:,} target points sampled at random are {points}"
        return (
            f"{what} that no record the job selects in the source maps to (e.g. {examples}): "
            "written by something else, or left from records the source no longer has"
        )

    def figure(self) -> str:
        if self.checked == self.total:
            return "every target point checked for a source record"
        return f"{self.checked:,} of {self.total:,} target points checked for a source record"
