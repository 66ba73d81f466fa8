"""Steps stored in blocks, end to end on every store: order with commands is kept, every step
keeps its own id (derived, or the one the caller chose, which stays idempotent), and a long run
costs few bytes a step on disk."""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from typing import Any
from uuid import UUID, uuid4

from lineage.codec.step_block import STEPS_TOPIC


def log_topics(tracker: Any) -> list[tuple[str, int]]:
    """(short topic, originator version) of every stored event, in log order."""
    return [(n.topic.rsplit(":", 1)[-1], n.originator_version)
            for n in tracker.store.read_log(1, 10_000)]


def test_a_command_between_steps_closes_the_block_so_the_log_keeps_their_order(
        any_url: str, make_tracker: Callable[..., Any]) -> None:
    tracker = make_tracker(any_url, export_otlp=False)
    run = tracker.start_run("order")
    tracker.flush()
    for step in range(1, 6):
        run.log_step(step, {"loss": 1.0 / step})
    run.log_eval(5, {"acc": 0.5})
    for step in range(6, 9):
        run.log_step(step, {"loss": 1.0 / step})
    tracker.flush()
    topics = [topic for topic, _ in log_topics(tracker)]
    assert topics[-3:] == ["StepsRecorded", "Run.EvaluationRecorded", "StepsRecorded"]
    assert [v for t, v in log_topics(tracker) if t == "StepsRecorded"] == [5, 8]
    events = tracker.run_events(run.id)
    kinds = [type(e).__name__ for e in events]
    assert kinds.index("EvaluationRecorded") == kinds.index("StepRecorded") + 5
    assert [e.step for e in events if type(e).__name__ == "StepRecorded"] == list(range(1, 9))


def test_two_runs_logged_side_by_side_get_a_block_each(
        any_url: str, make_tracker: Callable[..., Any]) -> None:
    tracker = make_tracker(any_url, export_otlp=False)
    a, b = tracker.start_run("a"), tracker.start_run("b")
    tracker.flush()
    for step in range(50):
        a.log_step(step, {"loss": 1.0})
        b.log_step(step, {"loss": 2.0})
    tracker.flush()
    blocks = [n for n in tracker.store.read_log(1, 1000) if n.topic == STEPS_TOPIC]
    assert len(blocks) == 2
    for handle, loss in ((a, 1.0), (b, 2.0)):
        steps = tracker.steps(handle.id)
        assert [s.step for s in steps] == list(range(50))
        assert [s.originator_version for s in steps] == list(range(1, 51))
        assert {s.metrics["loss"] for s in steps} == {loss}


def test_every_step_has_its_own_id_and_a_chosen_id_is_idempotent(
        any_url: str, make_tracker: Callable[..., Any]) -> None:
    tracker = make_tracker(any_url, export_otlp=False)
    run = tracker.start_run("ids")
    chosen = uuid4()
    run.log_step(0, {"loss": 1.0})
    run.log_step(1, {"loss": 0.5}, event_id=chosen)
    tracker.flush()
    run.log_step(1, {"loss": 0.5}, event_id=str(chosen))  # a retry from the caller: a no-op
    run.log_step(2, {"loss": 0.25})
    tracker.flush()
    steps = tracker.steps(run.id)
    assert [s.step for s in steps] == [0, 1, 2]
    assert steps[1].event_id == chosen
    assert len({s.event_id for s in steps}) == 3
    assert all(isinstance(s.event_id, UUID) for s in steps)
    assert tracker.store.known_event_ids([chosen.hex]) == {chosen.hex}
    # Time travel and the audit see each step with its id.
    audit = tracker.audit(subject=run.id, include_steps=True, limit=100)
    assert [row["event_id"] for row in audit if row["kind"] == "run.step_recorded"] == [
        str(s.event_id) for s in steps]


def test_a_long_run_costs_few_bytes_a_step_on_disk(tmp_path: Any,
                                                  make_tracker: Callable[..., Any]) -> None:
    path = str(tmp_path / "lineage.db")
    tracker = make_tracker(path, export_otlp=False)
    run = tracker.start_run("size")
    noise = random.Random(7)
    steps = 20_000
    for step in range(steps):
        run.log_step(step, {"loss": 2.0 / (step + 1) + noise.gauss(0, 0.01),
                            "lr": 1e-4 * (1 - step / steps), "grad_norm": abs(noise.gauss(1, 0.2))},
                     epoch=step // 5000, tokens=4096)
    tracker.flush()
    assert len(tracker.metric_history(run.id, "loss")) == steps  # read models caught up
    tracker.close()
    import sqlite3

    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.execute("VACUUM")
    size = os.path.getsize(path)
    # Three noisy float64 metrics are 24 bytes a step; the bound is 200 (today ~1,400).
    assert size / steps < 100, size / steps


def test_a_block_holds_at_most_a_thousand_steps(make_tracker: Callable[..., Any]) -> None:
    tracker = make_tracker("memory://", export_otlp=False, batch_size=5000)
    run = tracker.start_run("big commits")
    tracker.flush()
    for step in range(2500):
        run.log_step(step, {"loss": 1.0})
    tracker.flush()
    blocks = [n for n in tracker.store.read_log(1, 1000) if n.topic == STEPS_TOPIC]
    assert [n.originator_version for n in blocks] == [1000, 2000, 2500]
    assert [s.step for s in tracker.steps(run.id)] == list(range(2500))
