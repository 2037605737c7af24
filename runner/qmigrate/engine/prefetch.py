"""Pages read ahead on a thread of their own."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Generator, Iterator
from typing import Any

from qmigrate.records import Page

PREFETCH_PAGES = 2
_DONE = object()


def prefetch(pages: Iterator[Page], stop: threading.Event) -> Generator[Page, None, None]:
    """Read the next pages in a background thread while the current one is written."""
    buffer: queue.Queue[Any] = queue.Queue(maxsize=PREFETCH_PAGES)
    abandoned = threading.Event()

    def put(item: Any) -> bool:
        while not (abandoned.is_set() or stop.is_set()):
            try:
                buffer.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for page in pages:
                if not put(page):
                    return
            put(_DONE)
        except BaseException as exc:
            put(exc)
        finally:
            close: Callable[[], None] | None = getattr(pages, "close", None)
            if close is not None:
                close()

    reader = threading.Thread(target=produce, name="prefetch", daemon=True)
    reader.start()
    try:
        while True:
            try:
                item = buffer.get(timeout=0.1)
            except queue.Empty:
                if stop.is_set():
                    return
                continue
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        abandoned.set()
        reader.join()
