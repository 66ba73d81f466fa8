"""``lineage migrate`` on a store written before step blocks, on SQLite and PostgreSQL.

The store holds legacy step rows (one ``StepRecorded`` per row, written with the library's
mapper) mixed with everything else a training run records: two runs whose steps interleave in
one append, evaluations and checkpoints between batches, steps with every optional field,
caller-chosen ids, an actor change inside one append, more than a block's worth of steps in one
append, a resumed run, and new-layout steps after the legacy ones. After the migration every
step reads back equal (through ``steps``, ``run_history``, the trace and the audit), non-step
events keep their positions, the store is smaller, the read models equal a fresh rebuild, a
second run changes nothing, and caller-chosen ids still make a re-sent step a duplicate.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import lineage
from lineage.application.migration import MAX_STEPS
from lineage.bootstrap import open_step_migration
from lineage.codec.step_block import STEPS_TOPIC
from lineage.codec.steps import STEP_TOPIC
from tests.integration.test_read_models import dump
from tests.legacy_steps import LegacySteps, Step

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
BIG = MAX_STEPS + 250  # one append of more steps than a block holds


def legacy_scenario(tracker: lineage.Tracker, folder: Path) -> dict[str, Any]:
    """Record the mixed legacy store described in the module doc; returns the run ids and
    the caller-chosen step ids."""
    legacy = LegacySteps(tracker)
    a = tracker.start_run("a")
    b = tracker.start_run("b")
    chosen = [uuid4() for _ in range(6)]
    legacy.append([Step(a.id, n, {"loss": 1.0 / n, "lr": 3e-4}) for n in range(1, 31)],
                  T0 + timedelta(seconds=1))
    legacy.append([Step(run, n, {"loss": 2.0 / n}) for n in range(31, 41)
                   for run in (a.id, b.id)], T0 + timedelta(seconds=2))
    a.log_eval(40, {"accuracy": 0.5}).wait(60)
    legacy.append([Step(a.id, n, {"loss": 0.5, "grad_norm": 3}, epoch=1, tokens=4096 * n,
                        durations={"step_s": 0.25}, resources={"gpu_util": 0.9})
                   for n in range(41, 61)], T0 + timedelta(seconds=3))
    path = folder / "a-60.bin"
    path.write_bytes(b"weights at 60")
    checkpoint = a.save_checkpoint(path, step=60, includes_optimizer=True)
    checkpoint.wait(60)
    legacy.append([Step(a.id, n, {"loss": 0.25}, actor="alice" if n < 66 else "bob")
                   for n in range(61, 71)], T0 + timedelta(seconds=4))
    legacy.append([Step(b.id, n, {"loss": math.inf if n == 50 else 1.0, "nan": math.nan},
                        occurred_at_raw="1772366400.5" if n == 45 else None)
                   for n in range(41, 41 + BIG)], T0 + timedelta(seconds=5))
    a.record_failure("preempted", "node lost").wait(60)
    c = tracker.resume_run(a.id, checkpoint.id)
    legacy.append([Step(c.id, n, {"loss": 0.2, "mixed": n if n % 2 else n / 3})
                   for n in range(61, 81)], T0 + timedelta(seconds=6))
    c.log_step(81, {"loss": 0.1})  # the new layout after the legacy steps
    c.log_step(82, {"loss": 0.05})
    c.finish().wait(60)
    b.finish().wait(60)
    d = tracker.start_run("d")  # still running: its steps' ids were chosen by the caller
    tracker.flush()
    legacy.append([Step(d.id, n, {"loss": 1.0}, event_id=chosen[n - 1])
                   for n in range(1, 7)], T0 + timedelta(seconds=7))
    return {"runs": [a.id, b.id, c.id, d.id], "chosen": chosen}


def snapshot(tracker: lineage.Tracker, runs: list[UUID]) -> dict[str, Any]:
    """What users read about the runs: steps, histories (non-step positions included), traces
    and the audit."""
    found: dict[str, Any] = {"audit": tracker.audit(limit=1000)}
    for run in runs:
        found[f"steps {run}"] = [_step(e) for e in tracker.steps(run)]
        found[f"history {run}"] = [(None if type(e).__name__ == "StepRecorded" else position,
                                    _event(e)) for position, e in tracker.run_history(run)]
        found[f"trace {run}"] = _nan_free(tracker.trace(run))
    return found


def _step(e: Any) -> tuple[Any, ...]:
    return (e.event_id, e.originator_version, e.step, e.epoch, _numbers(e.metrics),
            _numbers(e.durations), e.tokens, _numbers(e.resources), e.occurred_at,
            e.occurred_at_raw, e.timestamp, e.source, e.tenant_id, e.actor, e.run_id)


def _event(e: Any) -> Any:
    return _step(e) if type(e).__name__ == "StepRecorded" else (type(e).__name__, e.event_id)


def _numbers(values: dict[str, float] | None) -> Any:
    return None if values is None else sorted((k, repr(v)) for k, v in values.items())


def _nan_free(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    if isinstance(value, dict):
        return {k: _nan_free(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_nan_free(v) for v in value]
    return value


def log_rows(tracker: lineage.Tracker) -> list[tuple[int, Any, int, str]]:
    return [(n.id, n.originator_id, n.originator_version, n.topic)
            for n in tracker.store.read_log(1, 1_000_000)]


def migrate(url: str, vacuum: bool = True) -> tuple[Any, int, int]:
    """Run a whole migration as ``lineage migrate`` does; (result, size before, size after)."""
    with open_step_migration(url) as migration:
        before = migration.size_bytes()
        done = migration.compact()
        migration.refresh()
        if vacuum:
            migration.vacuum()
        return done, before, migration.size_bytes()


def test_migration_keeps_every_step_and_compacts_the_store(durable_url: str,
                                                           tmp_path: Path) -> None:
    with lineage.Tracker(durable_url) as tracker:
        made = legacy_scenario(tracker, tmp_path)
        runs = made["runs"]
        before = snapshot(tracker, runs)
        rows_before = log_rows(tracker)
    legacy_count = sum(1 for row in rows_before if row[3] == STEP_TOPIC)
    assert legacy_count == 30 + 20 + 20 + 10 + BIG + 20 + 6

    done, size_before, size_after = migrate(durable_url)

    assert done.steps == legacy_count and done.rows_left == 0
    # groups: a 1-30 | a,b alternating (20 of one) | a 41-60 | a 61-65, 66-70 (actor) |
    # b's big append in blocks of MAX_STEPS | c 61-80
    assert done.blocks == 1 + 20 + 1 + 2 + math.ceil(BIG / MAX_STEPS) + 1 + 1
    assert size_after < size_before
    with lineage.Tracker(durable_url) as tracker:
        assert snapshot(tracker, runs) == before
        rows_after = log_rows(tracker)
        kept = {row[0]: row for row in rows_after}
        for row in rows_before:  # every other event where it was
            if row[3] != STEP_TOPIC:
                assert kept[row[0]] == row
        assert {row[3] for row in rows_after} <= {STEPS_TOPIC, *(r[3] for r in rows_before)}
        assert STEP_TOPIC not in {row[3] for row in rows_after}
        views = tracker.views
        views.runner.catch_up()
        live = dump(views.engine)
        views.runner.rebuild()
        assert dump(views.engine) == live

        # caller-chosen ids are still known: re-sending such a step stores nothing
        chosen = made["chosen"]
        assert tracker.store.known_event_ids([i.hex for i in chosen]) == {i.hex for i in chosen}
        d = tracker.run_handle(runs[3])
        for n, event_id in enumerate(chosen, start=1):
            d.log_step(n, {"loss": 1.0}, event_id=event_id)
        d.flush()
        assert len(tracker.steps(runs[3])) == len(chosen)
        rows_after = log_rows(tracker)

    again, _, _ = migrate(durable_url, vacuum=False)
    assert again.steps == 0 and again.blocks == 0
    with lineage.Tracker(durable_url) as tracker:
        assert log_rows(tracker) == rows_after
        assert snapshot(tracker, runs) == before


def test_no_block_straddles_an_exporters_position(durable_url: str) -> None:
    from lineage.bootstrap import open_positions

    with lineage.Tracker(durable_url) as tracker:
        run = tracker.start_run("exported")
        tracker.flush()
        LegacySteps(tracker).append([Step(run.id, n, {"loss": 1.0}) for n in range(1, 101)])
        positions = [n.id for n in tracker.store.read_log(1, 1000) if n.topic == STEP_TOPIC]
    exporter = positions[39]  # the exporter has sent steps 1-40
    tracked = open_positions(durable_url)
    tracked.set("otlp", exporter)
    tracked.engine.dispose()  # type: ignore[attr-defined]
    done, _, _ = migrate(durable_url, vacuum=False)
    assert (done.steps, done.blocks) == (100, 2)
    with lineage.Tracker(durable_url) as tracker:
        blocks = [(n.id, tracker.steps(run.id)[n.originator_version - 1].step)
                  for n in tracker.store.read_log(1, 1000) if n.topic == STEPS_TOPIC]
        assert blocks == [(exporter, 40), (positions[-1], 100)]
    tracked = open_positions(durable_url)
    assert tracked.get("otlp") == exporter
    tracked.engine.dispose()  # type: ignore[attr-defined]
