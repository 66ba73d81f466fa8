"""Hard crashes: a training process is SIGKILLed at random moments while it logs steps.

DESIGN §4: "acknowledged" means committed, so on a hard crash only the unflushed tail is lost,
and the next start can tell which steps were durable. The child below logs steps in a loop and,
each time ``flush()`` returns, prints the highest step it knows is committed. The parent kills it
at random moments, starts a new child (continuing the same run, or starting a new one), and at
the end checks that every step the child was told was committed is there, exactly once, in
order, and that every stored event decodes. The random seed is printed on failure.
"""

from __future__ import annotations

import os
import queue
import random
import subprocess
import sys
import textwrap
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID, uuid5

import pytest

import lineage
from lineage.adapters.eventstore import SQLiteEventStore
from lineage.codec.step_read import BlockCodec
from lineage.domain import StepRecorded, ids

pytestmark = pytest.mark.slow

NS = UUID("00000000-0000-0000-0000-00000000dead")
ROUNDS = ("new", "same", "same", "new", "same")  # continue the latest run, or start another
EXPLICIT_EVERY = 3  # every third step is logged with an explicit (deterministic) event id
RETRIED_TAIL = 30  # a restarted child re-sends this many of the last steps: all no-ops

CHILD = textwrap.dedent(f"""
    import sys
    from uuid import UUID, uuid5
    import lineage

    NS = UUID("{NS}")
    url, run_arg = sys.argv[1], sys.argv[2]
    tracker = lineage.Tracker(url, batch_size=50, batch_interval_s=0.005)
    handle = tracker.start_run("crashy") if run_arg == "new" else tracker.run_handle(run_arg)
    last = tracker.run(handle.id).last_step
    start = 0 if last is None else last + 1

    def log(step):
        explicit = uuid5(NS, f"{{handle.id}}:{{step}}") if step % {EXPLICIT_EVERY} == 0 else None
        handle.log_step(step, {{"loss": 1.0 / (step + 1)}}, event_id=explicit)

    # A client that is unsure what was stored re-sends its tail; the ids make it a no-op.
    for step in range(max(0, start - {RETRIED_TAIL}), start):
        if step % {EXPLICIT_EVERY} == 0:
            log(step)
    print("run", handle.id, start, flush=True)
    step = start
    while True:
        log(step)
        if step % 200 == 199:
            handle.flush()
            print("committed", step, flush=True)
        step += 1
""")


@dataclass
class Child:
    process: subprocess.Popen[str]
    lines: queue.Queue[str | None] = field(default_factory=queue.Queue)

    def start_reading(self) -> None:
        def read() -> None:
            assert self.process.stdout is not None
            for line in self.process.stdout:
                self.lines.put(line)
            self.lines.put(None)

        threading.Thread(target=read, daemon=True).start()

    def next_line(self, timeout: float = 60) -> str | None:
        return self.lines.get(timeout=timeout)

    def drain(self) -> list[str]:
        """Every line printed before the kill (the reader stops at end of file)."""
        left = []
        while (line := self.next_line()) is not None:
            left.append(line)
        return left


def run_child(script: Path, url: str, run_arg: str, stderr: Any) -> Child:
    root = Path(__file__).resolve().parents[2]
    child = Child(subprocess.Popen(
        [sys.executable, str(script), url, run_arg], stdout=subprocess.PIPE, stderr=stderr,
        text=True, cwd=root, env={**os.environ, "LINEAGE_DATABASE_URL": url}))
    child.start_reading()
    return child


def crash_repeatedly(url: str, tmp_path: Path, seed: int) -> dict[UUID, int]:
    """Runs ROUNDS children, killing each at a random moment. Returns, per run, the highest
    step a child was told was committed (-1 when none was)."""
    rng = random.Random(seed)
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    told: dict[UUID, int] = {}
    run_id: UUID | None = None
    for number, kind in enumerate(ROUNDS):
        run_arg = "new" if kind == "new" or run_id is None else str(run_id)
        with (tmp_path / f"child-{number}.err").open("w") as stderr:
            child = run_child(script, url, run_arg, stderr)
            try:
                first = child.next_line()
                assert first is not None and first.startswith("run "), first
                run_id = UUID(first.split()[1])
                told.setdefault(run_id, -1)
                for _ in range(rng.randint(0, 5)):  # k flushes, then a random bit more
                    line = child.next_line()
                    assert line is not None and line.startswith("committed "), line
                    told[run_id] = int(line.split()[1])
                time.sleep(rng.uniform(0, 0.15))
            finally:
                child.process.kill()  # SIGKILL: no atexit, no flush, no clean close
                child.process.wait(30)
            for line in child.drain():  # printed before the kill: those flushes returned
                if line.startswith("committed ") and line.endswith("\n"):
                    told[run_id] = int(line.split()[1])
    return told


def check_runs(tracker: lineage.Tracker, told: dict[UUID, int]) -> None:
    assert len(told) == ROUNDS.count("new")
    for run_id, committed in told.items():
        blocks = [BlockCodec(tracker.mapper).decode(stored)
                  for stored in tracker.store.read_stream(ids.step_stream_id(run_id))]
        versions = [seq for block in blocks for seq in range(block.seq_from, block.seq_to + 1)]
        assert versions == list(range(1, len(versions) + 1))  # contiguous, no duplicate
        steps = tracker.steps(run_id)  # every stored step decodes
        assert all(isinstance(step, StepRecorded) for step in steps)
        numbers = [step.step for step in steps]
        assert numbers == list(range(len(numbers)))  # as logged: a prefix, each step once
        assert committed < len(numbers)  # nothing the child was told was committed is lost
        assert len({step.event_id for step in steps}) == len(steps)
        assert all(step.event_id == uuid5(NS, f"{run_id}:{step.step}")
                   for step in steps if step.step % EXPLICIT_EVERY == 0)
        events = tracker.run_events(run_id)  # the run's own events decode too
        assert len(events) == len(steps) + 1
        assert tracker.run(run_id).status == "running"


def test_sigkilled_sqlite_writer_loses_only_its_unflushed_tail(tmp_path: Path) -> None:
    seed = random.randrange(2**32)
    url = str(tmp_path / "crash.db")
    told = crash_repeatedly(url, tmp_path, seed)

    store = SQLiteEventStore(url)
    try:
        assert store.integrity_check() == "ok", f"seed {seed}"
    finally:
        store.close()
    with lineage.Tracker(url) as tracker:
        try:
            check_runs(tracker, told)
        except AssertionError as error:
            raise AssertionError(f"seed {seed}, committed per run {told}") from error


@pytest.mark.postgres
def test_sigkilled_postgres_writer_loses_only_its_unflushed_tail(
        postgres_url: str, tmp_path: Path) -> None:
    seed = random.randrange(2**32)
    told = crash_repeatedly(postgres_url, tmp_path, seed)
    with lineage.Tracker(postgres_url) as tracker:
        try:
            check_runs(tracker, told)
        except AssertionError as error:
            raise AssertionError(f"seed {seed}, committed per run {told}") from error
