"""Events a read model cannot apply are quarantined, and nothing else stops (issue 9).

Hostile events go straight into the store through its adapter, past validation: a step and an
artifact size beyond 64 bits (SQLite: ``OverflowError``, PostgreSQL: ``bigint out of range``),
an unknown topic, a payload that does not decode. Every query, the CLI, a rebuild and a
follower still work, ``project status`` lists each skipped (read model, position) with its
reason, later events are applied, and a rebuild gives the same rows and the same list.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from eventsourcing.persistence import StoredEvent
from sqlalchemy import select

import lineage
from lineage.cli.main import main
from lineage.codec.dispatch import topic_of
from lineage.codec.step_read import BlockCodec
from lineage.domain import Artifact, Run, ids
from lineage.projections.tables import metadata, quarantine
from lineage.projections.tables import traces as traces_table

MakeTracker = Callable[..., Any]
ALL = {"traces", "registry", "edges", "audit", "step_metrics"}
# Which read models each poison defeats.
EXPECTED = {"huge_step": {"traces", "step_metrics"}, "huge_size": {"registry"},
            "unknown_topic": ALL, "garbage": ALL}


def _copy(stored: StoredEvent, *, originator_id: Any = None, version: int | None = None,
          topic: str | None = None, **changes: Any) -> StoredEvent:
    """``stored`` with a new event id, and ``changes`` to its JSON state."""
    state = json.loads(stored.state)
    state["event_id"] = {"_type_": "uuid_hex", "_data_": uuid.uuid4().hex}
    state.update(changes)
    return StoredEvent(originator_id or stored.originator_id,
                       version if version is not None else stored.originator_version,
                       topic or stored.topic, json.dumps(state).encode())


def inject_poison(tracker: lineage.Tracker, run_id: uuid.UUID) -> dict[str, int]:
    """Append the four hostile events (after ``run_id``'s last step and its first artifact's
    registration); returns their notification ids by name."""
    tracker.flush()
    store = tracker.store
    stream = ids.step_stream_id(run_id)
    last = BlockCodec(tracker.mapper).decode(store.read_stream(stream, desc=True, limit=1)[0])
    # A step stored one to a row (the layout before blocks), numbered beyond 64 bits.
    huge = last.decoded(last.count - 1)._replace(seq=last.seq_to + 1, step=2**63,
                                                 event_id=str(uuid.uuid4()))
    registered = next(note for note in store.read_log(1, 10_000)
                      if note.topic == topic_of(Artifact.Registered))
    poison = {
        "huge_step": tracker.mapper.to_stored_event(huge.as_event(stream)),
        "huge_size": _copy(registered, originator_id=uuid.uuid4(), version=1, size=2**70),
        "unknown_topic": StoredEvent(uuid.uuid4(), 1, "lineage.domain.gone:Vanished", b"{}"),
        "garbage": StoredEvent(uuid.uuid4(), 1, topic_of(Run.Finished), b"\x00not json"),
    }
    placed = {}
    for name, event in poison.items():
        store.append([event], [str(uuid.uuid4())])
        placed[name] = store.max_position()
    return placed


def record_with_poison(tracker: lineage.Tracker) -> tuple[Any, dict[str, int]]:
    """A run with steps and a checkpoint, the poison, then more steps and events after it."""
    data = tracker.register_artifact("hf://datasets/org/mix", type="dataset")
    run = tracker.start_run("poisoned", inputs=[data])
    for step in range(1, 31):
        run.log_step(step, {"loss": 1.0 / step})
    run.save_checkpoint("tinker://poisoned/weights/step-30", step=30)
    placed = inject_poison(tracker, run.id)
    for step in range(31, 41):
        run.log_step(step, {"loss": 1.0 / step})
    run.save_checkpoint("tinker://poisoned/weights/step-40", step=40)
    run.finish("completed")
    tracker.flush()
    return run, placed


def expected_quarantine(placed: dict[str, int]) -> set[tuple[str, int]]:
    return {(model, placed[name]) for name, models in EXPECTED.items() for model in models}


def listing(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """A quarantine list without ``quarantined_at`` (the one column a rebuild changes)."""
    return [tuple(value for key, value in row.items() if key != "quarantined_at") for row in rows]


def dump(engine: Any) -> dict[str, list[tuple[Any, ...]]]:
    """Every read-model row (quarantine without its times), for live == rebuild checks."""
    with engine.connect() as conn:
        found = {table.name: [tuple(row) for row in conn.execute(
            select(table).order_by(*table.primary_key.columns))]
            for table in metadata.sorted_tables if table is not quarantine}
        found[quarantine.name] = listing([dict(row._mapping) for row in conn.execute(
            select(quarantine).order_by(quarantine.c.read_model, quarantine.c.position))])
    return found


def test_poison_is_quarantined_and_everything_else_applied(durable_url: str,
                                                           make_tracker: MakeTracker) -> None:
    tracker = make_tracker(durable_url)
    run, placed = record_with_poison(tracker)
    # Every query catches up first: none of them fails.
    assert {a.uri for a in tracker.artifacts()} >= {"tinker://poisoned/weights/step-40"}
    trace = tracker.trace(run.id)
    assert trace["trace"]["status"] == "completed"
    events = [n for n in tracker.store.read_log(1, 10_000) if not BlockCodec.is_step(n.topic)]
    audited = tracker.audit(include_steps=True, limit=1000)
    assert len([row for row in audited if row["kind"] != "run.step_recorded"]) == len(events) - 2
    assert len(audited) == len(events) - 2 + 40  # 2 undecodable; the huge step is skipped
    viewed = tracker.run(run.id)
    assert viewed.steps == 40 and viewed.last_step == 40  # the steps after the poison count
    assert [step for step, _ in tracker.metric_history(run.id, "loss")] == list(range(1, 41))
    skipped = tracker.quarantined()
    assert {(row["read_model"], row["position"]) for row in skipped} == expected_quarantine(placed)
    by_key = {(row["read_model"], row["position"]): row for row in skipped}
    step_row = by_key["step_metrics", placed["huge_step"]]
    assert step_row["topic"].endswith(":StepRecorded") and step_row["event_id"]
    assert step_row["originator_id"] == str(ids.step_stream_id(run.id))
    assert ("OverflowError" in step_row["reason"] or "out of range" in step_row["reason"])
    assert by_key["audit", placed["unknown_topic"]]["reason"].startswith("cannot decode: ")
    assert by_key["audit", placed["garbage"]]["event_id"] is None
    assert [row["read_model"] for row in tracker.quarantined("registry")] == ["registry"] * 3
    with pytest.raises(lineage.ValidationError, match="read_model"):
        tracker.quarantined("nope")
    statuses = {s.name: s for s in tracker.views.runner.status()}
    assert {name: s.quarantined for name, s in statuses.items()} == {
        "traces": 3, "registry": 3, "edges": 2, "audit": 2, "step_metrics": 3}
    assert all(s.lag == 0 for s in statuses.values())


def test_rebuild_and_follow_give_the_same_rows_and_quarantine(durable_url: str,
                                                              make_tracker: MakeTracker) -> None:
    tracker = make_tracker(durable_url)
    _, placed = record_with_poison(tracker)
    views = tracker.views
    views.runner.catch_up()
    live = dump(views.engine)
    assert {(row[0], row[1]) for row in live["lineage_quarantine"]} == expected_quarantine(placed)
    views.runner.rebuild()
    assert dump(views.engine) == live
    views.runner.rebuild(["registry"])
    assert dump(views.engine) == live
    for size in (1, 3, 7):  # other batch boundaries: the poison lands anywhere in a batch
        views.runner.batch_size = size
        views.runner.rebuild()
        assert dump(views.engine) == live


def test_a_follower_goes_past_the_poison(durable_url: str, make_tracker: MakeTracker) -> None:
    tracker = make_tracker(durable_url)
    _, placed = record_with_poison(tracker)
    runner = tracker.views.runner
    stop = threading.Event()
    applied: list[int] = []

    def once(count: int) -> None:
        applied.append(count)
        stop.set()

    runner.follow(stop, poll_s=0.01, on_batch=once)
    assert applied == [len(tracker.store.read_log(1, 10_000))]  # every event, poison too
    assert {(row["read_model"], row["position"])
            for row in runner.quarantined()} == expected_quarantine(placed)


def test_the_cli_works_over_poison(sqlite_url: str, make_tracker: MakeTracker,
                                   capsys: pytest.CaptureFixture[str],
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    tracker = make_tracker(sqlite_url)
    run, placed = record_with_poison(tracker)
    tracker.close()
    for argv in (["artifacts"], ["trace", str(run.id)], ["audit", "--steps", "--limit", "500"],
                 ["runs"], ["project", "rebuild"]):
        assert main(["--db", sqlite_url, *argv]) == 0, argv
    capsys.readouterr()
    assert main(["--db", sqlite_url, "project", "status", "--json"]) == 0
    statuses = {s["name"]: s for s in json.loads(capsys.readouterr().out)}
    assert statuses["step_metrics"]["quarantined"] == 3
    assert [(q["position"], q["reason"].split(":")[0]) for q in statuses["step_metrics"]["quarantine"]] == [
        (placed["huge_step"], "OverflowError"), (placed["unknown_topic"], "cannot decode"),
        (placed["garbage"], "cannot decode")]
    assert main(["--db", sqlite_url, "project", "status"]) == 0
    out = capsys.readouterr().out
    assert "quarantined" in out
    assert (f"registry: skipped position {placed['huge_size']} "
            f"({topic_of(Artifact.Registered)}): OverflowError") in out
    # The OTLP exporter skips (and names) the event it cannot read, and reaches the head.
    assert main(["--db", sqlite_url, "export", "otlp", "--dry-run"]) == 0
    err = capsys.readouterr().err
    assert f"skipped 1 event(s) it cannot turn into spans: position {placed['garbage']} " in err


def test_a_systemic_failure_is_raised_not_quarantined(durable_url: str,
                                                      make_tracker: MakeTracker) -> None:
    """A database failure (here: a table gone) is not the event's fault: it propagates, and
    nothing is skipped; once repaired, the same events apply."""
    tracker = make_tracker(durable_url)
    run = tracker.start_run("r")
    run.log_step(1, {"loss": 1.0})
    tracker.flush()
    views = tracker.views
    views.runner.catch_up()
    run.log_step(2, {"loss": 0.5})
    tracker.flush()
    with views.engine.begin() as conn:
        traces_table.drop(conn)
    with pytest.raises(Exception, match=r"no such table|does not exist"):
        views.runner.catch_up()
    assert views.runner.quarantined() == []
    views.runner.rebuild(["traces"])
    assert tracker.run(run.id).steps == 2 and tracker.quarantined() == []
