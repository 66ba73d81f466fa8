"""The same API tests against a local tracker (a SQLite file) and a remote one (a real server
on loopback): what a training script and an auditor see does not depend on which it is."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import lineage
from tests.server.conftest import InProcessServer


@pytest.fixture(params=["local", "remote"])
def tracker(request: pytest.FixtureRequest, tmp_path: Path,
            monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    if request.param == "local":
        made: Any = lineage.Tracker(str(tmp_path / "local.db"), export_otlp=False)
    else:
        server: InProcessServer = request.getfixturevalue("shared_server")
        monkeypatch.setenv("LINEAGE_SPOOL_DIR", str(tmp_path / "spool"))
        made = lineage.Tracker(server.url, token=server.token(f"t-{uuid.uuid4().hex[:12]}"))
    try:
        yield made
    finally:
        made.close()


def _file(tmp_path: Path, name: str, content: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content)
    return path


def test_a_training_run_reads_back_the_same(tracker: Any, tmp_path: Path) -> None:
    data = tracker.register_artifact(_file(tmp_path, "train.jsonl", b"{}\n"), type="dataset")
    policy = lineage.CheckpointPolicy(strategy="steps", save_every=50, best_metric="val_loss",
                                      best_mode="min")
    with tracker.start_run("sft", job={"model": "m", "checkpoint_policy": policy},
                           inputs=[data], tags={"team": "a"}) as run:
        for step in range(1, 101):
            run.log_step(step, {"loss": 1.0 / step}, epoch=step // 50)
            if run.should_checkpoint(step):
                run.save_checkpoint(_file(tmp_path, f"c{step}.bin", b"w%d" % step), step=step)
                run.log_eval(step, {"val_loss": 1.0 / step})
    view = tracker.run(run.id)
    assert (view.name, view.status, view.steps, view.last_step) == ("sft", "completed", 100, 100)
    assert view.tags == {"team": "a"} and view.inputs == [data.id]
    assert view.last_metrics == {"loss": pytest.approx(0.01)}
    checkpoints = tracker.artifacts(type="checkpoint")
    assert [a.step for a in checkpoints] == [50, 100]
    assert checkpoints[1].parents == [checkpoints[0].id]
    assert view.best_checkpoint == checkpoints[1].id
    assert list(tracker.metric_history(run.id, "loss"))[-1] == (100, pytest.approx(0.01))
    assert len(tracker.metric_history(run.id, "loss", buckets=4)) == 4
    up = tracker.lineage(checkpoints[1].id, direction="up")
    assert {data.id, checkpoints[0].id} <= {uuid.UUID(n["id"]) for n in up["nodes"]}
    trace = tracker.trace(run.id)
    assert {span["name"] for span in trace["spans"]} >= {"train run", "save checkpoint"}
    assert tracker.resolve(str(run.id)[:8]) == run.id
    assert [r.id for r in tracker.runs(status="completed")] == [run.id]
    assert any(row["kind"] == "run.finished" for row in tracker.audit(subject=run.id))
    before = tracker.artifacts(as_of=1)
    assert [a.id for a in before] == [data.id]


def test_bad_input_raises_in_the_caller_and_stores_nothing(tracker: Any) -> None:
    run = tracker.start_run("checked")
    with pytest.raises(lineage.ValidationError) as raised:
        run.log_step(-1, {"loss": 0.5})
    assert raised.value.field == "step"
    with pytest.raises(lineage.ValidationError):
        run.log_eval(1, {"": 1.0})
    with pytest.raises(lineage.ValidationError):
        tracker.start_run("")
    run.finish()
    with pytest.raises(lineage.RunFinishedError):
        run.record_failure("Boom", "after the end")
    tracker.flush()
    assert [(r.name, r.steps, r.evaluations) for r in tracker.runs()] == [("checked", 0, 0)]


def test_refusals_come_back_from_wait(tracker: Any) -> None:
    tracker.start_run("keyed", job={"key": "job-1"})
    with pytest.raises(lineage.RunExistsError):
        tracker.start_run("keyed again", job={"key": "job-1"})
    with pytest.raises(lineage.RunNotFoundError):
        tracker.run(uuid.uuid4())
    with pytest.raises(lineage.ArtifactNotFoundError):
        tracker.artifact(uuid.uuid4())
    assert tracker.run_count() == 1
