"""The writer adds the steps between two commands of a batch in one go when they are all of one
run, and one by one otherwise: both must store the same thing, keep the log's order with the
commands, and refuse a run's steps one by one (each counted) when the run is refused."""

from __future__ import annotations

from typing import Any

import pytest

import lineage
from lineage.testing import memory_tracker


def held_tracker() -> Any:
    """A tracker whose writer commits only on flush: one batch holds everything logged."""
    return memory_tracker(batch_size=100_000, batch_interval_s=3600.0, queue_size=100_000)


def test_runs_of_one_run_mixed_runs_and_commands_in_one_batch_keep_their_order() -> None:
    tracker = held_tracker()
    try:
        a, b = tracker.start_run("a"), tracker.start_run("b")
        for step in range(3):  # one run between commands: added in one go
            a.log_step(step, {"loss": 1.0 + step})
        a.log_eval(2, {"acc": 0.5})
        for step in range(3, 6):  # two runs side by side: one by one
            a.log_step(step, {"loss": 1.0 + step})
            b.log_step(step, {"loss": 2.0 + step})
        b.log_step(6, {"loss": 8.0}, epoch=1)
        tracker.flush()
        assert [s.step for s in tracker.steps(a.id)] == [0, 1, 2, 3, 4, 5]
        assert [s.metrics["loss"] for s in tracker.steps(a.id)] == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
        assert [(s.step, s.epoch) for s in tracker.steps(b.id)] == [
            (3, None), (4, None), (5, None), (6, 1)]
        kinds = [type(e).__name__ for e in tracker.run_events(a.id)]
        assert kinds.index("EvaluationRecorded") == kinds.index("StepRecorded") + 3
        assert a.max_step == 5 and b.max_step == 6
    finally:
        tracker.close()


def test_every_step_of_a_refused_run_in_one_batch_is_counted_lost() -> None:
    tracker = held_tracker()
    try:
        run = tracker.start_run("finished elsewhere")
        tracker.flush()
        stale = tracker.run_handle(run.id)  # a second handle: it does not know of the finish
        run.finish("completed").wait(30)
        for step in range(4):
            stale.log_step(step, {"loss": 1.0})
        with pytest.raises(lineage.WriterError) as error:
            tracker.flush()
        assert error.value.lost == 4
        assert tracker.steps(run.id) == []
    finally:
        tracker.close()
