"""The public Python API end to end, on every store (memory fake, SQLite file, PostgreSQL)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import lineage
from lineage.domain import Run


def write(path: Path, content: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def test_the_readme_quick_start(any_url: str, make_tracker: Callable[..., Any], tmp_path: Path) -> None:
    tracker = make_tracker(any_url)
    data = tracker.register_artifact(write(tmp_path / "data/train.jsonl", b'{"x": 1}\n'), type="dataset")
    assert data.size == 9 and data.checksum_algorithm == "sha256"
    job = {"model": "llama-3.2-1b", "adapter": {"type": "lora", "rank": 16}, "learning": {"lr": 1e-4}}
    with tracker.start_run("sft-demo", job=job, inputs=[data]) as run:
        for step in range(1, 1001):
            run.log_step(step, {"loss": 1.0 / step, "lr": 1e-4}, epoch=step // 500)
        ckpt = run.save_checkpoint(write(tmp_path / "ckpt/step-1000.safetensors", b"w" * 4096),
                                   step=1000, format="safetensors", includes_optimizer=True)
        run.log_eval(1000, {"val_loss": 0.31})
    view = tracker.run(run.id)
    assert (view.status, view.steps, view.last_step, view.evaluations) == ("completed", 1000, 1000, 1)
    assert view.job == job and view.inputs == [data.id] and view.checkpoints == [(ckpt.id, 1000)]
    assert view.last_metrics == {"loss": 0.001, "lr": 1e-4}
    registered = tracker.artifact(ckpt.id)
    assert (registered.run_id, registered.step, registered.size, registered.format) == (
        run.id, 1000, 4096, "safetensors")
    assert [a.type for a in tracker.artifacts()] == ["dataset", "checkpoint"]


def test_an_exception_in_the_block_marks_the_run_failed_and_re_raises(
        any_url: str, make_tracker: Callable[..., Any]) -> None:
    tracker = make_tracker(any_url)
    with pytest.raises(ZeroDivisionError), tracker.start_run("boom") as run:
        run.log_step(1, {"loss": 1.0})
        1 / 0  # noqa: B018
    view = tracker.run(run.id)
    assert (view.status, view.failures) == ("failed", 1)
    failure = next(e for e in tracker.run_events(run.id) if isinstance(e, Run.FailureDetected))
    assert failure.error_type == "ZeroDivisionError" and failure.step == 1
    with pytest.raises(lineage.RunFinishedError):
        run.log_step(2, {"loss": 1.0})


def test_several_threads_log_to_one_run(any_url: str, make_tracker: Callable[..., Any]) -> None:
    tracker = make_tracker(any_url, queue_size=500)
    with tracker.start_run("threads") as run:
        def work(offset: int) -> None:
            for step in range(offset, offset + 2000):
                run.log_step(step, {"loss": 0.5})
        threads = [threading.Thread(target=work, args=(k * 10_000,)) for k in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    steps = tracker.steps(run.id)
    assert len(steps) == 8000
    assert [s.originator_version for s in steps] == list(range(1, 8001))
    assert sorted(s.step for s in steps) == sorted(k * 10_000 + i for k in range(4) for i in range(2000))


def test_a_full_queue_blocks_the_caller_and_drops_nothing(make_tracker: Callable[..., Any],
                                                          sqlite_url: str) -> None:
    tracker = make_tracker(sqlite_url, queue_size=10, batch_size=3)
    with tracker.start_run("tiny queue") as run:
        for step in range(500):
            run.log_step(step, {"loss": 1.0})
    assert tracker.run(run.id).steps == 500


def test_recovery_resumes_as_a_new_linked_run(any_url: str, make_tracker: Callable[..., Any],
                                              tmp_path: Path) -> None:
    tracker = make_tracker(any_url)
    run = tracker.start_run("sft")
    checkpoints = []
    for step in range(1, 48):
        run.log_step(step, {"loss": 1.0 / step})
        if step % 20 == 0:
            path = write(tmp_path / f"step-{step}.safetensors", f"weights {step}".encode())
            checkpoints.append(run.save_checkpoint(path, step=step, includes_optimizer=True))
    run.record_failure("backend_corrupted", "flagged", signal="tinker.corrupted", corrupted=True,
                       step=47)
    assert run.begin_recovery("latest").wait() == 1
    chosen = checkpoints[-1]
    run.select_recovery_checkpoint(chosen, step=40, reason="latest").wait()
    new = tracker.resume_run(run, chosen)
    run.complete_recovery(new, chosen).wait()
    with new:
        for step in range(41, 60):
            new.log_step(step, {"loss": 0.01})
    old, resumed = tracker.run(run.id), tracker.run(new.id)
    assert (old.status, old.superseded_by, old.corrupted) == ("superseded", new.id, True)
    assert (resumed.status, resumed.resumed_from, resumed.start_step) == ("completed", run.id, 40)
    assert resumed.inputs == [chosen.id]
    assert tracker.artifact(checkpoints[1].id).parents == [checkpoints[0].id]
    kinds = [type(e).__name__ for e in tracker.run_events(run.id, steps=False)]
    assert kinds[-5:] == ["FailureDetected", "RecoveryStarted", "RecoveryCheckpointSelected",
                          "RecoveryCompleted", "Finished"]


def test_a_second_executor_gets_already_recovering(any_url: str, make_tracker: Callable[..., Any]) -> None:
    tracker = make_tracker(any_url)
    run = tracker.start_run("sft")
    run.record_failure("crash", corrupted=True)
    first, second = run.begin_recovery(), run.begin_recovery()
    assert first.wait() == 1
    with pytest.raises(lineage.InvariantError, match="already recovering"):
        second.wait()


def test_commands_refused_by_the_domain_fail_alone(any_url: str, make_tracker: Callable[..., Any]) -> None:
    tracker = make_tracker(any_url)
    run = tracker.start_run("sft")
    run.log_step(1, {"loss": 1.0})
    refused = tracker.run_handle(run.id).begin_recovery()  # no failure yet
    run.log_step(2, {"loss": 0.5})
    run.finish().wait()
    with pytest.raises(lineage.InvariantError):
        refused.wait()
    assert tracker.run(run.id).steps == 2


def test_the_store_failing_is_reported_not_silent(make_tracker: Callable[..., Any]) -> None:
    from lineage.adapters.memory import MemoryEventStore
    from lineage.errors import StoreError

    class Broken(MemoryEventStore):
        fail = False

        def append(self, events: Any, event_ids: Any, expect: Any = ()) -> None:
            if self.fail:
                raise StoreError("disk full")
            super().append(events, event_ids, expect)

    store = Broken()
    tracker = lineage.Tracker(store=store, retry_for_s=0.2)
    run = tracker.start_run("r")
    store.fail = True
    run.log_step(1, {"loss": 1.0})
    with pytest.raises(lineage.WriterError) as error:
        tracker.flush()
    assert error.value.lost == 1 and "disk full" in str(error.value)
    store.fail = False
    with pytest.raises(lineage.InvariantError, match="from step 1 on were not committed"):
        run.log_step(2, {"loss": 1.0})  # stored after a lost step 1, it would be a hole
    tracker.flush()  # reported once
    other = tracker.start_run("other")
    other.log_step(1, {"loss": 1.0})
    tracker.flush()  # later writes work again
    assert tracker.steps(run.id) == [] and [s.step for s in tracker.steps(other.id)] == [1]
    tracker.close()


def test_events_carry_the_envelope(any_url: str, make_tracker: Callable[..., Any]) -> None:
    tracker = make_tracker(any_url, actor="alice", source="node-1/train.py", tenant_id="acme")
    with tracker.start_run("r") as run:
        run.log_step(1, {"loss": 1.0}, occurred_at="2026-11-20T12:00:00Z")
    events = tracker.run_events(run.id)
    assert {(e.actor, e.source, e.tenant_id) for e in events} == {("alice", "node-1/train.py", "acme")}
    step = tracker.steps(run.id)[0]
    assert step.occurred_at.isoformat() == "2026-11-20T12:00:00+00:00"
    assert step.occurred_at_raw == "2026-11-20T12:00:00Z" and step.recorded_at >= step.occurred_at
    assert len({e.event_id for e in events}) == len(events)


def test_an_unclosed_tracker_is_flushed_at_interpreter_exit(tmp_path: Path) -> None:
    import subprocess
    import sys

    database = tmp_path / "exit.db"
    script = (
        "import lineage\n"
        f"tracker = lineage.Tracker({str(database)!r})\n"
        "run = tracker.start_run('no close')\n"
        "for step in range(5000):\n"
        "    run.log_step(step, {'loss': 1.0})\n"
        "print(run.id)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    with lineage.Tracker(str(database)) as tracker:
        assert tracker.run(result.stdout.strip()).steps == 5000


def test_flush_commits_every_queued_batch_at_once(make_tracker: Callable[..., Any], sqlite_url: str) -> None:
    tracker = make_tracker(sqlite_url, batch_size=10, batch_interval_s=3600)
    run = tracker.start_run("slow batches")
    for step in range(25):
        run.log_step(step, {"loss": 1.0})
    tracker.flush(timeout=30)  # three batches; none may wait for the hour-long interval
    assert tracker.run(run.id).steps == 25
