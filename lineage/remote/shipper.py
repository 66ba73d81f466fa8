"""The remote tracker's write path: queue -> durable spool -> server (DESIGN §8).

``log_step`` appends a tuple to ``queue`` (a deque: the caller never waits, on the network or
the disk); calls append a ``_Call``. One thread moves what is queued into the spool (step
items get their event ids there, so a resend is the same events), then sends the spool's
oldest items as one batch and deletes them once the server acknowledged them. While the server
is away the items stay in the spool (a later start or ``lineage sync`` sends them if this process
ends first); resends say ``retry`` so the server leaves out what it already holds.

Ports: ``spool`` (``lineage.adapters.spool.SqliteSpool``: append, head, delete_through, count)
and ``transport`` (``lineage.adapters.http_client.HttpxTrackerClient``: send).
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from lineage.application.step_log import RUN_KEY, StepQueue
from lineage.application.write_batch import WriterStats
from lineage.errors import LineageError, WriterError
from lineage.remote import wire
from lineage.remote.columns import column_item

log = logging.getLogger(__name__)
ITEM_STEPS = 5000  # the most steps one spooled item holds


@dataclass(eq=False)
class _Call:
    item: dict[str, Any]
    future: Future[Any]


@dataclass(eq=False)
class _Flush:
    done: threading.Event = field(default_factory=threading.Event)
    seq: int | None = None  # the last spool item it waits for, once spooled


class Shipper:
    """Owns the queue, the spool and the sending thread. ``put_step`` never blocks."""

    def __init__(self, spool: Any, transport: Any, orphans: list[Any] = (), *,  # type: ignore[assignment]
                 max_items: int = 2000, max_steps: int = 20_000, poll_s: float = 0.02,
                 close_wait_s: float = 30.0) -> None:
        self.spool = spool
        self.transport = transport
        self.queue: deque[Any] = deque()
        self.put_step = self.queue.append
        # never full (the spool takes what comes): log_step appends itself, without a call
        self.step_queue = StepQueue(self.queue, sys.maxsize, self.put_step)
        self.stats = WriterStats()
        self.offline_since: float | None = None
        self.send_seconds: deque[float] = deque(maxlen=100_000)  # each acknowledged batch's
        self.close_wait_s = close_wait_s
        self._spools = [*orphans, spool]
        self._retry = [True] * len(orphans) + [False]
        self._id_base = int(spool.meta["id_base"])
        self._next_id = 0
        self._acked = 0  # the own spool's last item acknowledged
        self._futures: dict[str, Future[Any]] = {}
        self._unseen: dict[Future[Any], BaseException] = {}
        self._flushes: list[_Flush] = []
        self._max_items, self._max_steps, self._poll_s = max_items, max_steps, poll_s
        self._items_now = max_items  # fewer after a 413, back up after each success
        self._wake = threading.Event()  # the spooler: something was queued
        self._ready = threading.Event()  # the sender: something was spooled, or a flush waits
        self._lock = threading.Lock()  # the flush markers
        self._closing = False
        self._delay = 0.0
        # Two threads, so a batch is encoded and spooled while the one before is on the wire.
        self._threads = [threading.Thread(target=target, name=f"lineage-{name}", daemon=True)
                         for target, name in ((self._spool_loop, "spooler"),
                                              (self._send_loop, "sender"))]
        for thread in self._threads:
            thread.start()

    # -- the caller's side -----------------------------------------------------------------------

    def submit_call(self, item: dict[str, Any]) -> Future[Any]:
        future: Future[Any] = Future()
        self.queue.append(_Call(item, future))
        return future

    def expedite(self) -> None:
        self._wake.set()
        self._ready.set()

    def seen(self, future: Future[Any]) -> None:
        self._unseen.pop(future, None)

    def flush(self, timeout: float | None = None, *, while_offline: bool = False) -> None:
        """Wait until everything queued so far (and every orphan spool taken over) is
        acknowledged by the server or, while the server is unreachable, kept in the spool (it
        is sent later: nothing is lost); ``while_offline``: keep waiting for the server until
        ``timeout``. Raises WriterError for refusals nobody waited on."""
        marker = _Flush()
        self.queue.append(marker)
        self.expedite()
        deadline = None if timeout is None else time.monotonic() + timeout
        while not marker.done.wait(0.05):
            if self.offline_since is not None and marker.seq is not None and not while_offline:
                break  # spooled; the server is away
            if deadline is not None and time.monotonic() > deadline:
                break
        if self._unseen:
            failures = list(self._unseen.values())
            self._unseen.clear()
            raise WriterError(failures, len(failures))

    def close(self, timeout: float | None = None) -> None:
        """Wait up to ``timeout`` (default ``close_wait_s``) for the server to acknowledge
        everything, then stop; what it did not is kept in the spool file (logged)."""
        try:
            self.flush(self.close_wait_s if timeout is None else timeout, while_offline=True)
        finally:
            self._closing = True
            self.expedite()
            for thread in self._threads:
                thread.join(timeout)
            left = self.spool.count()
            if left:
                log.warning("lineage: %d item(s) not yet acknowledged are kept in %s; the next "
                            "tracker for this server or `lineage sync` sends them", left,
                            self.spool.path)
            self.spool.close()
            self.transport.close()

    # -- the shipping thread -------------------------------------------------------------------

    def _spool_loop(self) -> None:
        while True:
            try:
                moved = self._spool_queued()
            except Exception:  # never let the thread die: the queue is kept and tried again
                log.exception("lineage shipper: could not write the spool")
                moved = False
                time.sleep(0.5)
            if self._closing and not self.queue:
                return
            if not moved:
                self._wake.wait(self._poll_s)
                self._wake.clear()

    def _send_loop(self) -> None:
        while True:
            try:
                sent = self._send() if self._spools else False
            except Exception:  # never let the thread die: what is spooled is kept
                log.exception("lineage shipper: unexpected error")
                sent = False
                time.sleep(0.5)
            if self._closing and (self.offline_since is not None or (not self._threads[0].is_alive()
                                  and self.spool.last_seq() is None)):
                return
            if not sent:
                self._ready.wait(self._poll_s if self._delay == 0 else self._delay)
                self._ready.clear()

    def _spool_queued(self) -> bool:
        items: list[dict[str, Any]] = []
        markers: list[_Flush] = []
        steps: list[tuple[Any, ...]] = []
        pop = self.queue.popleft
        while self.queue and len(items) < 10_000:
            entry = pop()
            if type(entry) is tuple:
                steps.append(entry)
                continue
            self._close_steps(steps, items)
            steps = []
            if type(entry) is _Flush:
                markers.append(entry)
            else:
                self._futures[entry.item["id"]] = entry.future
                items.append(entry.item)
        self._close_steps(steps, items)
        if items:
            self.spool.append(items)
        with self._lock:
            for marker in markers:
                marker.seq = self.spool.last_seq()
                self._flushes.append(marker)
        if items or markers:
            self._ready.set()
        return bool(items)

    def _close_steps(self, steps: list[tuple[Any, ...]], items: list[dict[str, Any]]) -> None:
        """Step items of ``steps`` (per run, in order, at most ITEM_STEPS each), their event
        ids numbered on from this spool's base."""
        by_run: dict[int, list[tuple[Any, ...]]] = {}
        for record in steps:
            by_run.setdefault(record[RUN_KEY], []).append(record)
        for key, records in by_run.items():
            run = UUID(int=key)
            for start in range(0, len(records), ITEM_STEPS):
                chunk = records[start:start + ITEM_STEPS]
                first = self._id_base + self._next_id
                items.append(column_item(run, chunk, first) or wire.step_rows(run, chunk, first))
                self._next_id += len(chunk)

    def _send(self) -> bool:
        if self._delay and time.monotonic() < self._resume_at:
            return False
        spool = self._spools[0]
        head = spool.head(self._items_now, self._max_steps)
        if not head:
            if spool is not self.spool:  # an orphan, all sent
                spool.close()
                self._spools.pop(0)
                self._retry.pop(0)
                return True
            self._resolve_flushes(self._acked)  # not None: a marker spooled since is not done
            return False
        started = time.perf_counter()
        answer = self.transport.send([entry[1] for entry in head], retry=self._retry[0])
        if answer.status in (200, 422) and isinstance(answer.body, dict):
            self.send_seconds.append(time.perf_counter() - started)
            self._acknowledged(head, answer.body)
            spool.delete_through(head[-1][0])
            self._retry[0] = False
            if spool is self.spool:
                self._acked = head[-1][0]
                self._resolve_flushes(self._acked)
            self._online()
            self._items_now = min(self._max_items, self._items_now * 2)
            return True
        if answer.status in (400, 413, 415):
            return self._refused(spool, head, answer)
        self._retry[0] = True
        self._offline(answer)
        return False

    def _refused(self, spool: Any, head: list[tuple[int, str, int, str]], answer: Any) -> bool:
        """The server refuses the batch as it is: send fewer items; a single item it refuses
        can never be taken, so it fails (its handle, or the next flush, says why) and goes."""
        if len(head) > 1:
            self._items_now = max(1, len(head) // 2)
            return True
        detail = answer.body.get("detail") if isinstance(answer.body, dict) else None
        error = LineageError(f"the server refused an item ({answer.status}): {detail}")
        log.error("lineage: %s; it is dropped from the spool", error)
        future = self._futures.pop(head[0][3], None) or Future()
        future.set_exception(error)
        self._unseen[future] = error
        spool.delete_through(head[0][0])
        if spool is self.spool:
            self._acked = head[0][0]
        return True

    def _acknowledged(self, head: list[tuple[int, str, int, str]], body: dict[str, Any]) -> None:
        results = body.get("results") or []
        for (_, _, steps, item_id), result in zip(head, results, strict=False):
            self.stats.committed_events += steps or 1
            future = self._futures.pop(item_id, None)
            error = None if result.get("ok") else rebuild(result.get("error") or {})
            if future is not None:
                if error is None:
                    future.set_result(result.get("value"))
                else:
                    future.set_exception(error)
                    self._unseen[future] = error
            elif error is not None:
                self._unseen[Future()] = error
        for data in body.get("errors") or []:
            self._unseen[Future()] = rebuild(data)
        self.stats.committed_batches += 1

    def _resolve_flushes(self, seq: int) -> None:
        """Release the flushes waiting for items up to ``seq`` (or for none)."""
        if len(self._spools) > 1:
            return  # orphans taken over are sent first, and a flush waits for them too
        with self._lock:
            waiting = []
            for marker in self._flushes:
                if marker.seq is None or marker.seq <= seq:
                    marker.done.set()
                else:
                    waiting.append(marker)
            self._flushes = waiting

    def _online(self) -> None:
        if self.offline_since is not None:
            log.warning("lineage: the server answers again; sending the spool")
        self.offline_since, self._delay = None, 0.0

    def _offline(self, answer: Any) -> None:
        if self.offline_since is None:
            self.offline_since = time.monotonic()
            log.warning("lineage: the server did not take a batch (%s); keeping it in the spool "
                        "and retrying", answer.status or "no answer")
        self._delay = max(answer.retry_after, min(2.0, max(0.05, self._delay * 2)))
        self._resume_at = time.monotonic() + self._delay


def _error_classes() -> dict[str, type[LineageError]]:
    found: dict[str, type[LineageError]] = {}
    todo: list[type[LineageError]] = [LineageError]
    while todo:
        kind = todo.pop()
        found.setdefault(kind.__name__, kind)
        todo.extend(kind.__subclasses__())
    return found


def rebuild(data: dict[str, Any]) -> LineageError:
    """The error a server answer describes, as the class it names when it is ours."""
    kind = _error_classes().get(str(data.get("type")), LineageError)
    message = str(data.get("message", "refused by the server"))
    error = kind.__new__(kind)
    Exception.__init__(error, message)
    error.field = data.get("field")  # type: ignore[attr-defined]
    error.rule = message  # type: ignore[attr-defined]
    error.value = None  # type: ignore[attr-defined]
    return error
