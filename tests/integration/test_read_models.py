"""The read models end to end through the public API, on every store (issue 3)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from sqlalchemy import insert, select

import lineage
from lineage.projections.runner import ProjectionBusyError, ProjectionRunner
from lineage.projections.tables import edges, metadata

SCHEMAS = Path(__file__).resolve().parents[2] / "projections" / "schemas"
MakeTracker = Callable[..., Any]


def record_corruption_scenario(tracker: lineage.Tracker) -> tuple[Any, Any, list[Any], Any]:
    """Checkpoints at 20 and 40, corrupted at 47, recovered from 40, resumed run to 60."""
    data = tracker.register_artifact("hf://datasets/org/sft-mix", type="dataset",
                                     checksum="sha256:" + "ab" * 32)
    run = tracker.start_run("sft", job={"model": "llama", "adapter": {"rank": 8}}, inputs=[data])
    checkpoints = []
    for step in range(1, 48):
        run.log_step(step, {"loss": 1.0 / step}, epoch=0)
        if step % 20 == 0:
            checkpoints.append(run.save_checkpoint(f"tinker://run-1/weights/step-{step}", step=step,
                                                   format="safetensors", includes_optimizer=True))
            run.log_eval(step, {"val_loss": 2.0 / step}, dataset="val")
    run.record_failure("backend_corrupted", "flagged", signal="tinker.corrupted", corrupted=True,
                       retryable=True, step=47)
    run.begin_recovery("latest").wait()
    run.select_recovery_checkpoint(checkpoints[-1], step=40, reason="latest").wait()
    new = tracker.resume_run(run, checkpoints[-1])
    run.complete_recovery(new, checkpoints[-1]).wait()
    with new:
        for step in range(41, 61):
            new.log_step(step, {"loss": 0.01})
        checkpoints.append(new.save_checkpoint("tinker://run-2/weights/step-60", step=60,
                                               includes_optimizer=True))
    return data, run, checkpoints, new


def validate(document: Any, schema: str) -> None:
    jsonschema.validate(document, json.loads((SCHEMAS / schema).read_text()))


def test_trace_of_a_recovered_run(any_url: str, make_tracker: MakeTracker) -> None:
    tracker = make_tracker(any_url)
    _, run, checkpoints, new = record_corruption_scenario(tracker)
    graph = tracker.trace(run.id)
    validate(graph, "lineageir.schema.json")
    trace = graph["trace"]
    assert (trace["status"], trace["attributes"]["job_status"]) == ("superseded", "superseded")
    assert trace["attributes"]["superseded_by"] == str(new.id)
    kinds = [span["kind"] for span in graph["spans"]]
    assert kinds.count("checkpoint") == 2 and kinds.count("evaluation") == 2
    assert kinds.count("failure") == 1 and kinds.count("recovery") == 1 and kinds.count("run") == 1
    steps = [s for s in graph["spans"] if s["kind"] == "steps"]
    assert sum(s["attributes"]["count"] for s in steps) == 47
    assert graph["metadata"]["lost_steps"] == {"after_checkpoint_step": 40, "count": 7, "from_step": 41,
                                               "to_step": 47, "resumed_as": str(new.id)}
    failure = next(s for s in graph["spans"] if s["kind"] == "failure")
    assert (failure["status"], failure["error_type"]) == ("error", "backend_corrupted")

    resumed = tracker.trace(new.id)
    validate(resumed, "lineageir.schema.json")
    assert resumed["trace"]["parent_trace_id"] == str(run.id)
    assert resumed["trace"]["root_trace_id"] == str(run.id)
    relations = {(e["relationship"], e["source_id"], e["target_id"]) for e in resumed["edges"]}
    assert ("consumes", str(new.id), str(checkpoints[1].id)) in relations  # resumed run used it
    assert ("depends_on", str(new.id), str(run.id)) in relations
    assert any(r == "triggers" and t == str(new.id) for r, _, t in relations)  # the recovery
    assert ("derived_from", str(checkpoints[1].id), str(checkpoints[2].id)) in relations


def test_nested_shape(any_url: str, make_tracker: MakeTracker) -> None:
    tracker = make_tracker(any_url)
    _, run, _, _ = record_corruption_scenario(tracker)
    nested = tracker.trace(run.id, format="nested")
    validate(nested, "nested.schema.json")
    [root] = nested["spans"]
    assert root["kind"] == "run" and {child["kind"] for child in root["spans"]} >= {
        "steps", "checkpoint", "evaluation", "failure", "recovery"}


def test_job_status_and_runs(any_url: str, make_tracker: MakeTracker) -> None:
    tracker = make_tracker(any_url)
    _, run, _, new = record_corruption_scenario(tracker)
    other = tracker.start_run("broken")
    other.record_failure("OOM", "out of memory", corrupted=False)
    other.finish("failed").wait()
    statuses = {row["id"]: row["job_status"] for row in tracker.views.runs()}
    assert statuses == {str(run.id): "superseded", str(new.id): "completed", str(other.id): "failed"}
    assert [r["id"] for r in tracker.views.runs(status="failed")] == [str(other.id)]


def test_registry_aliases_time_travel_and_filters(any_url: str, make_tracker: MakeTracker) -> None:
    tracker = make_tracker(any_url)
    data, run, checkpoints, new = record_corruption_scenario(tracker)
    latest = tracker.artifacts(alias="latest")
    assert {a.id for a in latest} == {checkpoints[1].id, checkpoints[2].id}
    assert tracker.artifacts(type="dataset")[0].id == data.id
    assert [a.id for a in tracker.artifacts(run=new)] == [checkpoints[2].id]
    assert [a.id for a in tracker.artifacts(checksum="sha256:" + "ab" * 32)] == [data.id]
    assert [a.id for a in tracker.artifacts(type="checkpoint", limit=1, offset=1)] == [checkpoints[1].id]

    first_save = tracker.audit(kind="checkpoint_saved")[0]["position"]
    then = tracker.artifacts(as_of=first_save)
    assert [a.id for a in then] == [data.id, checkpoints[0].id]
    assert then[1].aliases == [f"latest@{str(run.id)[:8]}"] or then[1].aliases == []
    tracker.move_alias(checkpoints[0], "production", protected=True).wait()
    position = tracker.store.max_position()
    tracker.move_alias(checkpoints[2], "production", force=True).wait()
    assert [a.id for a in tracker.artifacts(alias="production")] == [checkpoints[2].id]
    assert [a.id for a in tracker.artifacts(alias="production", as_of=position)] == [checkpoints[0].id]
    history = tracker.alias_history("production")
    assert [h["artifact_id"] for h in history] == [str(checkpoints[0].id), str(checkpoints[2].id)]
    assert tracker.artifacts(as_of="2000-01-01T00:00:00Z") == []


def test_audit_filters_and_pagination(any_url: str, make_tracker: MakeTracker) -> None:
    tracker = make_tracker(any_url, actor="alice")
    _, run, checkpoints, _ = record_corruption_scenario(tracker)
    everything = tracker.audit(subject=run.id, limit=1000)
    assert [row["kind"] for row in everything][:2] == ["run.started", "run.input_used"]
    assert {row["actor"] for row in everything} == {"alice"}
    assert tracker.audit(actor="bob") == []
    page1 = tracker.audit(subject=run.id, limit=3)
    page2 = tracker.audit(subject=run.id, limit=3, after=page1[-1]["position"])
    assert [r["position"] for r in page1 + page2] == [r["position"] for r in everything[:6]]
    with_steps = tracker.audit(subject=run.id, include_steps=True, limit=1000)
    assert sum(r["kind"] == "run.step_recorded" for r in with_steps) == 47
    about_checkpoint = tracker.audit(subject=checkpoints[0].id)
    assert about_checkpoint[0]["kind"] == "artifact.registered"


def test_lineage_walks_up_and_down_in_one_query(any_url: str, make_tracker: MakeTracker) -> None:
    tracker = make_tracker(any_url)
    data, run, checkpoints, new = record_corruption_scenario(tracker)
    up = tracker.lineage(checkpoints[2], direction="up", depth=50)
    found = {node["id"]: node["depth"] for node in up["nodes"]}
    assert found[str(new.id)] == -1 and found[str(checkpoints[1].id)] == -1
    assert found[str(run.id)] == -2 and found[str(data.id)] == -3
    down = tracker.lineage(data, direction="down", depth=50)
    assert str(checkpoints[2].id) in {n["id"] for n in down["nodes"]}
    assert [n["id"] for n in tracker.lineage(data, direction="down", depth=0)["nodes"]] == [str(data.id)]
    with pytest.raises(lineage.ValidationError):
        tracker.lineage(data, direction="sideways")


def test_a_cycle_cannot_loop(any_url: str, make_tracker: MakeTracker) -> None:
    tracker = make_tracker(any_url)
    a = tracker.register_artifact("s3://b/a", type="model")
    b = tracker.register_artifact("s3://b/b", type="model", parents=[a])
    tracker.lineage(b)  # creates and fills the tables
    with tracker.views.engine.begin() as conn:  # a cycle no event could create: b -> a
        conn.execute(insert(edges).values(
            id="00000000-0000-4000-8000-0000000000cc", trace_id=None, source_type="artifact",
            source_id=str(b.id), target_type="artifact", target_id=str(a.id),
            relationship="derived_from", upstream_id=str(b.id), upstream_type="artifact",
            downstream_id=str(a.id), downstream_type="artifact", metadata="{}", position=10**9))
    graph = tracker.lineage(b, direction="both", depth=10_000)
    assert {n["id"] for n in graph["nodes"]} == {str(a.id), str(b.id)}


def test_a_long_derivation_chain(sqlite_url: str, make_tracker: MakeTracker) -> None:
    tracker = make_tracker(sqlite_url)
    previous = tracker.register_artifact("s3://chain/0", type="model")
    first = previous
    for index in range(1, 300):
        previous = tracker.register_artifact(f"s3://chain/{index}", type="model", parents=[previous],
                                             wait=False)
    tracker.flush()
    ancestors = tracker.lineage(previous, depth=1000)["nodes"]
    assert len(ancestors) == 300 and ancestors[0]["id"] == str(first.id) and ancestors[0]["depth"] == -299
    assert len(tracker.lineage(previous, depth=10)["nodes"]) == 11


def dump(engine: Any) -> dict[str, list[tuple[Any, ...]]]:
    with engine.connect() as conn:
        return {table.name: [tuple(row) for row in conn.execute(
            select(table).order_by(*table.primary_key.columns))]
            for table in metadata.sorted_tables}


def test_rebuild_gives_exactly_the_live_content(durable_url: str, make_tracker: MakeTracker) -> None:
    tracker = make_tracker(durable_url)
    record_corruption_scenario(tracker)
    tracker.flush()
    views = tracker.views
    views.runner.catch_up()
    live = dump(views.engine)
    assert sum(len(rows) for rows in live.values()) > 60
    assert live["lineage_step_metrics"] and live["lineage_spans"]
    views.runner.rebuild()
    assert dump(views.engine) == live
    views.runner.rebuild(["audit"])
    assert dump(views.engine) == live
    with pytest.raises(lineage.LineageError, match="unknown read model"):
        views.runner.rebuild(["nope"])


def test_projection_runs_once_per_database(sqlite_url: str, make_tracker: MakeTracker) -> None:
    tracker = make_tracker(sqlite_url)
    run = tracker.start_run("r")
    run.log_step(1, {"loss": 1.0})
    tracker.flush()
    first, second = tracker.views.runner, ProjectionRunner(
        tracker.store, tracker.views.engine, tracker.mapper, [])
    assert first.lock.acquire()
    try:
        assert not second.lock.acquire()
        with pytest.raises(ProjectionBusyError):
            second.follow(threading.Event())
    finally:
        first.lock.release()
    assert second.lock.acquire()
    second.lock.release()


def test_writer_and_projector_at_the_same_time(durable_url: str, make_tracker: MakeTracker) -> None:
    tracker = make_tracker(durable_url)
    views = tracker.views
    stop = threading.Event()
    follower = threading.Thread(target=views.runner.follow, args=(stop,), kwargs={"poll_s": 0.01})
    follower.start()
    try:
        with tracker.start_run("busy") as run:
            for step in range(5000):
                run.log_step(step, {"loss": 1.0})
    finally:
        stop.set()
        follower.join(60)
    assert not follower.is_alive()
    [row] = [r for r in views.runs() if r["id"] == str(run.id)]
    assert row["steps"] == 5000 and row["job_status"] == "completed"
    assert len(tracker.audit(subject=run.id, include_steps=True, limit=10_000)) == 5002


class _LogUpTo:
    """The store as it was at ``position``: what replaying to that position sees."""

    def __init__(self, store: Any, position: int) -> None:
        self.store, self.position = store, position

    def read_log(self, start: int, limit: int, topics: Any = ()) -> Any:
        return [n for n in self.store.read_log(start, limit, topics) if n.id <= self.position]

    def max_position(self) -> int:
        return self.position


@pytest.mark.parametrize("moment", ["after first checkpoint", "after recovery", "end"])
def test_time_travel_equals_replaying_to_the_position(any_url: str, make_tracker: MakeTracker,
                                                      moment: str) -> None:
    from lineage.adapters.database import engine_for
    from lineage.projections import all_projections
    from lineage.projections.queries import ReadModels

    tracker = make_tracker(any_url)
    _, _, checkpoints, _ = record_corruption_scenario(tracker)
    tracker.move_alias(checkpoints[0], "production", protected=True).wait()
    tracker.move_alias(checkpoints[2], "production", force=True).wait()
    positions = {"after first checkpoint": tracker.audit(kind="checkpoint_saved")[0]["position"],
                 "after recovery": tracker.audit(kind="recovery_completed")[0]["position"],
                 "end": tracker.store.max_position()}
    position = positions[moment]
    engine = engine_for("memory://")
    replayed = ReadModels(ProjectionRunner(_LogUpTo(tracker.store, position), engine,
                                           tracker.mapper, all_projections()), engine)
    as_of = tracker.views.artifacts(as_of=position, limit=1000)
    assert as_of == replayed.artifacts(limit=1000)
    for alias in ("latest", "production"):
        assert tracker.views.artifacts(as_of=position, alias=alias) == replayed.artifacts(alias=alias)
