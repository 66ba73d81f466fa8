"""The recovery monitor: heartbeats, a crashed (SIGKILLed) training process detected and
recovered, poll errors recorded without stopping, and the ``recover`` / ``monitor`` commands."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

import lineage
from lineage.application.monitor import LocalRunStatusSource, PollFailure, RecoveryMonitor
from lineage.cli.main import main
from lineage.domain import Run, ids
from lineage.ports import RunSignal

CHILD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    import lineage

    db, folder = sys.argv[1], Path(sys.argv[2])
    tracker = lineage.Tracker(db, heartbeat_interval_s=0.05, batch_interval_s=0.005)
    run = tracker.start_run("doomed", job={"checkpoint_policy": {"strategy": "steps",
                                                                 "save_every": 10}})
    for step in range(1, 31):
        run.log_step(step, {"loss": 1.0 / step})
        if run.should_checkpoint(step):
            path = folder / f"step-{step}.bin"
            path.write_bytes(f"weights {step}".encode())
            run.save_checkpoint(path, step=step, includes_optimizer=True)
    tracker.flush()
    print(run.id, flush=True)
    while True:  # idle (a long evaluation, a stuck data loader...): heartbeats say it is alive
        time.sleep(1)
""")


def heartbeats(tracker: lineage.Tracker, run_id: Any) -> list[Any]:
    stream = ids.heartbeat_stream_id(run_id)
    return [tracker.mapper.to_domain_event(s) for s in tracker.store.read_stream(stream)]


def test_an_idle_open_run_heartbeats_and_an_active_or_finished_one_does_not(
        any_url: str, make_tracker: Callable[..., Any]) -> None:
    tracker = make_tracker(any_url, heartbeat_interval_s=3600)  # beats driven by hand here
    run = tracker.start_run("sft")
    assert tracker.heartbeats.beat_idle() == 0  # no step yet: this process is not training it
    run.log_step(1, {"loss": 1.0})
    assert tracker.heartbeats.beat_idle() == 0  # first look
    assert tracker.heartbeats.beat_idle() == 1  # no new step since: idle
    run.log_step(2, {"loss": 0.5})
    assert tracker.heartbeats.beat_idle() == 0  # stepping: the steps are the heartbeat
    assert tracker.heartbeats.beat_idle() == 1
    run.finish().wait()
    assert tracker.heartbeats.beat_idle() == 0
    tracker.flush()

    beats = heartbeats(tracker, run.id)
    assert [(b.run_id, b.pid, b.last_step) for b in beats] == [(run.id, os.getpid(), 1),
                                                              (run.id, os.getpid(), 2)]
    assert [b.originator_version for b in beats] == [1, 2]
    assert "HeartbeatRecorded" not in [type(e).__name__ for e in tracker.run_events(run.id)]


