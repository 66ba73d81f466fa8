"""One read path (DESIGN §10): queries read the read models, never a replay or a walk of the log.

A spy between the tracker and its store records every read. Once the projections are at the
head, ``runs``, ``run``, ``artifact(s)``, ``resolve`` and a monitor poll read no stream at all,
and ``run_history`` (``lineage runs show``) reads the run's own stream and the two ends of its
step stream, whatever the number of steps.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

import lineage
from lineage import LocalRunStatusSource
from lineage.adapters.memory import MemoryEventStore
from lineage.application.run_history import run_history
from lineage.bootstrap import open_store
from lineage.domain import ids
from lineage.errors import RunNotFoundError, ValidationError


class SpyStore:
    """An EventStore that records the stream and log reads it passes on."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.streams: list[tuple[UUID, int | None]] = []  # (stream, limit)
        self.log_reads = 0

    def read_stream(self, stream_id: UUID, **options: Any) -> Any:
        self.streams.append((stream_id, options.get("limit")))
        return self.inner.read_stream(stream_id, **options)

    def read_log(self, start: int, limit: int, topics: Any = ()) -> Any:
        self.log_reads += 1
        return self.inner.read_log(start, limit, topics)

    def forget(self) -> None:
        self.streams.clear()
        self.log_reads = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest.fixture(params=["memory", "sqlite"])
def spied(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Any, SpyStore]]:
    inner = MemoryEventStore() if request.param == "memory" else open_store(str(tmp_path / "s.db"))
    spy = SpyStore(inner)
    with lineage.Tracker(store=spy) as tracker:  # type: ignore[arg-type]
        yield tracker, spy


def _record(tracker: Any, tmp_path: Path, steps: int = 500) -> tuple[Any, Any]:
    run = tracker.start_run("long")
    for step in range(steps):
        run.log_step(step, {"loss": 1.0})
    path = tmp_path / "ckpt.bin"
    path.write_bytes(b"weights")
    ref = run.save_checkpoint(path, step=steps - 1).wait()
    with tracker.start_run("short") as short:
        short.log_step(0, {"loss": 2.0})
    tracker.flush()
    tracker.runs()  # the projections reach the head
    return run, ref


def test_queries_read_no_stream_once_caught_up(spied: tuple[Any, SpyStore], tmp_path: Path) -> None:
    tracker, spy = spied
    run, ref = _record(tracker, tmp_path)
    spy.forget()
    views = tracker.runs()
    assert [v.name for v in views] == ["long", "short"] and views[0].steps == 500
    assert tracker.run(run.id).checkpoints == [(ref.id, 499)]
    assert tracker.artifact(ref.id).run_id == run.id
    assert [a.id for a in tracker.artifacts(type="checkpoint")] == [ref.id]
    assert tracker.resolve(str(run.id)[:6], "run") == run.id
    assert LocalRunStatusSource(tracker, stale_after_s=3600).poll() == []
    assert spy.streams == [] and spy.log_reads <= 6  # catch-up looks for new events, no more


def test_run_history_reads_the_two_ends_of_the_step_stream(spied: tuple[Any, SpyStore],
                                                          tmp_path: Path) -> None:
    tracker, spy = spied
    run, _ = _record(tracker, tmp_path)
    spy.forget()
    history = tracker.run_history(run.id, steps=3)
    steps = [event.step for _, event in history if type(event).__name__ == "StepRecorded"]
    assert steps == [0, 1, 2, 497, 498, 499]
    positions = [position for position, _ in history]
    assert positions == sorted(positions)  # in log order; the steps of one block share its position
    assert len({p for p, e in history if type(e).__name__ == "StepRecorded"}) == 1  # one block
    step_reads = [limit for stream, limit in spy.streams if stream == ids.step_stream_id(run.id)]
    assert step_reads == [3, 3] and spy.log_reads == 0
    assert type(tracker.run_events(run.id, steps=False)[0]).__name__ == "Started"


