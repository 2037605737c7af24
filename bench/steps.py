"""The raw steps of `python -m bench`, each run as a child process so that the kernel's
accounting of it (`os.wait4`: CPU seconds, peak RSS) is the step's and nothing else's:

    python -m bench.steps read  '{"source": "chroma", "conn": {...}, "batch": 256}'   # (a)
    python -m bench.steps write '{"root": DIR, "target": {...}, "collection": C, ...}'   # (b)
    python -m bench.steps loop  '{"source": ..., "conn": ..., "target": {...}, ...}'  # (d)

Each prints the number of points it handled; the parent checks it.
"""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path
from typing import Any

from bench.harness import REPO  # noqa: F401  (puts the repo on sys.path for tests.servers)
from bench.sources import SOURCES, payload

UUID_NAMESPACE = uuid.UUID("6c0b1e8a-3f7d-5e0c-9a51-8d7f3c2b1a90")


def point_id(native: Any) -> int | str:
    """What a plain script must do with a string ID: Qdrant takes only integers and UUIDs."""
    return native if isinstance(native, int) else str(uuid.uuid5(UUID_NAMESPACE, native))


def target_client(target: dict[str, Any], dim: int, collection: str) -> Any:
    """A qdrant-client for `target` (`url`, `grpc_port`, `prefer_grpc`, or `path`), with a
    fresh collection."""
    from qdrant_client import QdrantClient, models

    client = QdrantClient(**target)
    params = models.VectorParams(size=dim, distance=models.Distance.COSINE)
    client.create_collection(collection, vectors_config=params)
    return client


def read(args: dict[str, Any]) -> int:
    """(a) The native client reads every record, vectors as Python lists (what any consumer
    of them pays)."""
    source = SOURCES[args["source"]]
    return sum(len(page) for page in source.read(args["conn"], args["batch"]))


def write(args: dict[str, Any]) -> int:
    """(b) qdrant-client upserts the data set's points alone, batch by batch, wait=True."""
    import numpy as np
    from qdrant_client import models

    vectors = np.load(Path(args["root"]) / "vectors.npy")
    client = target_client(args["target"], vectors.shape[1], args["collection"])
    batch = args["batch"]
    for start in range(0, len(vectors), batch):
        points = [
            models.PointStruct(id=i, vector=vectors[i].tolist(), payload=payload(i))
            for i in range(start, min(len(vectors), start + batch))
        ]
        client.upsert(args["collection"], points, wait=True)
    client.close()
    return len(vectors)


def loop(args: dict[str, Any]) -> int:
    """(d) The reference tool's shape: read a page, convert it, upsert(wait=True), repeat."""
    from qdrant_client import models

    client = target_client(args["target"], args["dim"], args["collection"])
    moved = 0
    for page in SOURCES[args["source"]].read(args["conn"], args["batch"]):
        points = [models.PointStruct(id=point_id(i), vector=v, payload=p) for i, v, p in page]
        client.upsert(args["collection"], points, wait=True)
        moved += len(points)
    client.close()
    return moved


if __name__ == "__main__":
    step = {"read": read, "write": write, "loop": loop}[sys.argv[1]]
    print(step(json.loads(sys.argv[2])))
