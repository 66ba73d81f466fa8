"""``JobQueue``: jobs run one at a time, in order, on one background daemon thread.

The thread starts on the first ``put`` and ends after ``idle_exit_s`` with nothing to do (a
later ``put`` starts a new one), so an idle tracker holds no thread. ``put``, ``drain`` and
``close`` may be called from any thread, including from a job. A job that raises never reaches
whoever queued it: the first failure is logged, every failure is appended to ``errors``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable

Job = Callable[[], object]


class JobQueue:
    """A lazily started, idle-exiting worker thread named ``name`` (module doc).

    ``label`` names the work in the log line of the first failure, on ``log``.
    """

    def __init__(self, name: str, *, label: str, idle_exit_s: float, log: logging.Logger) -> None:
        self.name = name
        self.errors: list[BaseException] = []
        self._label = label
        self._idle_exit_s = idle_exit_s
        self._log = log
        self._jobs: deque[Job] = deque()
        self._cond = threading.Condition()
        self._unfinished = 0
        self._stopping = False
        self._thread: threading.Thread | None = None

    def put(self, job: Job) -> None:
        """Queue ``job``; does nothing once the queue is closed. Never blocks on a job."""
        with self._cond:
            if self._stopping:
                return
            self._jobs.append(job)
            self._unfinished += 1
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def drain(self, timeout: float | None = None) -> bool:
        """Wait until every queued job is done; False when ``timeout`` passed first."""
        with self._cond:
            return self._cond.wait_for(lambda: self._unfinished == 0, timeout)

    def close(self, timeout: float | None = None) -> None:
        """Drain, then stop the thread; later ``put`` calls are ignored."""
        self.drain(timeout)
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def _loop(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._jobs or self._stopping, self._idle_exit_s)
                if not self._jobs:
                    self._thread = None  # idle or stopping: a later job starts a new thread
                    return
                job = self._jobs.popleft()
            try:
                job()
            except Exception as error:  # a background job never reaches the caller's loop
                if not self.errors:
                    self._log.exception("%s failed (further failures are counted)", self._label)
                self.errors.append(error)
            finally:
                with self._cond:
                    self._unfinished -= 1
                    self._cond.notify_all()


def deadline_after(timeout: float | None) -> float | None:
    """The ``time.monotonic()`` at which ``timeout`` seconds from now end (None: never)."""
    return None if timeout is None else time.monotonic() + timeout


def seconds_left(deadline: float | None) -> float | None:
    """Seconds left until ``deadline`` (None: no deadline), never below 0."""
    return None if deadline is None else max(0.0, deadline - time.monotonic())
