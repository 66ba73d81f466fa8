"""Steps in the trace read model, from step blocks (issue 10).

The trace projection folds each stored block of steps in by its columns
(``lineage.projections.step_rollup``), and the runner cuts the log into batches by
notifications and by steps (``lineage.projections.batching``). These tests hold the rows to
what the steps say, whatever the blocks and the batches: a rebuild in batches of any size gives
every table identical, a long run whose step groups are cut across blocks (with a resume,
repeated step numbers and steps stored one to a row by the older layout) has exactly the
``train steps`` spans its steps define, and a batch holds about as many steps as it may. The
CLI writes a trace's JSON as it reads the spans, with the bytes of the trace written whole.
"""

from __future__ import annotations

import bisect
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import pytest
from sqlalchemy import select

import lineage
from lineage.cli import jsonout
from lineage.cli.main import main
from lineage.codec.step_read import BlockCodec
from lineage.domain.ids import step_stream_id
from lineage.domain.steps import StepRecorded
from lineage.projections.batching import BATCH, BATCH_STEPS, batches, steps_in
from lineage.projections.decoding import loads, numbers
from lineage.projections.tables import spans, traces
from lineage.spans import identity
from lineage.timestamps import iso
from tests.integration.test_read_models import dump, record_corruption_scenario

MakeTracker = Callable[..., Any]
T0 = datetime(2025, 1, 1, tzinfo=UTC)
CHUNKS = (1, 37, 150, 263, 99, 100, 2, 401, 55)  # steps logged between flushes, cycled


class Logged(NamedTuple):
    seq: int
    step: int
    at: str
    metrics: dict[str, float]


class StepLog:
    """Logs a run's steps in chunks, one flush after each (so blocks end there, at the
    latest), and remembers every step as stored: its stream version, number, time, metrics."""

    def __init__(self, tracker: lineage.Tracker) -> None:
        self.tracker = tracker
        self.logged: dict[str, list[Logged]] = {}
        self.clock = 0

    def log(self, run: Any, steps: list[int]) -> None:
        mine = self.logged.setdefault(str(run.id), [])
        chunk = 0
        while steps:
            size = CHUNKS[chunk % len(CHUNKS)]
            for step in steps[:size]:
                self.clock += 1
                moment = T0 + timedelta(milliseconds=self.clock)
                metrics = {"loss": 1.0 / (self.clock + 1), "lr": 1e-4}
                if self.clock % 3:
                    metrics["grad_norm"] = float(self.clock)
                run.log_step(step, metrics, occurred_at=moment)
                mine.append(Logged(len(mine) + 1, step, iso(moment), metrics))
            self.tracker.flush()
            steps, chunk = steps[size:], chunk + 1

    def log_legacy(self, run: Any, steps: list[int]) -> None:
        """Steps stored one to a row in the older layout (the library's JSON), straight into
        the run's step stream after its last version."""
        mine = self.logged[str(run.id)]
        store, mapper = self.tracker.store, self.tracker.mapper
        for step in steps:
            self.clock += 1
            moment = T0 + timedelta(milliseconds=self.clock)
            metrics = {"loss": 0.5, "legacy": float(step)}
            event = StepRecorded(  # type: ignore[call-arg]
                originator_id=step_stream_id(run.id), originator_version=len(mine) + 1,
                timestamp=moment, run_id=run.id, step=step, epoch=None, metrics=metrics,
                durations=None, tokens=None, resources=None, event_id=uuid.uuid4(),
                occurred_at=moment, occurred_at_raw=None, source="test", tenant_id="default",
                actor="test")
            store.append([mapper.to_stored_event(event)], [event.event_id.hex])
            mine.append(Logged(len(mine) + 1, step, iso(moment), metrics))


