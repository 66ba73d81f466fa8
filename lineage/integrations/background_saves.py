"""Checkpoint saves finished off the training thread: write, fsync, rename, register.

The training thread takes a snapshot (a CPU copy of the state: a memory copy, no I/O) and
hands the rest to one daemon thread, which runs the saves in the order given. At most
``depth`` saves wait at a time (each holds a snapshot): a disk slower than the checkpoint rate
blocks the caller rather than filling memory. Interpreter exit waits for what was handed over.

A job may end by handing its last stage to someone else (``Handed``: a registration queued to
the tracker's writer, committed with the writer's next batch): the thread moves on to the next
job at once, and the save is done when that stage is. Nothing asks the writer for a commit of
its own unless someone waits (``PendingSave.wait``, ``BackgroundSaves.wait``).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import queue
import threading
import weakref
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from lineage.application.background import deadline_after, seconds_left

log = logging.getLogger(__name__)

A_SAVE = "a checkpoint save"  # what a failed save is called in its warning, unless named


@dataclass(frozen=True)
class Handed:
    """What a job returns when its last stage runs elsewhere: ``done`` resolves with the save's
    value (or error) when that stage ends; ``hurry(timeout)`` asks for it now and blocks until
    it ended (what it raises is ignored: ``done`` carries the outcome)."""

    done: Future[Any]
    hurry: Callable[[float | None], Any]


def committed(ref: Any, refused: Callable[[BaseException], None] | None = None) -> Handed:
    """The stage a job hands on once it queued a registration (``ref``: an ArtifactRef): done
    with ``ref`` when the writer commits it with its next batch, or with the error that refused
    it, after ``refused(error)`` (both on the writer thread: keep it quick). A refusal is this
    save's, not the next flush's to report."""
    done: Future[Any] = Future()

    def settle(_: BaseException | None) -> None:
        try:
            done.set_result(ref.wait())  # committed already: no wait
        except BaseException as error:  # handed to the caller through the PendingSave
            try:
                if refused is not None:
                    refused(error)
            except Exception:  # the refusal is the outcome; a failed clean-up is only logged
                log.exception("lineage: cleaning up after a refused checkpoint save failed")
            finally:
                done.set_exception(error)

    def hurry(timeout: float | None) -> None:
        deadline = deadline_after(timeout)
        with contextlib.suppress(Exception):  # the outcome is ``done``'s
            ref.wait(timeout)  # asks the writer to commit now
        done.exception(seconds_left(deadline))  # the stage ended (its callbacks ran) or timed out

    if ref.pending is None:
        settle(None)
    else:
        ref.pending.on_done(settle)
    return Handed(done, hurry)


class PendingSave:
    """A save handed to the background thread. ``wait()`` blocks until the file is durable
    and its registration committed (asking the writer to commit now rather than with its next
    batch), and returns the ``ArtifactRef``; it raises what failed (the target is then left as
    it was). ``done()``: committed or failed."""

    def __init__(self, future: Future[Any]) -> None:
        self._future = future
        self._ran = threading.Event()  # the job ran: ``_hurry`` is set when it handed a stage on
        self._hurry: Callable[[float | None], Any] | None = None
        self._stage: Future[Any] | None = None  # the handed-on stage's outcome, when one is

    def done(self) -> bool:
        return self._future.done()

    def wait(self, timeout: float | None = None) -> Any:
        deadline = deadline_after(timeout)
        self.settle(timeout)
        # The stage's own future: ``_future`` follows it through a callback that may run a
        # moment after the stage's waiters woke.
        stage = self._stage
        return (self._future if stage is None else stage).result(seconds_left(deadline))

    def settle(self, timeout: float | None = None) -> None:
        """Block until done (or ``timeout``), asking a handed-on stage to end now; raises
        nothing."""
        deadline = deadline_after(timeout)
        if self._future.done() or not self._ran.wait(timeout) or self._hurry is None:
            return
        with contextlib.suppress(Exception):  # the outcome is the future's, raised by wait()
            self._hurry(seconds_left(deadline))

    def _ran_to(self, value: Any) -> None:
        """The job returned ``value``: the save's value, or a stage handed on (``Handed``)."""
        if isinstance(value, Handed):
            self._hurry = value.hurry
            self._stage = value.done
            value.done.add_done_callback(self._settled)
        else:
            self._future.set_result(value)
        self._ran.set()

    def _failed(self, error: BaseException) -> None:
        self._future.set_exception(error)
        self._ran.set()

    def _settled(self, stage: Future[Any]) -> None:
        error = stage.exception()
        if error is None:
            self._future.set_result(stage.result())
        else:
            self._future.set_exception(error)


class BackgroundSaves:
    """One thread running save jobs in order. Thread-safe; the thread starts on first use."""

    def __init__(self, depth: int = 2) -> None:
        self._jobs: queue.Queue[tuple[Callable[[], Any], PendingSave]] = queue.Queue(depth)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        # future -> (its save, the save's owner, what it is: for the warning when it fails)
        self._pending: dict[Future[Any], tuple[PendingSave, Any, str]] = {}
        self._owners: weakref.WeakSet[Any] = weakref.WeakSet()

    def submit(self, job: Callable[[], Any], owner: Any = None,
               what: str = A_SAVE) -> PendingSave:
        """Queue ``job`` (blocks while ``depth`` jobs wait); its value or error (or, when it
        returns ``Handed``, its handed-on stage's) goes to the returned PendingSave. ``owner``:
        a run handle whose ``finish()`` is to wait for its saves (``finish_after``). A save
        that fails is also logged as a warning naming ``what``, so one nobody waits for is not
        lost in silence."""
        future: Future[Any] = Future()
        save = PendingSave(future)
        with self._lock:
            self._pending[future] = (save, owner, what)
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
        self._jobs.put((job, save))
        return save

    def wait(self, timeout: float | None = None, owner: Any = None) -> None:
        """Block until every save handed over so far (of ``owner`` only, when given) has
        finished (each may have failed: its own PendingSave says so)."""
        with self._lock:
            pending = [save for save, of, _ in self._pending.values()
                       if owner is None or of is owner]
        for save in pending:
            deadline = deadline_after(timeout)
            save.settle(timeout)
            save._future.exception(seconds_left(deadline))  # its own PendingSave reports a failure

    def _forget(self, future: Future[Any]) -> None:
        with self._lock:
            _, _, what = self._pending.pop(future, (None, None, A_SAVE))
        error = future.exception()
        if error is not None:
            log.warning("lineage: %s failed: %s: %s", what, type(error).__name__, error)

    def _run(self) -> None:
        while True:
            job, save = self._jobs.get()
            try:
                value = job()
            except BaseException as error:  # handed to the caller through the PendingSave
                save._failed(error)
            else:
                save._ran_to(value)


SAVES = BackgroundSaves()
