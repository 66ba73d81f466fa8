"""Heartbeats for the runs this process is training, so a monitor can tell a crash from a pause.

A run's steps already prove its process is alive; ``Heartbeats`` adds an event only when a
watched run is idle: every ``interval_s`` it looks at each open run this process has logged a
step to, and queues a ``HeartbeatRecorded`` (through the writer, on the run's heartbeat stream)
for those whose last step has not changed since the previous look. Nothing runs on the training
thread and nothing is added to ``log_step``. A run never stepped here (a run created for a
recovery, waiting for its trainer) gets no heartbeat: that process is not training it.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from typing import TYPE_CHECKING, Any, Protocol
from uuid import UUID

from lineage.application.unit_of_work import UnitOfWork
from lineage.domain import ids
from lineage.domain.liveness import HeartbeatRecorded
from lineage.errors import LineageError

if TYPE_CHECKING:
    from lineage.application.recording import Recorder

log = logging.getLogger(__name__)


def heartbeat_in(uow: UnitOfWork, run_id: UUID, pid: int, last_step: int | None) -> bool:
    """Command handler: append one heartbeat to an open run's heartbeat stream; False (and
    nothing written) when the run has finished."""
    run = uow.run(run_id)
    if run.finished:
        return False
    stream = ids.heartbeat_stream_id(run_id)
    fields: dict[str, Any] = {
        "originator_id": stream, "originator_version": uow.next_log_version(stream),
        "timestamp": uow.timestamp, "run_id": run_id, "pid": pid, "last_step": last_step,
        **uow.envelope().fields(),
    }
    uow.log(HeartbeatRecorded(**fields))
    return True


class Watched(Protocol):
    """What heartbeats look at on a run handle (``RunHandle`` provides it)."""

    id: UUID
    finished_status: str | None

    @property
    def max_step(self) -> int | None: ...


class Heartbeats:
    """Watches this process's run handles; see the module docstring. Thread-safe."""

    def __init__(self, recorder: Recorder, interval_s: float) -> None:
        self._recorder = recorder
        self.interval_s = interval_s
        self.sent = 0
        self._handles: weakref.WeakSet[Watched] = weakref.WeakSet()
        self._seen: dict[UUID, int] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def watch(self, handle: Watched) -> None:
        """Start watching ``handle`` (held weakly: a dropped handle stops beating)."""
        with self._lock:
            self._handles.add(handle)
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(target=self._loop, name="lineage-heartbeat",
                                                daemon=True)
                self._thread.start()

    def beat_idle(self) -> int:
        """Queue a heartbeat for every watched open run idle since the previous call; returns
        how many were queued. Never raises (a closed tracker simply gets none)."""
        with self._lock:
            handles = list(self._handles)
        queued = 0
        for handle in handles:
            last = handle.max_step
            if handle.finished_status is not None or last is None:
                self._seen.pop(handle.id, None)
                continue
            if self._seen.get(handle.id) == last:
                queued += self._send(handle.id, last)
            self._seen[handle.id] = last
        return queued

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.interval_s + 1)

    def _send(self, run_id: UUID, last_step: int) -> int:
        pid = os.getpid()
        recorder = self._recorder
        try:
            recorder.submit(f"heartbeat for run {run_id}",
                            lambda uow: heartbeat_in(uow, run_id, pid, last_step),
                            recorder.envelope(), background=True)
        except LineageError:  # the writer is closing: no more heartbeats
            return 0
        self.sent += 1
        return 1

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.beat_idle()
            except Exception:  # telemetry never breaks the host
                log.exception("lineage heartbeat failed")
