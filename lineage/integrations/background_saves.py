"""Checkpoint saves finished off the training thread: write, fsync, rename, register.

The training thread takes a snapshot (a CPU copy of the state: a memory copy, no I/O) and
hands the rest to one daemon thread, which runs the saves in the order given. At most
``depth`` saves wait at a time (each holds a snapshot): a disk slower than the checkpoint rate
blocks the caller rather than filling memory. Interpreter exit waits for what was handed over.
"""

from __future__ import annotations

import atexit
import queue
import threading
import weakref
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any


class PendingSave:
    """A save handed to the background thread. ``wait()`` blocks until the file is durable
    and its registration committed (the job waits for the commit before it is done), and
    returns the ``ArtifactRef``; it raises what failed (the target is then left as it was)."""

    def __init__(self, future: Future[Any]) -> None:
        self._future = future

    def done(self) -> bool:
        return self._future.done()

    def wait(self, timeout: float | None = None) -> Any:
        return self._future.result(timeout)


class BackgroundSaves:
    """One thread running save jobs in order. Thread-safe; the thread starts on first use."""

    def __init__(self, depth: int = 2) -> None:
        self._jobs: queue.Queue[tuple[Callable[[], Any], Future[Any]]] = queue.Queue(depth)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pending: dict[Future[Any], Any] = {}  # -> its owner
        self._owners: weakref.WeakSet[Any] = weakref.WeakSet()

    def submit(self, job: Callable[[], Any], owner: Any = None) -> PendingSave:
        """Queue ``job`` (blocks while ``depth`` jobs wait); its value or error goes to the
        returned PendingSave. ``owner``: a run handle whose ``finish()`` is to wait for its
        saves (``finish_after``)."""
        future: Future[Any] = Future()
        with self._lock:
            self._pending[future] = owner
            if owner is not None and owner not in self._owners:
                self._owners.add(owner)
                owner.finish_after(lambda: self.wait(owner=owner))
            if self._thread is None or not self._thread.is_alive():
                if self._thread is None:  # after the tracker's own exit hook: runs before it
                    atexit.register(self.wait, 300)
                self._thread = threading.Thread(target=self._run, name="lineage-checkpoint-saves",
                                                daemon=True)
                self._thread.start()
        future.add_done_callback(self._forget)
        self._jobs.put((job, future))
        return PendingSave(future)

    def wait(self, timeout: float | None = None, owner: Any = None) -> None:
        """Block until every save handed over so far (of ``owner`` only, when given) has
        finished (each may have failed: its own PendingSave says so)."""
        with self._lock:
            pending = [future for future, of in self._pending.items()
                       if owner is None or of is owner]
        for future in pending:
            future.exception(timeout)

    def _forget(self, future: Future[Any]) -> None:
        with self._lock:
            self._pending.pop(future, None)

    def _run(self) -> None:
        while True:
            job, future = self._jobs.get()
            try:
                future.set_result(job())
            except BaseException as error:  # handed to the caller through the future
                future.set_exception(error)


SAVES = BackgroundSaves()
