"""The one dispatch on event type (``lineage.codec.dispatch``): a table keyed by event class."""

from __future__ import annotations

from typing import Any

import pytest

from lineage.codec.dispatch import Dispatcher, handles, topic_of
from lineage.domain import Run, StepRecorded
from lineage.projections import all_projections
from lineage.projections.decoding import Dispatching
from lineage.spans.builder import SpanBuilder


class Base(Dispatcher):
    @handles(Run.Started)
    def started(self, event: Any) -> str:
        return "started"


class Child(Base):
    @handles(Run.Finished, Run.CheckpointSaved)
    def other(self, event: Any) -> str:
        return "other"


def test_handlers_are_keyed_by_event_class_and_inherited() -> None:
    child = Child()
    assert Child.handlers == {Run.Started: "started", Run.Finished: "other",
                              Run.CheckpointSaved: "other"}
    assert Base.handlers == {Run.Started: "started"}
    assert child.handler(Run.Finished)(None) == "other"  # type: ignore[misc]
    assert child.handler(Run.Started)(None) == "started"  # type: ignore[misc]
    assert child.handler(StepRecorded) is None
    assert set(child.topics()) == {topic_of(Run.Started), topic_of(Run.Finished),
                                   topic_of(Run.CheckpointSaved)}
    assert topic_of(StepRecorded) == "lineage.domain.steps:StepRecorded"


def test_two_handlers_for_one_event_class_are_refused() -> None:
    with pytest.raises(TypeError, match="handled by both"):
        class Twice(Dispatcher):
            @handles(Run.Started)
            def one(self) -> None: ...

            @handles(Run.Started)
            def two(self) -> None: ...


def test_handles_needs_an_event_class() -> None:
    with pytest.raises(TypeError):
        handles()


def test_every_reader_of_the_log_dispatches_through_the_table() -> None:
    readers = [p for p in all_projections() if isinstance(p, Dispatching)]
    assert {type(p).__name__ for p in readers} >= {"TraceProjection", "RegistryProjection",
                                                    "EdgeProjection"}
    for reader in [*readers]:
        assert reader.handlers and all(isinstance(k, type) for k in reader.handlers)
    assert {Run.CheckpointSaved, StepRecorded, Run.Finished} <= set(SpanBuilder.handlers)
