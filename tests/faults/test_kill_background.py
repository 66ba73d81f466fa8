"""Fault injection: the retention worker and the recovery executor are SIGKILLed at random points.

It runs once per durable store: a SQLite file, and a fresh PostgreSQL schema (the ``postgres``
marker). Each cycle runs a child process that opens the same store URL as the test and kills it
(SIGKILL: no atexit, no flush) at a random moment:

- retention: the child trains a run with ``keep_last=2``, saving a checkpoint every few steps;
  a kill between a save's commit and its ``Retired`` event leaves the run over its policy, one
  between the ``Retired`` event and the deletion leaves bytes to delete;
- recovery: the child recovers a corrupted run with a short lease and a slow resume; a kill
  leaves the recovery not started, held by a dead executor, or done. The first cycle (and about
  a quarter of the others) kills while the resume runs, so every store sees a dead holder.

After the kills, a restart repairs: a run handle (retention's repair) and a monitor pass (which
takes over recoveries whose lease expired). Then: no run recovering, every corrupted run
recovered exactly once, no run with more live unpinned checkpoints than ``keep_last``, no
retired checkpoint whose bytes were not dealt with, and the read models equal a rebuild. The
figures (cycles, kills, gaps and stuck recoveries seen, left) are printed per store at the end of
the session; the store and the seed are in any failure message.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

import lineage
from lineage import LocalRunStatusSource, RecoveryMonitor
from lineage.domain import Run
from tests.faults.helpers import KILL_FIGURES, children_stderr
from tests.integration.test_read_models import dump

pytestmark = pytest.mark.slow

CYCLES = 5  # of each kind; about a minute in all on a loaded laptop
KEEP_LAST = 2
LEASE_S = 1.0  # the recovery child's lease: renewed every third of it while alive

RETENTION_CHILD = textwrap.dedent(f"""
    import sys, pathlib
    import lineage
    url, folder, run_arg = sys.argv[1], pathlib.Path(sys.argv[2]), sys.argv[3]
    tracker = lineage.Tracker(url, batch_interval_s=0.002)
    policy = {{"strategy": "steps", "save_every": 2, "keep_last": {KEEP_LAST}}}
    run = (tracker.start_run("kept", job={{"checkpoint_policy": policy}}) if run_arg == "new"
           else tracker.run_handle(run_arg))
    step = (tracker.run(run.id).last_step or 0) + 1
    print("run", run.id, flush=True)
    while True:
        run.log_step(step, {{"loss": 1.0 / step}})
        if step % 2 == 0:
            path = folder / f"{{run.id.hex[:8]}}-{{step}}.bin"
            path.write_bytes(f"{{run.id}}:{{step}}".encode())
            run.save_checkpoint(path, step=step, includes_optimizer=True).wait()
            print("saved", step, flush=True)
        step += 1
""")

RECOVERY_CHILD = textwrap.dedent(f"""
    import sys, time, pathlib
    import lineage
    url, folder = sys.argv[1], pathlib.Path(sys.argv[2])
    tracker = lineage.Tracker(url, recovery_lease_s={LEASE_S}, batch_interval_s=0.002)
    run = tracker.start_run("corrupted")
    for step in range(1, 31):
        run.log_step(step, {{"loss": 1.0 / step}})
        if step % 10 == 0:
            path = folder / f"{{run.id.hex[:8]}}-{{step}}.bin"
            path.write_bytes(f"{{run.id}}:{{step}}".encode())
            run.save_checkpoint(path, step=step, includes_optimizer=True)
    run.record_failure("backend_corrupted", "flagged", corrupted=True, retryable=True).wait()
    print("ready", run.id, flush=True)
    def resume(checkpoint, new_run):
        print("resuming", new_run.id, flush=True)
        time.sleep(0.4)
    result = tracker.recover(run.id, resume=resume)
    print("done", result.status, flush=True)
    time.sleep(60)
