"""``log_step`` checks its common call inline (a dict of floats with names seen before) and
everything else on the full path: both must queue the same record, and the inline path must
neither skip a rule nor keep a reference to the caller's dict."""

from __future__ import annotations

from collections.abc import Iterator
from types import MappingProxyType
from typing import Any

import pytest

from lineage.application.step_log import StepQueue, StepRecord
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
    for record in others:
        assert record == first
        assert [type(v) for v in record.metrics.values()] == [float, float]
    assert all(type(item) is tuple for item in queued)  # plain: the writer reads by index


def test_the_inline_path_copies_the_metrics(captured: Any) -> None:
    run, queued = captured
    metrics = {"loss": 1.0}
    run.log_step(0, metrics)
    run.log_step(1, metrics)
    metrics["loss"] = 2.0
    records = [StepRecord._make(item) for item in queued]
    assert [record.metrics for record in records] == [{"loss": 1.0}, {"loss": 1.0}]
    assert records[1].metrics is not metrics


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
