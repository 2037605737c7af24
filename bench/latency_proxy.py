"""A TCP proxy that holds everything it forwards for `delay` seconds, like a long wire.

Each chunk is sent on `delay` after it arrived (not `delay` after the previous one), so
the delay adds latency without limiting bandwidth: one round trip costs 2 x delay more.

    with latency_proxy(6379, delay=0.005) as port: ...   # connect to 127.0.0.1:port
"""

from __future__ import annotations

import contextlib
import queue
import socket
import threading
import time
from collections.abc import Iterator


def _wire(source: socket.socket, sink: socket.socket, delay: float) -> None:
    """Read from `source`; a second thread sends each chunk to `sink` when it is due."""
    in_flight: queue.Queue[tuple[float, bytes]] = queue.Queue()

    def deliver() -> None:
        try:
            while True:
                due, data = in_flight.get()
                if not data:
                    break
                time.sleep(max(0.0, due - time.monotonic()))
                sink.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                sink.shutdown(socket.SHUT_WR)

    threading.Thread(target=deliver, daemon=True).start()
    try:
        while data := source.recv(1 << 20):
            in_flight.put((time.monotonic() + delay, data))
    except OSError:
        pass
    in_flight.put((0.0, b""))


@contextlib.contextmanager
def latency_proxy(upstream_port: int, delay: float) -> Iterator[int]:
    """A local port that forwards to 127.0.0.1:`upstream_port` with `delay` each way."""
    listener = socket.create_server(("127.0.0.1", 0))

    def accept() -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", upstream_port))
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=_wire, args=(a, b, delay), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()
