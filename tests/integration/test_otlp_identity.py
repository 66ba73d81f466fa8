"""One trace identity: every span the OTLP export sends is in ``tracker.trace(run)`` (LineageIR
and nested shapes) with the same id and the same parent (lineage.spans.identity).

The runs are exported to a real OTLP/HTTP receiver on loopback over a socket, from a real store.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any
from uuid import UUID

import pytest

from lineage.bootstrap import open_positions, otlp_runner, otlp_transport
from lineage.config.otlp import OtlpSettings
from lineage.spans import identity
from tests.otlp_receiver import HttpReceiver
from tests.otlp_scenario import deterministic_tracker, record_scenario


@pytest.fixture
def receiver() -> Iterator[HttpReceiver]:
    server = HttpReceiver().start()
    yield server
    server.stop()


def export(url: str, tracker: Any, receiver: HttpReceiver) -> list[Any]:
    options = OtlpSettings.load({}, endpoint=receiver.endpoint, protocol="http/protobuf")
    runner = otlp_runner(tracker.store, open_positions(url), options,
                         otlp_transport(options, retry_for_s=5.0))
    runner.export_to_head()
    runner.transport.close()
    return list(receiver.spans())


def lineage_spans(tracker: Any, run: UUID) -> dict[bytes, tuple[bytes, str]]:
    """span id -> (parent span id, name), from the LineageIR trace; the nested shape agrees."""
    graph = tracker.trace(run)
    found = {identity.otlp_span_id(s["id"]): (_parent(s["parent_span_id"]), s["name"])
             for s in graph["spans"]}
    nested: dict[bytes, tuple[bytes, str]] = {}
    stack = list(tracker.trace(run, format="nested")["spans"])
    while stack:
        node = stack.pop()
        nested[identity.otlp_span_id(node["span_id"])] = (_parent(node["parent_id"]), node["name"])
        stack.extend(node["spans"])
    assert nested == found
    return found


def _parent(span_id: str | None) -> bytes:
    return b"" if span_id is None else identity.otlp_span_id(span_id)


def test_every_exported_span_is_in_the_lineage_trace_with_its_parent(
        durable_url: str, make_tracker: Callable[..., Any], receiver: HttpReceiver) -> None:
    tracker, clock = deterministic_tracker(durable_url, make_tracker)
    scenario = record_scenario(tracker, clock, steps=230)  # steps 1-230, resumed 5-231
    received = export(durable_url, tracker, receiver)
    names = sorted(span.name for span in received)
    assert names == sorted(["train run", "finish run"] * 2 + ["train steps"] * 6  # 3 groups a run, 1 partial
                           + ["save checkpoint"] * 2 + ["evaluate", "detect failure",
                                                       "recover run"])
    runs = {scenario.failed_run.bytes: scenario.failed_run,
            scenario.resumed_run.bytes: scenario.resumed_run}
    for run_id in runs.values():
        spans = lineage_spans(tracker, run_id)
        exported = [s for s in received if s.trace_id == run_id.bytes]
        assert exported
        for span in exported:
            assert span.span_id in spans, span.name
            assert spans[span.span_id] == (span.parent_span_id, span.name)
        # The read model has every exported span, and no more for finished runs.
        assert {s.span_id for s in exported} == set(spans)


def test_recoveries_that_fail_then_exhaust_have_the_same_spans(
        durable_url: str, make_tracker: Callable[..., Any], receiver: HttpReceiver) -> None:
    tracker, clock = deterministic_tracker(durable_url, make_tracker)
    with pytest.raises(RuntimeError), tracker.start_run("flaky") as run:
        for step in range(1, 101):  # exactly one full group: no partial group at the end
            run.log_step(step, {"loss": 1.0 / step})
        run.save_checkpoint("s3://b/c1", step=100, checksum="sha256:" + "c" * 64).wait()
        run.log_eval(100, {"val_loss": 0.5}).wait()
        raise RuntimeError("backend slow")
    handle = tracker.run_handle(run.id)
    handle.begin_recovery().wait()
    clock.advance()
    handle.fail_recovery("TimeoutError", "backend slow").wait()
    clock.advance()
    handle.exhaust_recovery().wait()  # no attempt open: a span of its own
    handle.begin_recovery().wait()
    clock.advance()
    handle.exhaust_recovery().wait()  # closes the open attempt
    tracker.flush()
    received = export(durable_url, tracker, receiver)
    spans = lineage_spans(tracker, run.id)
    assert sorted(s.name for s in received) == sorted(
        ["train run", "finish run", "train steps", "save checkpoint", "evaluate", "detect failure"]
        + ["recover run"] * 3)
    assert {s.span_id: (s.parent_span_id, s.name) for s in received} == spans


def test_best_checkpoint_changes_and_retention_are_spans_of_both_views(
        durable_url: str, make_tracker: Callable[..., Any], receiver: HttpReceiver,
        tmp_path: Any) -> None:
    from lineage.application.policies import CheckpointPolicy

    policy = CheckpointPolicy(strategy="steps", save_every=10, keep_last=1,
                              best_metric="val_loss", best_mode="min")
    tracker = make_tracker(durable_url, export_otlp=False)
    with tracker.start_run("best", job={"checkpoint_policy": policy}) as run:
        for step, loss in ((10, 0.9), (20, 0.5), (30, 0.7)):
            run.log_step(step, {"loss": loss})
            path = tmp_path / f"ckpt-{step}.bin"
            path.write_bytes(f"{step}".encode())
            run.save_checkpoint(path, step=step).wait()
            run.log_eval(step, {"val_loss": loss}).wait()
    tracker.flush()
    received = export(durable_url, tracker, receiver)
    names = [s.name for s in received]
    assert names.count("select best checkpoint") == 2  # 10, then 20; 30 is worse
    assert names.count("retire checkpoint") >= 1 and names.count("delete checkpoint") >= 1
    checkpoints = {s.span_id for s in received if s.name == "save checkpoint"}
    for span in received:
        if span.name in ("select best checkpoint", "retire checkpoint", "delete checkpoint"):
            assert [link.span_id for link in span.links][:1] and span.links[0].span_id in checkpoints
            assert span.links[0].flags == 0x101  # same trace: not remote
    best = [s for s in received if s.name == "select best checkpoint"][-1]
    attributes = {kv.key: kv.value for kv in best.attributes}
    assert attributes["lineage.best.value"].double_value == 0.5
    assert attributes["lineage.best.metric"].string_value == "val_loss"
    assert {s.span_id: (s.parent_span_id, s.name) for s in received} == lineage_spans(tracker, run.id)


def test_steps_lost_are_on_the_recovery_span_and_flags_say_what_is_remote(
        durable_url: str, make_tracker: Callable[..., Any], receiver: HttpReceiver) -> None:
    from lineage.application.views import LostSteps

    tracker = make_tracker(durable_url, export_otlp=False)
    with pytest.raises(RuntimeError), tracker.start_run("lossy") as run:
        for step in range(1, 10):
            run.log_step(step, {"loss": 1.0 / step})
        ckpt = run.save_checkpoint("s3://b/c4", step=4, checksum="sha256:" + "c" * 64).wait()
        raise RuntimeError("backend lost")
    handle = tracker.run_handle(run.id)
    handle.begin_recovery().wait()
    resumed = tracker.resume_run(run, ckpt)
    handle.complete_recovery(resumed, ckpt, lost=LostSteps(5, 9, 5), checkpoint_step=4).wait()
    resumed.finish("completed").wait()
    tracker.flush()
    received = export(durable_url, tracker, receiver)
    (recovery,) = [s for s in received if s.name == "recover run"]
    attributes = {kv.key: kv.value.int_value for kv in recovery.attributes}
    assert (attributes["lineage.steps_lost.count"], attributes["lineage.steps_lost.first"],
            attributes["lineage.steps_lost.last"]) == (5, 5, 9)
    assert [e.name for e in recovery.events] == ["steps lost"]
    assert all(span.flags == 0x101 for span in received)  # sampled, parent not remote
    links = {link.trace_id: link.flags for span in received for link in span.links}
    assert links[resumed.id.bytes] == 0x301  # another trace: remote
    assert links[run.id.bytes] == 0x301
    assert {s.span_id: (s.parent_span_id, s.name) for s in received
            if s.trace_id == run.id.bytes} == lineage_spans(tracker, run.id)


def test_the_bounded_grouping_past_ten_thousand_steps_is_the_same_in_both_views(
        durable_url: str, make_tracker: Callable[..., Any], receiver: HttpReceiver) -> None:
    tracker = make_tracker(durable_url, export_otlp=False, batch_size=5000)
    with tracker.start_run("long") as run:
        for step in range(1, 12_301):  # groups of 100 up to 10,000, then of 1,000
            run.log_step(step, {"loss": 1.0 / step})
    tracker.flush()
    received = export(durable_url, tracker, receiver)
    steps = [s for s in received if s.name == "train steps"]
    assert len(steps) == 100 + 3  # 10,001-11,000, 11,001-12,000, and the partial 12,001-12,300
    assert {s.span_id: (s.parent_span_id, s.name) for s in received} == lineage_spans(tracker, run.id)
    graph = tracker.trace(run.id)
    ranges = sorted((s["attributes"].get("seq_from"), s["attributes"].get("seq_to"))
                    for s in graph["spans"] if s["name"] == "train steps")
    assert ranges[-3:] == [(10_001, 11_000), (11_001, 12_000), (12_001, 12_300)]


def test_each_outcome_has_one_status_in_both_views(
        durable_url: str, make_tracker: Callable[..., Any], receiver: HttpReceiver) -> None:
    """LineageIR's span status is ok or error (no unset); the OTLP export says the same of
    every span, and of ``finish run``, which carries the outcome: only a completed run is OK;
    failed, superseded and cancelled runs are ERROR (a cancelled run was UNSET in OTLP, error
    in LineageIR). The OTLP root ``train run`` is sent at the start, so it is UNSET."""
    from opentelemetry.proto.trace.v1.trace_pb2 import Status

    tracker, clock = deterministic_tracker(durable_url, make_tracker)
    scenario = record_scenario(tracker, clock, steps=20)  # failed -> superseded, resumed -> ok
    for outcome in ("completed", "failed", "cancelled"):
        run = tracker.start_run(outcome)
        run.log_step(1, {"loss": 1.0})
        clock.advance()
        run.finish(outcome).wait()
    tracker.flush()
    received = export(durable_url, tracker, receiver)
    codes = {"ok": Status.STATUS_CODE_OK, "error": Status.STATUS_CODE_ERROR}
    runs = {str(r.id): tracker.trace(r.id)["trace"] for r in tracker.runs()}
    assert sorted(t["status"] for t in runs.values()) == [
        "cancelled", "completed", "completed", "failed", "superseded"]
    assert runs[str(scenario.failed_run)]["status"] == "superseded"
    for trace in runs.values():
        lineage = {identity.otlp_span_id(s["id"]): s for s in
                   tracker.trace(UUID(trace["id"]))["spans"]}
        for span in (s for s in received if s.trace_id == UUID(trace["id"]).bytes):
            status = lineage[span.span_id]["status"]
            if span.name == "train run":  # the root goes out at the start, before the outcome
                assert span.status.code == Status.STATUS_CODE_UNSET
                continue
            assert (span.status.code == Status.STATUS_CODE_ERROR) == (status == "error"), \
                (trace["status"], span.name)
            if span.name == "finish run":
                expected = "ok" if trace["status"] == "completed" else "error"
                assert (status, span.status.code) == (expected, codes[expected]), span.name
