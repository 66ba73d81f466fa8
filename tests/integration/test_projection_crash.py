"""A projection worker SIGKILLed at random moments still projects every event exactly once.

DESIGN §5: each batch's rows and the projection's tracked position commit in one transaction,
so a worker killed at any moment resumes from its last committed position: no duplicate, no
gap. The parent records a scenario, then starts a worker (a child process catching up with
``batch_size=2``), kills it with SIGKILL after a random number of batches plus a random bit
more, restarts it, several times, and lets the last one finish. The live read models must then
equal a full rebuild, and the audit log must hold exactly one row per notification but the
step blocks'. The random seed is printed on failure.

The poisoned variant adds events no read model can apply (``test_quarantine.inject_poison``) in
the middle of the log: after the kills, the quarantine list must be the one a rebuild derives,
and every read model must have reached the head past them.
"""

from __future__ import annotations

import queue
import random
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

import lineage
from lineage.codec.step_read import BlockCodec
from lineage.projections.tables import audit
from tests.faults.helpers import children_stderr
from tests.integration.test_quarantine import dump, expected_quarantine, inject_poison
from tests.integration.test_read_models import record_corruption_scenario

pytestmark = pytest.mark.slow

KILLS = 6
BATCH = 2  # notifications: steps come ~1,000 to a block, so the log is short

WORKER = textwrap.dedent(f"""
    import sys
    from lineage.adapters.database import engine_for
    from lineage.bootstrap import open_store
    from lineage.projections import ProjectionRunner, all_projections
    from lineage.codec.mapper import make_mapper

    url = sys.argv[1]
    store = open_store(url, create=False)
    runner = ProjectionRunner(store, engine_for(url), make_mapper(), all_projections(),
                              batch_size={BATCH})
    print("started", flush=True)
    while any(status.lag for status in runner.status()):  # a killed worker's lock may linger
        runner.catch_up(lambda at, head: print("at", at, head, flush=True))
    print("done", flush=True)
""")


class Worker:
    """The worker child process, its output lines read on a thread (so reads can time out)."""

    def __init__(self, url: str, script: Path, stderr: Any) -> None:
        root = Path(__file__).resolve().parents[2]
        self.process = subprocess.Popen([sys.executable, str(script), url], cwd=root,
                                        stdout=subprocess.PIPE, stderr=stderr, text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.strip())
        self.lines.put("eof")

    def next_line(self) -> str:
        return self.lines.get(timeout=60)

    def kill(self) -> None:
        self.process.kill()  # SIGKILL: no cleanup, maybe in the middle of a transaction
        self.process.wait(30)