def test_run_history_matches_the_full_event_list(spied: tuple[Any, SpyStore], tmp_path: Path) -> None:
    tracker, _ = spied
    run, _ = _record(tracker, tmp_path, steps=7)
    full = tracker.run_events(run.id)
    assert [e for _, e in tracker.run_history(run.id, steps=100)] == full
    assert [e for _, e in tracker.run_history(run.id)] == full


def test_a_page_of_the_history_is_that_slice_of_the_whole(spied: tuple[Any, SpyStore]) -> None:
    """Pages found from positions alone (``lineage.application.run_history``): every window,
    across blocks and the run's own events between them, is the slice of the whole history."""
    tracker, _ = spied
    run = tracker.start_run("paged")
    for block in range(4):  # four blocks of 5 steps, an evaluation after each
        for step in range(block * 5, block * 5 + 5):
            run.log_step(step, {"loss": 1.0})
        tracker.flush()
        run.log_eval(block * 5 + 4, {"val_loss": 0.5})
    run.finish()
    tracker.flush()
    store, codec, mapper = tracker.store, tracker.blocks, tracker.mapper  # the ReadAPI
    for steps in (None, 0, 3, 8, 30):
        whole = tracker.run_history(run.id, steps=steps)
        for offset in range(len(whole) + 1):
            for limit in (1, 4, 7):
                page = run_history(store, codec, mapper, run.id, steps, offset, limit)
                assert [(p, e.originator_version, type(e)) for p, e in page] == [
                    (p, e.originator_version, type(e)) for p, e in whole[offset:offset + limit]]


def test_resolve_accepts_prefixes_with_or_without_dashes(make_tracker: Any) -> None:
    tracker = make_tracker("memory://")
    run = tracker.start_run("r", run_id="0123abcd-ef01-4234-8567-89abcdef0123")
    other = tracker.start_run("s", run_id="0123abcd-ef99-4234-8567-89abcdef0123")
    assert tracker.resolve("0123ABCD-EF01", "run") == run.id
    assert tracker.resolve("0123abcdef01", "run") == run.id
    assert tracker.resolve(str(other.id), "run") == other.id
    with pytest.raises(ValidationError, match="matches more than one run"):
        tracker.resolve("0123abcd", "run")
    with pytest.raises(RunNotFoundError):
        tracker.resolve("fff", "run")
    with pytest.raises(ValidationError, match="not a run id"):
        tracker.resolve("x!", "run")
    with pytest.raises(ValidationError, match="kind"):
        tracker.resolve("0123", "everything")


def test_newest_runs_and_their_count(make_tracker: Any) -> None:
    tracker = make_tracker("memory://")
    for index in range(5):
        tracker.start_run(f"r{index}", occurred_at=f"2026-01-0{index + 1}T00:00:00Z").finish()
    assert tracker.run_count() == 5 and tracker.run_count("completed") == 5
    assert [v.name for v in tracker.runs(newest=2)] == ["r3", "r4"]
    assert [v.name for v in tracker.runs(newest=9)] == ["r0", "r1", "r2", "r3", "r4"]
    with pytest.raises(ValidationError, match="newest"):
        tracker.runs(newest=0)


def test_the_monitor_looks_only_at_runs_that_may_need_it(make_tracker: Any) -> None:
    tracker = make_tracker("memory://")
    tracker.start_run("done").finish()
    running = tracker.start_run("running")
    running.log_step(0, {"loss": 1.0})
    corrupted = tracker.start_run("corrupted")
    corrupted.record_failure("backend", corrupted=True).wait()
    retryable = tracker.start_run("retryable")
    retryable.record_failure("timeout", retryable=True)
    retryable.finish("failed").wait()
    fatal = tracker.start_run("fatal")
    fatal.record_failure("bug", retryable=False)
    fatal.finish("failed").wait()
    assert [v.name for v in tracker.watched_runs()] == ["running", "corrupted", "retryable"]
    signals = LocalRunStatusSource(tracker, stale_after_s=3600).poll()
    assert {s.run_id for s in signals} == {corrupted.id, retryable.id}
