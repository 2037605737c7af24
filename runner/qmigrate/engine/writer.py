"""Prepared pages written to the target, several requests out at once, recorded in order."""

from __future__ import annotations

import collections
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from qdrant_client import models

from qmigrate.target import REQUEST_BYTES


@dataclass
class PreparedPage:
    """A page filtered and mapped, waiting to be written."""

    points: list[models.PointStruct]
    dead_letters: list[str]
    cursor: Any
    read: int
    filtered: int
    duplicates: int
    passed_over: int
    references_dropped: int = 0


@dataclass
class Request:
    """One upsert out to the target, and the pages it carries (whole pages, in order)."""

    pages: list[PreparedPage]
    ids: set[Any]
    acknowledged: Future[int]  # the bytes sent


class PageWriter:
    """Writes prepared pages on threads of its own while the next ones are mapped.

    Up to `in_flight` upserts are out at once. Up to `in_flight` pages already queued when a
    request leaves join it, while it stays under about REQUEST_BYTES. Pages are recorded
    (counted, and offered to the checkpoint saver) in order, once they and every page before
    them are acknowledged, so resume stays exact; an ID still in flight makes the next
    request wait for its own, so the last page read still wins.

    A killed run so leaves at most (3 x in_flight + 1) x (in_flight + 1) pages written but
    not saved: the requests out, the one waiting to be offered, and the in_flight offers
    each of the saver's two states (the one being saved, the one pending) may hold, each
    request of at most in_flight + 1 pages.

    With `acknowledge_only` the data goes with wait=false; the job's barrier at its end
    (`QdrantTarget.barrier`) has the server apply it all.
    The first error stops it: `put` and the end of the block raise it. Once `stop` is set,
    `put` takes no more pages.
    """

    def __init__(
        self,
        send: Callable[[list[models.PointStruct], bool], int],
        record: Callable[[list[PreparedPage]], None],
        in_flight: int,
        acknowledge_only: bool,
        stop: threading.Event,
    ) -> None:
        self.send = send
        self.record = record
        self.in_flight = in_flight
        self.acknowledge_only = acknowledge_only
        self.stop = stop
        self.queue: queue.Queue[Any] = queue.Queue(maxsize=in_flight)
        self.closed = False  # `put` gave up on a stop: a later page must not follow the lost one
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="writer", daemon=True)
        self.bytes_per_point = 0.0  # of the last request: 0 until one is answered, and locally
        self.held: Any = None  # a page taken from the queue for the next request

    def __enter__(self) -> PageWriter:
        self.thread.start()
        return self

    def put(self, page: PreparedPage) -> None:
        while not self.closed:
            if self.error is not None:
                raise self.error
            try:
                self.queue.put(page, timeout=0.1)
                return
            except queue.Full:
                self.closed = self.stop.is_set() or not self.thread.is_alive()

    def __exit__(self, kind: Any, exc: Any, tb: Any) -> None:
        while self.thread.is_alive():
            try:
                self.queue.put(_DONE, timeout=0.1)
                break
            except queue.Full:
                continue
        self.thread.join()
        if self.error is not None and self.error is not exc:
            raise self.error  # the first failure, even when the block ended with another

    def _run(self) -> None:
        out: collections.deque[Request] = collections.deque()
        pool = ThreadPoolExecutor(self.in_flight, thread_name_prefix="upsert")
        try:
            while (taken := self._next_pages()) is not None:
                pages, ids = taken
                points = [point for page in pages for point in page.points]
                while out and (
                    len(out) >= self.in_flight or any(not ids.isdisjoint(r.ids) for r in out)
                ):
                    self._finish(out.popleft())
                out.append(Request(pages, ids, self._submit(pool, points)))
                while out and out[0].acknowledged.done():
                    self._finish(out.popleft())
            while out:
                self._finish(out.popleft())
        except BaseException as exc:
            self.error = exc  # what is still out is never recorded: an earlier page failed
        finally:
            # A failed writer does not wait for the other sends' retries; the stop that
            # follows the error ends them.
            pool.shutdown(wait=self.error is None, cancel_futures=True)

    def _next_pages(self) -> tuple[list[PreparedPage], set[Any]] | None:
        """The next page, joined by up to `in_flight` queued behind it while the request stays
        under its budget and their IDs do not repeat; with the request's IDs. None at the
        end, or once `stop` is set."""
        page = self.held if self.held is not None else self.queue.get()
        self.held = None
        if page is _DONE or self.stop.is_set():
            return None
        pages = [page]
        ids = {point.id for point in page.points}
        while (
            len(pages) <= self.in_flight
            and 0 < (len(ids) + 1) * self.bytes_per_point < REQUEST_BYTES
        ):
            try:
                queued = self.queue.get_nowait()
            except queue.Empty:
                break
            queued_ids = set() if queued is _DONE else {point.id for point in queued.points}
            if queued is _DONE or not ids.isdisjoint(queued_ids):
                self.held = queued  # the next request's
                break
            pages.append(queued)
            ids |= queued_ids
        return pages, ids

    def _submit(self, pool: ThreadPoolExecutor, points: list[models.PointStruct]) -> Future[int]:
        if not points:  # only filtered or invalid records: nothing to send
            done: Future[int] = Future()
            done.set_result(0)
            return done
        return pool.submit(self.send, points, not self.acknowledge_only)

    def _finish(self, request: Request) -> None:
        """Wait for a request's acknowledgement, then record its pages."""
        sent = request.acknowledged.result()
        points = sum(len(page.points) for page in request.pages)
        if points:
            self.bytes_per_point = sent / points
        self.record(request.pages)


_DONE = object()