def record_scenario(tracker: lineage.Tracker, *, poison: bool = False) -> list[dict[str, int]]:
    """The read-model tests' recovery scenario, plus three busier runs (~4,700 events); with
    ``poison``, hostile events after each of the first two. Returns where the poison went."""
    placed = []
    record_corruption_scenario(tracker)
    for index in range(3):
        run = tracker.start_run(f"busy-{index}", job={"model": "llama"})
        for step in range(1, 1501):
            run.log_step(step, {"loss": 1.0 / step, "lr": 3e-4, "grad_norm": 0.5}, epoch=step // 500)
            if step % 250 == 0:
                run.save_checkpoint(f"tinker://busy-{index}/weights/step-{step}", step=step)
                run.log_eval(step, {"val_loss": 2.0 / step}, dataset="val")
        if index == 1:
            run.record_failure("OOM", "out of memory", step=1500)
        run.finish("failed" if index == 1 else "completed")
        if poison and index < 2:
            placed.append(inject_poison(tracker, run.id))
    tracker.flush()
    return placed


def kill_repeatedly(url: str, tmp_path: Path, rng: random.Random) -> list[str]:
    """Kill the worker ``KILLS`` times at random moments, then let one finish.
    Returns the last line each killed worker printed before its kill."""
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    last_lines = []
    for number in range(KILLS):
        with (tmp_path / f"worker-{number}.err").open("w") as stderr:
            worker = Worker(url, script, stderr)
            try:
                last_lines.append(run_a_while(worker, rng))
            finally:
                worker.kill()
    with (tmp_path / "worker-last.err").open("w") as stderr:
        wait_for_done(Worker(url, script, stderr))
    return last_lines


def run_a_while(worker: Worker, rng: random.Random) -> str:
    """Let the worker commit a random number of batches, then a random bit more."""
    line = worker.next_line()
    for _ in range(rng.randint(0, 12)):
        if line in ("done", "eof"):
            break
        line = worker.next_line()
    time.sleep(rng.uniform(0, 0.03))
    return line


def wait_for_done(worker: Worker) -> None:
    lines = [worker.next_line()]
    while lines[-1] not in ("done", "eof"):
        lines.append(worker.next_line())
    worker.process.wait(30)
    assert lines[-1] == "done" and worker.process.returncode == 0, lines[-3:]


def killed_mid_way(line: str) -> bool:
    """The worker had committed some batches ("at POSITION HEAD") but not reached the head."""
    words = line.split()
    return words[0] == "at" and words[1] != words[2]


def notification_ids(store: Any) -> list[int]:
    """Every notification id in the log but step blocks' (PostgreSQL's may have gaps)."""
    found: list[int] = []
    start = 1
    while page := store.read_log(start, 1000):
        found.extend(note.id for note in page if not BlockCodec.is_step(note.topic))
        start = page[-1].id + 1
    return found


def check(tracker: lineage.Tracker, placed: list[dict[str, int]]) -> None:
    views = tracker.views
    head = tracker.store.max_position()
    assert {status.position for status in views.runner.status()} == {head}
    skipped = set().union(*map(expected_quarantine, placed))
    assert {(row["read_model"], row["position"]) for row in views.runner.quarantined()} == skipped
    with views.engine.connect() as conn:
        positions = list(conn.execute(select(audit.c.position).order_by(audit.c.position)).scalars())
    # one row per event but steps (and those audit skipped): none twice, none missed
    assert positions == [at for at in notification_ids(tracker.store) if ("audit", at) not in skipped]
    live = dump(views.engine)
    views.runner.rebuild()
    assert dump(views.engine) == live


def crash_and_check(url: str, tmp_path: Path, make_tracker: Callable[..., Any], *,
                    poison: bool = False) -> None:
    seed = random.randrange(2**32)
    tracker = make_tracker(url)
    placed = record_scenario(tracker, poison=poison)
    try:
        moments = kill_repeatedly(url, tmp_path, random.Random(seed))
        faults = sum(map(killed_mid_way, moments))
        assert faults >= KILLS // 2, moments  # the kills mattered
        stuck = sum(status.lag > 0 for status in tracker.views.runner.status())
        check(tracker, placed)
    except AssertionError as error:
        errors = children_stderr(tmp_path, "worker-*.err", tail=2000)
        raise AssertionError(f"seed {seed}; worker stderr: {errors}") from error
    print(f"\nprojection crash ({tracker.views.engine.dialect.name}, poison={poison}): "
          f"{KILLS + 1} worker cycles, {faults} killed mid-way, "
          f"{len(tracker.views.runner.quarantined())} quarantined rows, "
          f"{stuck} read models stuck (seed {seed})")


def test_sigkilled_sqlite_projection_worker_projects_each_event_once(
        tmp_path: Path, make_tracker: Callable[..., Any]) -> None:
    crash_and_check(str(tmp_path / "lineage.db"), tmp_path, make_tracker)


@pytest.mark.postgres
def test_sigkilled_postgres_projection_worker_projects_each_event_once(
        postgres_url: str, tmp_path: Path, make_tracker: Callable[..., Any]) -> None:
    crash_and_check(postgres_url, tmp_path, make_tracker)


def test_sigkilled_sqlite_worker_over_poison_quarantines_like_a_rebuild(
        tmp_path: Path, make_tracker: Callable[..., Any]) -> None:
    crash_and_check(str(tmp_path / "lineage.db"), tmp_path, make_tracker, poison=True)


@pytest.mark.postgres
def test_sigkilled_postgres_worker_over_poison_quarantines_like_a_rebuild(
        postgres_url: str, tmp_path: Path, make_tracker: Callable[..., Any]) -> None:
    crash_and_check(postgres_url, tmp_path, make_tracker, poison=True)