def expected_spans(run_id: str, logged: list[Logged], ends: dict[int, int]) -> dict[int, dict[str, Any]]:
    """The ``train steps`` spans the steps define, by group (``ends``: each stored row's last
    version -> its position)."""
    versions = sorted(ends)
    found: dict[int, dict[str, Any]] = {}
    for group in sorted({identity.step_group(s.seq) for s in logged}):
        first, last = identity.step_group_versions(group)
        mine = [s for s in logged if first <= s.seq <= last]
        holder = versions[bisect.bisect_left(versions, mine[-1].seq)]
        found[group] = {
            "step_from": min(s.step for s in mine), "step_to": max(s.step for s in mine),
            "started_at": mine[0].at, "finished_at": mine[-1].at, "metrics": mine[-1].metrics,
            "attributes": {"count": len(mine), "seq_from": mine[0].seq, "seq_to": mine[-1].seq},
            "position": ends[holder], "parent_span_id": _run_span(run_id)}
    return found


def _run_span(run_id: str) -> str:
    return identity.lineage_span_id(uuid.UUID(run_id), identity.run_span_id(uuid.UUID(run_id)))


def stored_spans(tracker: lineage.Tracker, run_id: str) -> dict[int, dict[str, Any]]:
    with tracker.views.engine.connect() as conn:
        rows = conn.execute(select(spans).where(spans.c.trace_id == run_id,
                                                spans.c.kind == "steps")).all()
    found = {}
    for row in rows:
        attributes = loads(row.attributes)
        group = identity.step_group(attributes["seq_from"])
        assert row.id == identity.lineage_span_id(
            uuid.UUID(run_id), identity.step_group_span_id(uuid.UUID(run_id), group))
        assert (row.name, row.status) == ("train steps", "ok")
        found[group] = {"step_from": row.step_from, "step_to": row.step_to,
                        "started_at": row.started_at, "finished_at": row.finished_at,
                        "metrics": numbers(row.metrics), "attributes": attributes,
                        "position": row.position, "parent_span_id": row.parent_span_id}
    return found


def block_layout(tracker: lineage.Tracker, run_id: str) -> dict[int, tuple[int, int]]:
    """Each stored row of the run's step stream: last version -> (first version, position)."""
    store, codec = tracker.store, BlockCodec(tracker.mapper)
    stream = step_stream_id(uuid.UUID(run_id))
    positions = store.positions(stream)
    return {row.originator_version: (codec.decode(row).seq_from, positions[row.originator_version])
            for row in store.read_stream(stream)}


def record_long_run(tracker: lineage.Tracker) -> tuple[StepLog, Any, Any]:
    """A run of 1,202 steps in blocks of many sizes, with repeated step numbers and legacy
    rows, that fails and is resumed from its checkpoint into a run that redoes steps."""
    log = StepLog(tracker)
    run = tracker.start_run("long")
    log.log(run, list(range(1, 801)))
    checkpoint = run.save_checkpoint("tinker://long/weights/step-800", step=800).wait()
    log.log(run, [*range(801, 901), *range(850, 1001)])  # a loop redoes 850-900
    log.log_legacy(run, [1001, 1002, 1002])
    log.log(run, list(range(1003, 1151)))
    run.record_failure("OOM", "CUDA out of memory", retryable=True, step=1150)
    resumed = tracker.resume_run(run, checkpoint)
    log.log(resumed, list(range(801, 1201)))  # steps 801-1150 again, in the new run
    resumed.finish("completed")
    run.finish("superseded", superseded_by=resumed)
    tracker.flush()
    return log, run, resumed


