"""Drives a tracker with one sequence of hostile public-API calls and remembers what should be
stored (used by test_api_fuzz).

The rule each call is held to: it raises a ``LineageError`` (``ValidationError`` for bad input,
another one for a refused command) and stores nothing, or it is stored. Any other exception
escapes and fails the test.
"""

from __future__ import annotations

import functools
import math
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

import lineage
from lineage.errors import LineageError

LOCAL = "<local file>"  # an operation's uri that the driver replaces with a real file
FRESH = "<fresh uuid>"  # an event id the driver replaces with a new uuid


@dataclass
class RunModel:
    """What we expect the read models to say about a run we started."""

    handle: Any
    name: str
    tags: dict[str, str]
    steps: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    status: str = "running"
    evaluations: int = 0
    failures: int = 0
    recovered: bool = False  # a recovery touched it: its status is the executor's business


@dataclass
class ArtifactModel:
    uri: str
    type: str
    size: int | None
    checksum: str | None


def on_a_run(operation: Callable[..., None]) -> Callable[..., bool | None]:
    """An operation on the run at ``index`` (its first argument): given that run's model, or
    skipped (False) while no run was started."""

    @functools.wraps(operation)
    def on_run(self: Driver, index: int, *args: Any) -> bool | None:
        model = self.run_at(index)
        return False if model is None else operation(self, model, *args)

    return on_run


class Driver:
    """Applies operations (tuples from test_api_fuzz.OPERATIONS) to ``tracker``."""

    def __init__(self, tracker: lineage.Tracker, folder: Path, stats: Counter[str]) -> None:
        self.tracker = tracker
        self.folder = folder
        self.stats = stats
        self.runs: list[RunModel] = []
        self.artifacts: dict[UUID, ArtifactModel] = {}
        self.artifact_order: list[UUID] = []

    # -- the rule ------------------------------------------------------------------------------

    def apply(self, operation: tuple[Any, ...]) -> None:
        kind, *args = operation
        self.stats["calls"] += 1
        before = self._position()
        try:
            done = getattr(self, f"do_{kind}")(*args)
        except LineageError as error:
            where = getattr(error, "field", "")
            self.stats[f"refused {kind}: {type(error).__name__} {where}".rstrip()] += 1
            after = self._position()
            if after != before:
                raise AssertionError(f"{kind} raised {error!r} but stored {after - before} "
                                     "event(s)") from error
        else:
            self.stats[f"stored {kind}" if done is not False else f"skipped {kind}: no run"] += 1

    def _position(self) -> int:
        self.tracker.flush()
        return self.tracker.store.max_position() or 0

    # -- references ----------------------------------------------------------------------------

    def run_at(self, index: int) -> RunModel | None:
        return self.runs[index % len(self.runs)] if self.runs else None

    def artifact_at(self, index: int) -> Any:
        if not self.artifact_order:
            return uuid.UUID(int=index)  # unknown: refused with ArtifactNotFoundError
        return self.artifact_order[index % len(self.artifact_order)]

    def uri(self, value: Any) -> Any:
        if value == LOCAL:
            path = self.folder / f"file-{len(list(self.folder.iterdir()))}.bin"
            path.write_bytes(path.name.encode())
            return path
        return value

    @staticmethod
    def event_id(value: Any) -> Any:
        return uuid.uuid4() if value == FRESH else value

    # -- operations ----------------------------------------------------------------------------

    def do_start(self, name: Any, job: Any, tags: Any, start_step: Any, at: Any) -> None:
        handle = self.tracker.start_run(name, job=job, tags=tags, start_step=start_step,
                                        occurred_at=at)
        self.runs.append(RunModel(handle, name, expected_tags(tags)))

    @on_a_run
    def do_step(self, model: RunModel, step: Any, metrics: Any, epoch: Any, durations: Any,
                tokens: Any, at: Any, event_id: Any) -> None:
        model.handle.log_step(step, metrics, epoch=epoch, durations=durations, tokens=tokens,
                              occurred_at=at, event_id=self.event_id(event_id))
        model.steps.append((step, dict(metrics or {})))

    @on_a_run
    def do_eval(self, model: RunModel, step: Any, metrics: Any, dataset: Any, split: Any,
                at: Any) -> None:
        model.handle.log_eval(step, metrics, dataset=dataset, split=split,
                              occurred_at=at).wait()
        model.evaluations += 1

    @on_a_run
    def do_failure(self, model: RunModel, error_type: Any, message: Any, signal: Any,
                   retryable: Any, step: Any) -> None:
        model.handle.record_failure(error_type, message, signal=signal, retryable=retryable,
                                    step=step).wait()
        model.failures += 1

    @on_a_run
    def do_finish(self, model: RunModel, status: Any, reason: Any) -> None:
        model.handle.finish(status, reason=reason).wait()
        model.status = status

    def do_register(self, uri: Any, type: Any, name: Any, size: Any, checksum: Any,
                    metadata: Any, parents: list[int], run: Any, step: Any) -> None:
        run_ref = self.run_at(run).handle.id if isinstance(run, int) and self.runs else run
        ref = self.tracker.register_artifact(
            self.uri(uri), type=type, name=name, size=size, checksum=checksum,
            metadata=metadata, parents=[self.artifact_at(p) for p in parents], run=run_ref,
            step=step)
        self._remember(ref)

    @on_a_run
    def do_checkpoint(self, model: RunModel, uri: Any, step: Any, format: Any,
                      metadata: Any) -> None:
        ref = model.handle.save_checkpoint(self.uri(uri), step=step, format=format,
                                           metadata=metadata)
        ref.wait()
        self._remember(ref)

    def do_alias(self, artifact: int, alias: Any, scope: Any, protected: Any) -> None:
        self.tracker.move_alias(self.artifact_at(artifact), alias, scope=scope,
                                protected=protected).wait()

    @on_a_run
    def do_input(self, model: RunModel, artifact: int, role: Any) -> None:
        model.handle.use_input(self.artifact_at(artifact), role=role).wait()

    @on_a_run
    def do_recover(self, model: RunModel, strategy: Any, name: Any) -> None:
        model.recovered = True
        result = self.tracker.recover(model.handle.id, strategy=strategy, name=name,
                                      sleep=lambda seconds: None)
        self.stats[f"recover {result.status}"] += 1

    def do_query(self, query: str, index: int, value: Any, number: Any) -> None:
        model = self.run_at(index)
        run_id = model.handle.id if model is not None else uuid.UUID(int=index)
        ask(self.tracker, query, run_id, value, number)

    def _remember(self, ref: Any) -> None:
        if ref.id not in self.artifacts:
            self.artifacts[ref.id] = ArtifactModel(ref.uri, ref.type, ref.size, ref.digest)
            self.artifact_order.append(ref.id)


