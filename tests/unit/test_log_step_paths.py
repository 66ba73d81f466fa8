"""``log_step`` checks its common call inline (a dict of floats with names seen before) and
everything else on the full path: both must queue the same step, and the inline path must
neither skip a rule nor keep a reference to the caller's dict; what it queues holds nothing the
garbage collector has to follow."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from types import MappingProxyType
from typing import Any

import pytest

from lineage.application.step_log import StepQueue, StepRecord, metrics_of, run_id_of
from lineage.errors import RunFinishedError, ValidationError
from lineage.testing import memory_tracker


@pytest.fixture
def captured() -> Iterator[tuple[Any, list[tuple[Any, ...]]]]:
    """A run whose queued step records land in a list instead of the writer's queue."""
    tracker = memory_tracker()
    try:
        run = tracker.start_run("paths")
        queued: list[tuple[Any, ...]] = []
        run._steps = StepQueue(queued, 1 << 62, queued.append)
        yield run, queued
    finally:
        tracker.close()


class Loss(float):
    """A float subclass (numpy's float64 is one): stored as a plain float."""


def test_the_inline_and_the_full_path_queue_the_same_record(captured: Any) -> None:
    run, queued = captured
    run.log_step(3, {"loss": 0.5, "lr": 1e-4}, epoch=1)  # first sight of the names: full path
    run.log_step(3, {"loss": 0.5, "lr": 1e-4}, epoch=1)  # known names, floats: inline
    run.log_step(3, MappingProxyType({"loss": 0.5, "lr": 1e-4}), epoch=1)  # not a dict: full
    run.log_step(3, {"loss": Loss(0.5), "lr": 1e-4}, epoch=1)  # a float subclass: full
    first, *others = map(StepRecord._make, queued)
    assert others[0].names == ("loss", "lr")  # the inline one: packed
    assert others[1].names is None and others[2].names is None  # the full path: a dict
    for record in others:
        assert record._replace(names=None, metrics={}) == first._replace(names=None, metrics={})
        assert metrics_of(record) == metrics_of(first) == {"loss": 0.5, "lr": 1e-4}
        assert [type(v) for v in metrics_of(record).values()] == [float, float]
    assert all(type(item) is tuple for item in queued)  # plain: the writer reads by index
    assert run_id_of(first) == run.id


def test_the_inline_path_queues_what_the_collector_drops() -> None:
    """Steps waiting for the writer must not reach the collector's old generation (its full
    passes walk every object of the process): after one pass none of them is tracked."""
    tracker = memory_tracker()
    try:
        run = tracker.start_run("untracked")
        queued: list[tuple[Any, ...]] = []
        run._steps = StepQueue(queued, 1 << 62, queued.append)
        for step in range(200):
            run.log_step(step, {"loss": step / 7, "lr": 1e-4, "grad_norm": 0.5}, epoch=0)
        gc.collect()  # untracks the handle's names tuple (and records checked after it)
        gc.collect()  # the records checked before it
        assert not any(map(gc.is_tracked, queued[1:]))
        assert [metrics_of(item)["loss"] for item in queued] == [s / 7 for s in range(200)]
    finally:
        tracker.close()


def test_the_inline_path_copies_the_metrics(captured: Any) -> None:
    run, queued = captured
    metrics = {"loss": 1.0}
    run.log_step(0, metrics)
    run.log_step(1, metrics)
    metrics["loss"] = 2.0
    assert [metrics_of(item) for item in queued] == [{"loss": 1.0}, {"loss": 1.0}]
    assert all(item[3] is not metrics for item in queued)


@pytest.mark.parametrize(("call", "field"), [
    (lambda run: run.log_step(-1, {"loss": 1.0}), "step"),
    (lambda run: run.log_step(True, {"loss": 1.0}), "step"),
    (lambda run: run.log_step(2**63, {"loss": 1.0}), "step"),
    (lambda run: run.log_step(1, {"loss": 1.0}, epoch=-1), "epoch"),
    (lambda run: run.log_step(1, {"loss": "high"}), "metrics['loss']"),
    (lambda run: run.log_step(1, {"loss": 2**64}), "metrics['loss']"),
    (lambda run: run.log_step(1, {"": 1.0}), "metrics['']"),
])
def test_known_names_do_not_let_a_bad_call_through(captured: Any, call: Any, field: str) -> None:
    run, queued = captured
    run.log_step(0, {"loss": 1.0})
    with pytest.raises(ValidationError) as error:
        call(run)
    assert error.value.field == field
    assert len(queued) == 1


def test_a_finished_run_refuses_the_common_call(captured: Any) -> None:
    run, queued = captured
    run.log_step(0, {"loss": 1.0})
    run.finished_status = "completed"
    with pytest.raises(RunFinishedError):
        run.log_step(1, {"loss": 1.0})
    assert len(queued) == 1


@pytest.mark.parametrize("calls", [
    [{"loss": 1.0, "lr": 2.0}, {"lr": 3.0, "loss": 4.0}],  # the same names in another order
    [{"loss": 1.0}, {"loss": 2.0}, {}, {}, {"loss": 3.0}],  # one name, none, one again
    [{"loss": 1.0, "lr": 2.0}, {"loss": 3.0, "acc": 4.0}, {"loss": 5.0, "lr": 6.0}],
    [{"loss": 1.0, "lr": 2.0}, {"loss": 3.0}, {"loss": 4.0, "lr": 5.0, "acc": 6.0}],
    [{"loss": 1.0}, {"loss": 2}, {"loss": 3.0}],  # an int in between: a dict, kept an int
])
def test_metrics_of_any_shape_come_back_as_given(captured: Any, calls: list[dict[str, Any]]) -> None:
    run, queued = captured
    for step, metrics in enumerate(calls):
        run.log_step(step, metrics)
    assert [metrics_of(item) for item in queued] == calls
    assert [[type(v) for v in metrics_of(item).values()] for item in queued] == [
        [type(v) for v in metrics.values()] for metrics in calls]


def test_a_key_that_is_not_a_name_is_refused_after_known_names(captured: Any) -> None:
    run, queued = captured
    run.log_step(0, {"loss": 1.0, "lr": 2.0})
    with pytest.raises(ValidationError):
        run.log_step(1, {"loss": 1.0, 5: 2.0})  # type: ignore[dict-item]
    assert len(queued) == 1


class Name(str):
    """A ``str`` subclass (a ``StrEnum`` member is one)."""


def test_a_str_subclass_name_never_becomes_a_handle_s_names(captured: Any) -> None:
    """Such a key is GC-tracked: kept in the handle's names, every queued step would stay in
    the collector's reach. Equal to the names of the call before, it is stored as those."""
    run, queued = captured
    run.log_step(0, {"loss": 1.0})  # teaches the process the name (when new)
    run.log_step(1, {"loss": 1.5})  # the handle's names now
    run.log_step(2, {Name("loss"): 2.0})  # the previous call's names: stored as plain str
    with pytest.raises(ValidationError, match="must be strings"):
        run.log_step(3, {Name("loss"): 3.0, "lr": 1.0})  # new names: the checked path's rule
    assert [metrics_of(item) for item in queued] == [{"loss": 1.0}, {"loss": 1.5}, {"loss": 2.0}]
    assert {type(name) for item in queued for name in metrics_of(item)} == {str}
    gc.collect()
    gc.collect()
    assert not gc.is_tracked(queued[2])
