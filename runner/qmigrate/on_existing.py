"""`target.on_existing: keep`: how the target leaves points it already holds alone, and
whether it can.

On a server the writes carry Qdrant's `update_mode: insert_only` (REST `PointsList`) /
`UpsertPoints.update_mode = InsertOnly` (gRPC field 8), added in Qdrant 1.17: the server
skips, in the same write, every point whose ID it holds. An older server is refused rather
than served by reading which IDs exist and writing the others: an application writing at
the same time could write between the read and the write, and its newer point would be
replaced. Local mode takes the same update_mode (or, with an older qdrant-client, leaves out
the IDs it holds under the connection's lock, which no other writer can pass).
"""

from __future__ import annotations

import re

from qmigrate.retry import describe
from qmigrate.target import LOCAL_UPDATE_MODE, QdrantTarget

MIN_SERVER = (1, 17)


def server_version(target: QdrantTarget) -> str:
    """The server's version, as its root (REST) or health check (gRPC) says it."""
    with target.connection.lock:
        return str(target.client.info().version)


def _parsed(version: str) -> tuple[int, int] | None:
    found = re.match(r"v?(\d+)\.(\d+)", version)
    return (int(found[1]), int(found[2])) if found else None


def refusal(target: QdrantTarget) -> str | None:
    """Why `keep` cannot be honoured on this target; None when it can (or is not asked)."""
    if not target.insert_only or target.connection.local:
        return None
    try:
        version = server_version(target)
    except Exception as exc:
        return f"target.on_existing: keep: could not read the server's version: {describe(exc)}"
    parsed = _parsed(version)
    if parsed is not None and parsed < MIN_SERVER:
        return (
            f"target.on_existing: keep needs Qdrant {'.'.join(map(str, MIN_SERVER))} or later "
            f"(insert-only writes); the server runs {version}: upgrade it, or use overwrite"
        )
    return None


def method(target: QdrantTarget) -> str:
    """What plan says about how existing points are treated."""
    if not target.insert_only:
        return "overwrite: a point the collection holds is replaced"
    if target.connection.local:
        how = (
            "local mode's update_mode insert_only"
            if LOCAL_UPDATE_MODE
            else "IDs the collection holds are left out, under the connection lock"
        )
    else:
        how = f"update_mode insert_only on every write (Qdrant {MIN_SERVER[0]}.{MIN_SERVER[1]}+)"
    return f"keep: a point the collection holds is left as it is ({how})"