def test_a_long_run_has_the_step_spans_its_steps_define(any_url: str,
                                                        make_tracker: MakeTracker) -> None:
    tracker = make_tracker(any_url)
    log, run, resumed = record_long_run(tracker)
    tracker.views.runner.catch_up()
    # The first run's layout has what this test is about: blocks cut across groups, groups
    # that several blocks share, rows of one step.
    layout = block_layout(tracker, str(run.id))
    assert any(identity.step_group(first) != identity.step_group(last)
               for last, (first, _) in layout.items())
    assert len(layout) > len({identity.step_group(s.seq) for s in log.logged[str(run.id)]})
    assert [last for last, (first, _) in layout.items() if first == last]
    for handle in (run, resumed):
        run_id = str(handle.id)
        layout = block_layout(tracker, run_id)
        logged = log.logged[run_id]
        ends = {last: position for last, (_, position) in layout.items()}
        assert stored_spans(tracker, run_id) == expected_spans(run_id, logged, ends)
        with tracker.views.engine.connect() as conn:
            row = conn.execute(select(traces).where(traces.c.id == run_id)).one()
        assert (row.steps, row.last_step) == (len(logged), logged[-1].step)
        assert numbers(row.last_metrics) == logged[-1].metrics
    graph = tracker.trace(run.id)
    assert sum(s["kind"] == "steps" for s in graph["spans"]) == 13  # versions 1..1202


def test_a_rebuild_gives_the_same_rows_whatever_the_batches(durable_url: str,
                                                           make_tracker: MakeTracker) -> None:
    tracker = make_tracker(durable_url)
    record_corruption_scenario(tracker)
    record_long_run(tracker)
    runner = tracker.views.runner
    runner.catch_up()
    live = dump(tracker.views.engine)
    assert len(live["lineage_spans"]) > 30
    # (notifications, steps) per batch at most: one notification, one block, a few blocks, ...
    for size, steps in ((1, BATCH_STEPS), (2, BATCH_STEPS), (7, BATCH_STEPS), (50, BATCH_STEPS),
                        (BATCH, 1), (BATCH, 150), (BATCH, 500), (3, 40), (BATCH, BATCH_STEPS)):
        runner.batch_size, runner.batch_steps = size, steps
        runner.rebuild()
        rebuilt = dump(tracker.views.engine)
        for table, rows in live.items():
            assert rebuilt[table] == rows, f"{table} differs after a rebuild in batches of {size}, {steps}"


@pytest.mark.parametrize("max_steps", [1, 150, 500, BATCH_STEPS])
def test_batches_hold_about_max_steps(sqlite_url: str, make_tracker: MakeTracker,
                                      max_steps: int) -> None:
    tracker = make_tracker(sqlite_url)
    record_long_run(tracker)
    store = tracker.store
    head = store.max_position()
    cut = list(batches(store, 1, head, max_notifications=64, max_steps=max_steps))
    assert [n.id for batch in cut for n in batch] == [n.id for n in store.read_log(1, head)]
    codec = BlockCodec(tracker.mapper)
    for batch in cut:
        counts = [steps_in(note) for note in batch]
        assert counts == [codec.decode(n).count if codec.is_step(n.topic) else 0 for n in batch]
        assert 1 <= len(batch) <= 64
        assert sum(counts[:-1]) < max_steps  # only its last notification reaches max_steps


@pytest.mark.parametrize("shape", ["lineageir", "nested"])
def test_the_cli_writes_the_trace_as_it_reads_it_with_the_same_bytes(
        durable_url: str, make_tracker: MakeTracker, capsys: pytest.CaptureFixture[str],
        shape: str) -> None:
    tracker = make_tracker(durable_url)
    _, run, _, _ = record_corruption_scenario(tracker)
    _, long_run, _ = record_long_run(tracker)
    tracker.flush()
    for handle in (run, long_run):
        whole = tracker.trace(handle.id, format=shape)
        with tracker.views.trace_stream(str(handle.id), shape=shape) as graph:
            if shape == "lineageir":
                assert not isinstance(graph["spans"], list)  # read as it is consumed
            assert jsonout.dumps(graph) == jsonout.dumps(whole)
        capsys.readouterr()
        assert main(["--db", durable_url, "trace", str(handle.id), "--json", "--format", shape]) == 0
        assert capsys.readouterr().out == jsonout.dumps(whole) + "\n"
