"""Shared pieces of the fault-injection suite: a store that fails on command, the invariant
checks (no holes, nothing lost) and the figures the suite prints at the end."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any
from uuid import UUID

from lineage.adapters.memory import MemoryEventStore
from lineage.domain import ids

FIGURES: Counter[str] = Counter()  # cycles, faults_injected, events_lost, holes...
MAX_BLOCK_S: dict[str, float] = {}  # the longest log_step call, per scenario
# the SIGKILL test's figures, one entry per store it ran on: (store, seed, figures by phase)
KILL_FIGURES: list[tuple[str, int, dict[str, dict[str, int]]]] = []


def stored_steps(store: Any, run_id: UUID) -> list[int]:
    """The step numbers stored for ``run_id``, in stream order (read from the store itself:
    its blocks, which must cover the stream's versions 1..n with no hole)."""
    from lineage.codec.mapper import make_mapper
    from lineage.codec.step_read import BlockCodec

    codec = BlockCodec(make_mapper())
    steps: list[int] = []
    for event in store.read_stream(ids.step_stream_id(run_id)):
        try:
            block = codec.decode(event)
        except ValueError as error:
            raise AssertionError(f"step block {event.originator_version} does not decode") from error
        assert block.seq_from == len(steps) + 1, "the step stream has a hole"
        assert block.seq_to == event.originator_version
        steps.extend(block.steps)
    return steps


def check_prefix(stored: Sequence[int], logged: Sequence[int], *, scenario: str,
                 transient: bool) -> None:
    """The invariants: ``stored`` is a prefix of ``logged`` (no hole, no reordering, no copy),
    and for a transient fault all of it. Counts holes and lost events into FIGURES."""
    FIGURES["cycles"] += 1
    is_prefix = list(stored) == list(logged[:len(stored)])
    FIGURES["holes"] += 0 if is_prefix else 1
    lost = len(logged) - len(stored)
    if transient:
        FIGURES["events_lost_transient"] += lost
    else:
        FIGURES["events_lost_past_bound"] += lost
    assert is_prefix, f"{scenario}: stored steps are not a prefix of the steps logged"
    if transient:
        assert lost == 0, f"{scenario}: {lost} step(s) lost to a transient fault"


class FlakyStore(MemoryEventStore):
    """The in-memory store, failing on command: while ``failure`` is set every append (and
    every read when ``fail_reads``) raises it; ``commit_then_fail`` stores the next append and
    raises anyway (a commit whose answer was lost); ``crash_with`` raises a non-store error
    once. ``faults`` counts the failures raised."""

    def __init__(self) -> None:
        super().__init__()
        self.failure: BaseException | None = None
        self.fail_reads = False
        self.commit_then_fail: BaseException | None = None
        self.crash_with: BaseException | None = None
        self.faults = 0

    def append(self, events: Any, event_ids: Any, expect: Any = ()) -> None:
        if self.crash_with is not None:
            error, self.crash_with = self.crash_with, None
            raise error
        self._maybe_fail()
        super().append(events, event_ids, expect)
        if self.commit_then_fail is not None:
            error, self.commit_then_fail = self.commit_then_fail, None
            self.faults += 1
            raise error

    def read_stream(self, stream_id: UUID, **kwargs: Any) -> Any:
        if self.fail_reads:
            self._maybe_fail()
        return super().read_stream(stream_id, **kwargs)

    def _maybe_fail(self) -> None:
        failure = self.failure
        if failure is not None:
            self.faults += 1
            raise failure


def wait_until(condition: Callable[[], bool], what: str, limit_s: float = 120.0) -> None:
    """Poll ``condition``; a hang guard, not a timing assertion (the limit is far past any
    bound under test)."""
    deadline = time.monotonic() + limit_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"still waiting for {what} after {limit_s}s")
        time.sleep(0.01)


class Timed:
    """Wraps a callable, keeping the longest call (recorded per scenario in MAX_BLOCK_S)."""

    def __init__(self, call: Callable[..., Any], scenario: str) -> None:
        self.call = call
        self.scenario = scenario
        self.longest = 0.0
        self.lock = threading.Lock()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        start = time.monotonic()
        try:
            return self.call(*args, **kwargs)
        finally:
            took = time.monotonic() - start
            with self.lock:
                self.longest = max(self.longest, took)
                MAX_BLOCK_S[self.scenario] = max(MAX_BLOCK_S.get(self.scenario, 0.0), took)


def train_until_refused(log_step: Callable[..., Any], first: int, logged: list[int],
                        hang_guard_s: float = 120.0) -> BaseException:
    """Log steps from ``first`` on a thread (appending each one queued to ``logged``) until a
    call raises a LineageError, and return it. ``hang_guard_s`` is far past any bound: a
    guard against a hang, not a timing assertion."""
    from lineage.errors import LineageError

    outcome: list[BaseException] = []

    def train() -> None:
        try:
            for step in range(first, 10**7):
                log_step(step, {"loss": 1.0})
                logged.append(step)
        except LineageError as error:
            outcome.append(error)

    trainer = threading.Thread(target=train)
    trainer.start()
    trainer.join(hang_guard_s)
    assert not trainer.is_alive(), "log_step stayed blocked past the give-up"
    [error] = outcome
    return error


def train_while_mending(tracker: Any, run: Any, logged: list[int], mend: Callable[[], Any], *,
                        after_retries: int, first: int, until: int, pause_s: float) -> None:
    """The training loop goes on logging from ``first`` (appending each step to ``logged``,
    never flushing) while, on another thread, the writer retries the broken store
    ``after_retries`` times and then ``mend`` mends it. Stops once mended and ``until`` is
    reached."""
    mended = threading.Event()

    def mender() -> None:
        wait_until(lambda: tracker.writer.stats.store_retries >= after_retries,
                   "the writer to retry")
        mend()
        mended.set()

    thread = threading.Thread(target=mender, daemon=True)
    thread.start()
    step = first
    while not mended.is_set() or step < until:
        run.log_step(step, {"loss": 1.0 / (step + 1)})
        logged.append(step)
        step += 1
        time.sleep(pause_s)  # a training step
    thread.join()


def children_stderr(folder: Any, pattern: str = "*.err", tail: int = 1500) -> dict[str, str]:
    """What child processes wrote to their stderr files in ``folder`` (a Path), by file name:
    the last ``tail`` characters of each one that is not empty, for a failure message."""
    texts = {path.name: path.read_text() for path in sorted(folder.glob(pattern))}
    return {name: text[-tail:] for name, text in texts.items() if text.strip()}