def test_a_sigkilled_training_process_is_detected_and_recovered(
        sqlite_url: str, make_tracker: Callable[..., Any], tmp_path: Path) -> None:
    child = subprocess.Popen([sys.executable, "-c", CHILD, sqlite_url, str(tmp_path)],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        line = child.stdout.readline().strip()
        assert line, "the child did not start"
        run_id = UUID(line)
        tracker = make_tracker(sqlite_url)
        deadline = time.monotonic() + 60
        while len(heartbeats(tracker, run_id)) < 2:  # it is idle and alive: it heartbeats
            assert time.monotonic() < deadline, "no heartbeat from the idle child"
            time.sleep(0.05)
        alive = RecoveryMonitor(tracker, [LocalRunStatusSource(tracker, stale_after_s=30)])
        assert alive.poll_once() == ([], [])
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(30)

    source = LocalRunStatusSource(tracker, stale_after_s=30)
    last = source.last_activity(run_id)
    assert last is not None
    source.clock = lambda: last + timedelta(seconds=31)  # as if half a minute went by
    monitor = RecoveryMonitor(tracker, [source])

    (action,), errors = monitor.poll_once()

    assert errors == [] and action.error is None and action.result is not None
    assert action.signal.signal == "heartbeat.lost"
    result = action.result
    assert result.recovered and result.checkpoint is not None and result.checkpoint.step == 30
    old = tracker.run(run_id)
    assert old.job_status == "superseded" and old.failures == 1
    failure = next(e for e in tracker.run_events(run_id, steps=False)
                   if isinstance(e, Run.FailureDetected))
    assert (failure.signal, failure.error_type, failure.retryable, failure.step) == (
        "heartbeat.lost", "ProcessLost", True, 30)
    assert tracker.run(result.new_run.id).job_status == "pending"  # type: ignore[union-attr]
    assert monitor.poll_once() == ([], [])  # nothing left: the new run waits for a trainer


class Exploding:
    name = "tinker"

    def poll(self) -> list[RunSignal]:
        raise ConnectionError("tinker API unreachable")


def test_poll_failures_are_recorded_and_the_monitor_goes_on(
        any_url: str, make_tracker: Callable[..., Any], tmp_path: Path) -> None:
    tracker = make_tracker(any_url)
    corrupted = tracker.start_run("corrupted")
    path = tmp_path / "c.bin"
    path.write_bytes(b"c")
    corrupted.log_step(1, {"loss": 1.0})
    corrupted.save_checkpoint(path, step=1, includes_optimizer=True)
    corrupted.record_failure("backend_corrupted", corrupted=True)
    crashed_by_a_bug = tracker.start_run("bug")
    with pytest.raises(ZeroDivisionError), crashed_by_a_bug:
        crashed_by_a_bug.log_step(1, {"loss": 1.0})
        raise ZeroDivisionError  # not retryable: left for a person
    tracker.flush()
    slept: list[float] = []
    reports: list[tuple[Any, Any]] = []
    monitor = RecoveryMonitor(tracker, [Exploding(), LocalRunStatusSource(tracker)],
                              interval_s=15, sleep=slept.append)

    polls = monitor.run(max_polls=2, report=lambda a, e: reports.append((a, e)))

    assert polls == 2 and slept == [15]
    assert [(e.source, e.error_type) for e in monitor.errors] == [
        ("tinker", "ConnectionError"), ("tinker", "ConnectionError")]
    assert all(isinstance(e, PollFailure) for e in monitor.errors)
    ((action,), _), (second, _) = reports
    assert action.signal.run_id == corrupted.id and action.result.recovered  # type: ignore[union-attr]
    assert second == []
    assert tracker.run(crashed_by_a_bug.id).job_status == "failed"


def test_a_failed_request_is_no_dead_run_however_retryable(
        any_url: str, make_tracker: Callable[..., Any]) -> None:
    """A failure signalled ``request.*`` (one call to a training service failed; the client may
    retry it) is counted, but only the run's own retryable failures make it a candidate."""
    tracker = make_tracker(any_url)
    request = tracker.start_run("a request failed")
    request.log_step(1, {"loss": 1.0})
    request.record_failure("RequestFailedError", "503", signal="request.tinker.http_503",
                           retryable=True)
    dead = tracker.start_run("the run failed")
    dead.log_step(1, {"loss": 1.0})
    dead.record_failure("RequestFailedError", "503", signal="request.tinker.http_503",
                        retryable=True)
    dead.record_failure("WorkerLost", signal="exception", retryable=True)
    dead.record_failure("RequestFailedError", "429", signal="request.tinker.http_429",
                        retryable=True)  # a later request failure leaves the run's standing
    tracker.flush()

    signals = LocalRunStatusSource(tracker).poll()

    assert [s.run_id for s in signals] == [dead.id]
    assert tracker.run(request.id).failures == 1 and tracker.run(dead.id).failures == 3


def corrupted_db(tmp_path: Path) -> tuple[str, lineage.RunHandle]:
    db = str(tmp_path / "m.db")
    with lineage.Tracker(db) as tracker:
        run = tracker.start_run("sft")
        for step in range(1, 13):
            run.log_step(step, {"loss": 1.0})
            if step % 5 == 0:
                path = tmp_path / f"c{step}.bin"
                path.write_bytes(f"c{step}".encode())
                run.save_checkpoint(path, step=step, includes_optimizer=True)
        run.record_failure("backend_corrupted", corrupted=True, step=12)
    return db, run


def test_the_recover_command_launches_the_trainer_with_the_resume_point(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db, run = corrupted_db(tmp_path)
    seen = tmp_path / "env.json"
    launcher = (f"{sys.executable} -c \"import json, os; json.dump({{k: v for k, v in "
                f"os.environ.items() if k.startswith('LINEAGE_')}}, open('{seen}', 'w'))\"")

    code = main(["--db", db, "recover", str(run.id)[:8], "--exec", launcher, "--json"])
    out = json.loads(capsys.readouterr().out)

    assert code == 0 and out["status"] == "recovered"
    assert out["lost_steps"] == {"first_step": 11, "last_step": 12, "count": 2}
    env = json.loads(seen.read_text())
    assert env["LINEAGE_RESUME_RUN"] == out["new_run_id"]
    assert env["LINEAGE_RESUME_FROM_RUN"] == str(run.id)
    assert (env["LINEAGE_RESUME_STEP"], env["LINEAGE_RESUME_OPTIMIZER"]) == ("10", "1")
    assert env["LINEAGE_RESUME_PATH"] == str(tmp_path / "c10.bin")
    assert env["LINEAGE_DATABASE_URL"] == db

    again = main(["--db", db, "recover", str(run.id), "--json"])
    assert again == 1 and json.loads(capsys.readouterr().out)["status"] == "already_recovered"
    assert main(["--db", db, "runs", "--status", "superseded", "--json"]) == 0
    assert [r["id"] for r in json.loads(capsys.readouterr().out)] == [str(run.id)]


def test_a_launcher_that_says_try_later_is_retried_then_exhausted(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db, run = corrupted_db(tmp_path)
    launcher = f"{sys.executable} -c \"raise SystemExit(75)\""

    code = main(["--db", db, "recover", str(run.id), "--exec", launcher, "--attempts", "2",
                 "--initial-delay", "0", "--max-delay", "0"])

    out = capsys.readouterr().out
    assert code == 1 and out.startswith("exhausted: ")
    assert "exited with status 75" in out


def test_the_monitor_command_recovers_a_corrupted_run_once(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db, run = corrupted_db(tmp_path)

    code = main(["--db", db, "monitor", "--once", "--json"])

    assert code == 0
    [action] = json.loads(capsys.readouterr().out)["actions"]
    assert action["signal"]["run_id"] == str(run.id) and action["error"] is None
    assert action["result"]["status"] == "recovered"
    assert main(["--db", db, "monitor", "--once"]) == 0
    assert capsys.readouterr().out == ""  # nothing left to do


def test_recover_with_a_reason_records_the_failure_first(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = str(tmp_path / "r.db")
    with lineage.Tracker(db) as tracker:
        run = tracker.start_run("sft")
        run.log_step(1, {"loss": 1.0})
        path = tmp_path / "c.bin"
        path.write_bytes(b"c")
        run.save_checkpoint(path, step=1, includes_optimizer=True)

    assert main(["--db", db, "recover", str(run.id)]) == 1  # nothing failed: refused
    assert capsys.readouterr().out.startswith("no_failure: ")
    assert main(["--db", db, "recover", str(run.id), "--reason", "node 7 died"]) == 0
    assert capsys.readouterr().out.startswith("recovered: ")
    with lineage.Tracker(db) as tracker:
        failure = next(e for e in tracker.run_events(run.id, steps=False)
                       if isinstance(e, Run.FailureDetected))
    assert (failure.signal, failure.error_type, failure.message) == (
        "operator", "OperatorReported", "node 7 died")


class FlagsLate:
    """A backend that flags runs corrupted after they finished (issue 9: no failure is
    recorded on a finished run)."""

    name = "tinker"

    def __init__(self, *run_ids: UUID) -> None:
        self.run_ids = run_ids

    def poll(self) -> list[RunSignal]:
        return [RunSignal(run_id, "tinker.corrupted", "backend_corrupted", "flagged late",
                          corrupted=True) for run_id in self.run_ids]


def test_a_flag_on_a_finished_run_records_no_failure(
        make_tracker: Callable[..., Any], tmp_path: Path) -> None:
    tracker = make_tracker("memory://")
    with pytest.raises(RuntimeError), tracker.start_run("failed") as failed:
        failed.log_step(1, {"loss": 1.0})
        (tmp_path / "f.bin").write_bytes(b"f")
        failed.save_checkpoint(tmp_path / "f.bin", step=1, includes_optimizer=True)
        raise RuntimeError("lost the backend")
    with tracker.start_run("done") as done:
        done.log_step(1, {"loss": 1.0})
    monitor = RecoveryMonitor(tracker, [FlagsLate(failed.id, done.id)], sleep=lambda _: None)

    (recovered, left), errors = monitor.poll_once()

    assert errors == [] and recovered.error is None and left.error is None
    assert recovered.result is not None and recovered.result.recovered  # recovered as it is
    assert left.result is not None and left.result.status == "finished"  # left alone
    assert [tracker.run(run.id).failures for run in (failed, done)] == [1, 0]
    assert tracker.run(done.id).job_status == "completed"