""")


def child(script: Path, *args: str, stderr: Any) -> subprocess.Popen[str]:
    root = Path(__file__).resolve().parents[2]
    return subprocess.Popen([sys.executable, str(script), *args], stdout=subprocess.PIPE,
                            stderr=stderr, text=True, cwd=root,
                            env={**os.environ, "PYTHONPATH": str(root)})


def kill_after(process: subprocess.Popen[str], until: int | str, delay: float) -> list[str]:
    """Read ``until`` lines (or up to the line ``until``), wait ``delay`` seconds, SIGKILL.
    Returns the lines read (their words joined by one space)."""
    assert process.stdout is not None
    seen: list[str] = []
    try:
        while len(seen) < until if isinstance(until, int) else (not seen or seen[-1] != until):
            line = process.stdout.readline()
            assert line, "the child ended early"
            seen.append(" ".join(line.split()))
        time.sleep(delay)
    finally:
        process.kill()
        process.wait(30)
    return seen


def overfull(tracker: lineage.Tracker) -> list[UUID]:
    """Runs with more live checkpoints than keep_last, pinned ones aside."""
    gaps = []
    for view in tracker.runs():
        live = [a for a in tracker.artifacts(type="checkpoint", run=view.id)
                if a.status == "live" and not a.pins]
        if len(live) > KEEP_LAST:
            gaps.append(view.id)
    return gaps


def kill_retention(url: str, folder: Path, rng: random.Random) -> dict[str, int]:
    script = folder / "retention_child.py"
    script.write_text(RETENTION_CHILD)
    run_arg, gaps = "new", set[UUID]()
    for cycle in range(CYCLES):
        with (folder / f"retention-{cycle}.err").open("w") as stderr:
            process = child(script, url, str(folder), run_arg, stderr=stderr)
            first, *_ = kill_after(process, 1 + rng.randint(1, 4), rng.uniform(0, 0.05))
        run_arg = first.split()[1] if rng.random() < 0.5 else "new"  # continue, or a new run
        with lineage.Tracker(url) as look:  # before any repair: did the kill leave a gap?
            gaps.update(overfull(look))
    return {"cycles": CYCLES, "kills": CYCLES, "runs_left_over_keep_last": len(gaps)}


def kill_recovery(url: str, folder: Path, rng: random.Random) -> dict[str, int]:
    script = folder / "recovery_child.py"
    script.write_text(RECOVERY_CHILD)
    phases = {"killed_before_start": 0, "killed_recovering": 0, "killed_after_done": 0}
    for cycle in range(CYCLES):
        mid_resume = cycle == 0 or rng.random() < 0.25  # else anywhere from "ready" on
        with (folder / f"recovery-{cycle}.err").open("w") as stderr:
            process = child(script, url, str(folder), stderr=stderr)
            ready, *_ = (kill_after(process, 2, rng.uniform(0, 0.2)) if mid_resume
                         else kill_after(process, 1, rng.uniform(0, 2.0)))
        with lineage.Tracker(url) as look:
            view = look.run(UUID(ready.split()[1]))
        phase = ("killed_after_done" if view.superseded_by is not None else "killed_recovering"
                 if view.recovering else "killed_before_start")
        phases[phase] += 1
    return {"cycles": CYCLES, "kills": CYCLES, **phases}


def wait_for_leases(tracker: lineage.Tracker) -> None:
    """Until every lease a dead executor held has expired (at most LEASE_S from its last
    renewal; the monitor then takes the recovery over)."""
    from datetime import UTC, datetime

    deadline = time.monotonic() + 60
    while any(view.recovering and view.recovery_lease_until is not None
              and view.recovery_lease_until > datetime.now(UTC) for view in tracker.runs()):
        assert time.monotonic() < deadline, "a lease never expired"
        time.sleep(0.1)


def repair_and_check(url: str) -> dict[str, int]:
    with lineage.Tracker(url) as tracker:
        for view in tracker.runs():
            if view.name == "kept" and view.status == "running":
                tracker.run_handle(view.id)  # the next start of the run: retention's repair
        tracker.flush()
        wait_for_leases(tracker)
        monitor = RecoveryMonitor(tracker, [LocalRunStatusSource(tracker, stale_after_s=3600)],
                                  sleep=lambda _: None)
        actions, errors = monitor.poll_once()
        assert errors == [] and all(a.result is not None and a.result.recovered
                                    for a in actions), actions
        assert monitor.poll_once() == ([], [])  # nothing left for a second pass
        tracker.flush()
        orphans = check_recoveries(tracker)
        gaps_left = overfull(tracker)
        assert gaps_left == []
        for artifact in tracker.artifacts(type="checkpoint"):
            if artifact.status == "retired":  # every retired checkpoint's bytes dealt with
                assert artifact.deletion in ("deleted", "already_gone"), artifact
                assert not Path(artifact.uri.removeprefix("file://")).exists()
        views = tracker.views
        views.runner.catch_up()
        live = dump(views.engine)
        views.runner.rebuild()
        assert dump(views.engine) == live
        takeovers = sum(1 for view in corrupted_runs(tracker)
                        for e in tracker.run_events(view.id, steps=False)
                        if isinstance(e, Run.RecoveryFailed)
                        and e.error_type == "RecoveryLeaseExpired")
    return {"takeovers": takeovers, "recovered_by_restart": len(actions),
            "stuck_left": 0, "gaps_left": len(gaps_left), "abandoned_runs_ended": orphans}


def corrupted_runs(tracker: lineage.Tracker) -> list[Any]:
    """The runs the recovery children corrupted (their resumed runs take the same name)."""
    return [view for view in tracker.runs() if view.name == "corrupted"
            and view.resumed_from is None]


def check_recoveries(tracker: lineage.Tracker) -> int:
    """Every corrupted run recovered exactly once; returns how many runs a dead executor
    started and never handed to a trainer (the takeover ended them failed)."""
    corrupted = corrupted_runs(tracker)
    assert len(corrupted) == CYCLES
    for view in corrupted:
        history = [type(e).__name__ for e in tracker.run_events(view.id, steps=False)]
        assert not view.recovering and view.job_status == "superseded", (view, history)
        assert history.count("RecoveryCompleted") == 1, history
        assert tracker.run(view.superseded_by).resumed_from == view.id
    successors = {view.superseded_by for view in corrupted}
    left = [view for view in tracker.runs() if view.resumed_from is not None
            and view.id not in successors]
    assert all(view.job_status == "failed" for view in left), left  # none left pending
    return len(left)


def check_figures(figures: dict[str, dict[str, int]]) -> None:
    """This store's figures agree: the restart recovered exactly the recoveries a kill
    interrupted, and took over exactly those a dead executor held."""
    recovery, restart = figures["recovery"], figures["after restart"]
    interrupted = recovery["killed_before_start"] + recovery["killed_recovering"]
    assert restart["recovered_by_restart"] == interrupted, figures
    assert restart["takeovers"] == recovery["killed_recovering"], figures
    assert restart["abandoned_runs_ended"] <= restart["takeovers"], figures


def test_sigkilled_retention_and_recovery_leave_nothing_stuck_after_a_restart(
        durable_url: str, tmp_path: Path) -> None:
    store = "postgres" if durable_url.startswith("postgresql") else "sqlite"
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    try:
        figures = {"retention": kill_retention(durable_url, tmp_path, rng),
                   "recovery": kill_recovery(durable_url, tmp_path, rng)}
        figures["after restart"] = repair_and_check(durable_url)
        check_figures(figures)
    except AssertionError as error:
        raise AssertionError(f"{store}, seed {seed}; children's stderr: "
                             f"{children_stderr(tmp_path)}") from error
    KILL_FIGURES.append((store, seed, figures))
    print(f"\nfault injection on {store} (seed {seed}): {figures}")
