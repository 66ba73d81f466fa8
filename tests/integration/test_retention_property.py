"""Property: whatever the sequence of saves, evaluations, aliases, derivations and resumes,
retention never retires what it must keep, and keeps nothing else beyond ``keep_last``.

Saves and evaluations are not waited for (retention runs behind them on its own thread); the
operations that pick an existing checkpoint flush first and pick a live one, as a user would.
"""

from __future__ import annotations

import contextlib
import math
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lineage
from lineage.application.handles import ArtifactRef
from lineage.application.policies import CheckpointPolicy
from lineage.errors import ArtifactRetiredError

VALUES = st.sampled_from([0.9, 0.5, 0.5, 0.3, 0.7, math.nan, math.inf])
OPERATIONS = st.lists(st.one_of(
    st.tuples(st.just("save")),
    st.tuples(st.just("eval"), VALUES),
    st.tuples(st.just("protect"), st.integers(0, 50)),
    st.tuples(st.just("unprotect"), st.integers(0, 3)),
    st.tuples(st.just("derive"), st.integers(0, 50)),
    st.tuples(st.just("resume"), st.integers(0, 50)),
), max_size=25)


class Scenario:
    """Drives one run and remembers what the user did, to state the expected outcome."""

    def __init__(self, tracker: lineage.Tracker, folder: Path, keep_last: int) -> None:
        self.tracker = tracker
        self.folder = folder
        policy = CheckpointPolicy(strategy="steps", save_every=10, keep_last=keep_last,
                                  best_metric="val_loss")
        self.run = tracker.start_run("prop", job={"checkpoint_policy": policy})
        self.saved: list[ArtifactRef] = []
        self.protected: dict[str, int] = {}  # alias name -> index in saved
        self.best: tuple[float, int] | None = None  # (value, index in saved)

    def save(self) -> None:
        step = 10 * (len(self.saved) + 1)
        self.run.log_step(step, {"loss": 1.0})
        path = self.folder / f"{self.run.id.hex[:8]}-{step}.bin"
        path.write_bytes(f"{self.run.id}:{step}".encode())
        self.saved.append(self.run.save_checkpoint(path, step=step, includes_optimizer=True))

    def eval(self, value: float) -> None:
        if not self.saved:
            return
        self.run.log_eval(10 * len(self.saved), {"val_loss": value})
        if math.isfinite(value) and (self.best is None or value < self.best[0]):
            self.best = (value, len(self.saved) - 1)

    def live_one(self, pick: int) -> int | None:
        self.tracker.flush()
        live = [i for i, ref in enumerate(self.saved)
                if self.tracker.artifact(ref.id).status == "live"]
        return live[pick % len(live)] if live else None

    def protect(self, pick: int) -> None:
        index = self.live_one(pick)
        if index is not None:
            name = f"keep-{len(self.protected)}"
            self.tracker.move_alias(self.saved[index], name, protected=True).wait()
            self.protected[name] = index

    def unprotect(self, pick: int) -> None:
        names = sorted(self.protected)
        newest = self.live_one(-1)
        if names and newest is not None:
            name = names[pick % len(names)]
            self.tracker.move_alias(self.saved[newest], name, protected=True, force=True).wait()
            self.protected[name] = newest

    def derive(self, pick: int) -> None:
        index = self.live_one(pick)
        if index is not None:
            model = self.folder / f"model-{self.run.id.hex[:8]}-{index}.bin"
            model.write_bytes(f"model of {index}".encode())
            self.tracker.register_artifact(model, type="model", parents=[self.saved[index]])

    def resume(self, pick: int) -> None:
        index = self.live_one(pick)
        if index is not None:
            self.tracker.resume_run(self.run.id, self.saved[index], name="branch")


def check(scenario: Scenario, keep_last: int) -> None:
    tracker, saved = scenario.tracker, scenario.saved
    views = [tracker.artifact(ref.id) for ref in saved]
    pinned = {i for i, view in enumerate(views) if view.pins}
    live = {i for i, view in enumerate(views) if view.status == "live"}
    newest = set(range(len(saved))[-keep_last:])  # steps grow with each save

    assert pinned <= live, "a checkpoint retention must keep was retired"
    assert live == newest | pinned, "retention kept more (or less) than keep_last plus pins"
    assert set(scenario.protected.values()) <= pinned
    if scenario.best is not None:
        run = tracker.run(scenario.run.id)
        assert (run.best_value, run.best_checkpoint) == (scenario.best[0],
                                                         saved[scenario.best[1]].id)
        assert scenario.best[1] in pinned
    for index, (ref, view) in enumerate(zip(saved, views, strict=True)):
        path = Path(ref.uri.removeprefix("file://"))
        assert path.exists() == (index in live), f"file of checkpoint {index}"
        assert view.deletion == (None if index in live else "deleted")
    assert tracker.retention.errors == []


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(operations=OPERATIONS, keep_last=st.integers(1, 3))
def test_retention_keeps_what_it_must_and_only_that(operations: list[tuple[Any, ...]],
                                                    keep_last: int) -> None:
    with tempfile.TemporaryDirectory() as folder, \
            lineage.Tracker("memory://", batch_interval_s=0.002) as tracker:
        scenario = Scenario(tracker, Path(folder), keep_last)
        for name, *arguments in operations:
            # a protect racing a retirement is refused, as it must be
            with contextlib.suppress(ArtifactRetiredError):
                getattr(scenario, name)(*arguments)
        scenario.save()  # a last save lets retention act on pins removed since the one before
        tracker.flush()
        check(scenario, keep_last)
