"""A Qdrant stand-in on loopback, for benchmarks only: an infinitely fast server.

No Qdrant server runs on this machine, so client-side cost on the server path (REST and
gRPC) is measured against this sink. It answers the calls the qmigrate target and its
checkpoint store make (collections: list, exists, get, create, update, delete, payload
indexes; points: upsert, count, retrieve, scroll, delete, query) and, for data
collections, keeps only the IDs of the points it accepts. The checkpoint collection
(`_migration_offsets`) is kept whole, in a qdrant-client local-mode instance, so resume
works. It is the tests' stand-in (`tests/servers/qdrant_rest.py` and `qdrant_grpc.py`)
with data points reduced to IDs. It is a measuring instrument: never use it to check correctness.

    python bench/sink.py --rest-port 6333 --grpc-port 6334
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.servers.qdrant_grpc import serve_grpc  # noqa: E402
from tests.servers.qdrant_rest import Store, serve_rest  # noqa: E402


def serve(rest_port: int, grpc_port: int) -> tuple[Any, grpc.Server, Store]:
    """Start both servers; the caller stops them (`shutdown`, `stop`)."""
    sink = Store(keep_points=False)
    rest = serve_rest(sink, rest_port)
    server, _ = serve_grpc(sink, grpc_port)
    return rest, server, sink


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rest-port", type=int, default=6333)
    parser.add_argument("--grpc-port", type=int, default=6334)
    args = parser.parse_args()
    rest, server, sink = serve(args.rest_port, args.grpc_port)
    print(json.dumps({"rest_port": args.rest_port, "grpc_port": args.grpc_port}), flush=True)
    try:
        server.wait_for_termination()
    except KeyboardInterrupt:
        pass
    finally:
        rest.shutdown()
        server.stop(0)
        print(json.dumps({"accepted": sink.accepted}), flush=True)


if __name__ == "__main__":
    main()
