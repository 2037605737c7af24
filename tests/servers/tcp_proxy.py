"""A TCP proxy for network-fault tests: it forwards to an upstream port and can add
latency, reset connections, or stall (hold every byte) until told to let go. Given `connect`,
it opens its upstream connections that way instead (a socket made inside a loopback-only
network namespace: a bridge from this namespace's 127.0.0.1 to that one's)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator


class TcpProxy:
    def __init__(
        self, upstream_port: int, connect: Callable[[], socket.socket] | None = None
    ) -> None:
        self.upstream_port = upstream_port
        self.connect = connect or (lambda: socket.create_connection(("127.0.0.1", upstream_port)))
        self.latency = 0.0  # seconds added before each chunk is passed on
        self.stalled = threading.Event()  # while set, nothing is passed on
        self.reset_after_bytes = 0  # reset a connection once it carried this much (0: never)
        self.connections = 0
        self.resets = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.closing = threading.Event()
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, name="proxy", daemon=True).start()

    def close(self) -> None:
        self.closing.set()
        self.stalled.clear()
        self.listener.close()

    def _accept(self) -> None:
        while not self.closing.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            with self.lock:
                self.connections += 1
            try:
                upstream = self.connect()
            except OSError:
                client.close()
                continue
            carried = [0]  # bytes both ways, shared by the two pipes of a connection
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(
                    target=self._pipe, args=(source, sink, carried), daemon=True
                ).start()

    def _pipe(self, source: socket.socket, sink: socket.socket, carried: list[int]) -> None:
        with contextlib.suppress(OSError):
            while True:
                data = source.recv(65536)
                if not data:
                    break
                while self.stalled.is_set() and not self.closing.is_set():
                    time.sleep(0.01)
                if self.latency:
                    time.sleep(self.latency)
                carried[0] += len(data)
                if self.reset_after_bytes and carried[0] > self.reset_after_bytes:
                    with self.lock:
                        self.resets += 1
                    # SO_LINGER 0: the peer sees a reset, not an orderly close.
                    for end in (source, sink):
                        end.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
                        end.close()
                    return
                sink.sendall(data)
        for end in (source, sink):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)


@contextlib.contextmanager
def proxy_to(port: int) -> Iterator[TcpProxy]:
    proxy = TcpProxy(port)
    try:
        yield proxy
    finally:
        proxy.close()