def expected_tags(tags: Any) -> dict[str, str]:
    """The tags as stored, for tags the tracker accepted."""
    if tags is None:
        return {}
    if isinstance(tags, list | tuple | set):
        return dict.fromkeys(tags, "")
    return {key: "" if value is None else str(value) for key, value in tags.items()}


def same_numbers(left: dict[str, Any], right: dict[str, Any]) -> bool:
    """Equal metric maps, NaN equal to NaN."""
    if left.keys() != right.keys():
        return False
    for key, value in left.items():
        other = right[key]
        both_nan = isinstance(value, float) and math.isnan(value) and math.isnan(other)
        if not both_nan and float(value) != float(other):
            return False
    return True


QUERIES = ("runs", "artifacts", "audit", "resolve", "alias_history", "metric_history", "lineage",
           "steps")


def ask(tracker: lineage.Tracker, query: str, run_id: Any, value: Any, number: Any) -> None:
    """One read-model query with a hostile filter: it answers or raises a LineageError."""
    if query == "runs":
        tracker.runs(status=value, newest=number)
    elif query == "artifacts":
        tracker.artifacts(type=value, alias=value, checksum=value, status=None, limit=number or 5)
        tracker.artifacts(since=value, until=value, as_of=number)
    elif query == "audit":
        tracker.audit(actor=value, kind=value, since=value, after=number or 0)
    elif query == "resolve":
        tracker.resolve(value, "artifact" if number else "run")
    elif query == "alias_history":
        tracker.alias_history(value, scope=value)
    elif query == "metric_history":
        tracker.metric_history(run_id, value)
    elif query == "lineage":
        tracker.lineage(run_id, direction=value, depth=number)
    else:
        tracker.steps(run_id, after=number or 0, limit=number)
