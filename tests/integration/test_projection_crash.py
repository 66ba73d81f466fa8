"""A projection worker SIGKILLed at random moments still projects every event exactly once.

DESIGN §5: each batch's rows and the projection's tracked position commit in one transaction,
so a worker killed at any moment resumes from its last committed position: no duplicate, no
gap. The parent records a scenario, then starts a worker (a child process catching up with
``batch_size=50``), kills it with SIGKILL after a random number of batches plus a random bit
more, restarts it, several times, and lets the last one finish. The live read models must then
equal a full rebuild, and the audit log must hold exactly one row per notification. The random
seed is printed on failure.
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
from lineage.projections.tables import audit
from tests.integration.test_read_models import dump, record_corruption_scenario

pytestmark = pytest.mark.slow

KILLS = 6
BATCH = 50

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


def record_scenario(tracker: lineage.Tracker) -> None:
    """The read-model tests' recovery scenario, plus three busier runs (~4,700 events)."""
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
    tracker.flush()


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
    """Every notification id in the log (PostgreSQL's may have gaps)."""
    found: list[int] = []
    while page := store.read_log(found[-1] + 1 if found else 1, 1000):
        found.extend(note.id for note in page)
    return found


def check(tracker: lineage.Tracker) -> None:
    views = tracker.views
    head = tracker.store.max_position()
    assert {status.position for status in views.runner.status()} == {head}
    with views.engine.connect() as conn:
        positions = list(conn.execute(select(audit.c.position).order_by(audit.c.position)).scalars())
    assert positions == notification_ids(tracker.store)  # one row per event: none twice, none missed
    live = dump(views.engine)
    views.runner.rebuild()
    assert dump(views.engine) == live


def crash_and_check(url: str, tmp_path: Path, make_tracker: Callable[..., Any]) -> None:
    seed = random.randrange(2**32)
    tracker = make_tracker(url)
    record_scenario(tracker)
    try:
        moments = kill_repeatedly(url, tmp_path, random.Random(seed))
        assert sum(map(killed_mid_way, moments)) >= KILLS // 2, moments  # the kills mattered
        check(tracker)
    except AssertionError as error:
        errors = {p.name: p.read_text()[-2000:] for p in sorted(tmp_path.glob("worker-*.err"))
                  if p.read_text().strip()}
        raise AssertionError(f"seed {seed}; worker stderr: {errors}") from error


def test_sigkilled_sqlite_projection_worker_projects_each_event_once(
        tmp_path: Path, make_tracker: Callable[..., Any]) -> None:
    crash_and_check(str(tmp_path / "lineage.db"), tmp_path, make_tracker)


@pytest.mark.postgres
def test_sigkilled_postgres_projection_worker_projects_each_event_once(
        postgres_url: str, tmp_path: Path, make_tracker: Callable[..., Any]) -> None:
    crash_and_check(postgres_url, tmp_path, make_tracker)

