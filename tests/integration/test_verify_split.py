"""``lineage verify`` with the log scan split over two processes (``lineage.log_scan`` and
``lineage.adapters.process_scan``), on SQLite and PostgreSQL: the second process (a real one)
gives the digests, positions and roots the one-process scan gives (PostgreSQL's gaps in
notification ids included), the same report of damage in either part of the log, and when it
fails the scan is still whole and right."""

from __future__ import annotations

import time
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from lineage.adapters.process_scan import ProcessFirstRows
from lineage.application.log_scan import FIRST_SHARE, scan
from lineage.application.verification import Verifier, VerifyReport
from lineage.bootstrap_proof import open_verifier, scan_first_rows
from tests.integration.test_tamper import History, build


def _pair(history: History, tracker: Any) -> tuple[Verifier, Verifier]:
    """The same verifier twice: one process, and two from the first row on (``min_rows``)."""
    one = open_verifier(tracker.store, public_key=history.public)
    two = open_verifier(tracker.store, public_key=history.public)
    assert isinstance(two.first_rows, ProcessFirstRows)
    one.first_rows, two.first_rows.min_rows = None, 1
    two.first_rows.load = lambda: 0.0  # a machine with a core free
    assert two.first_rows.wanted(1)
    return one, two


def _same(one: Any, two: Any) -> None:
    assert (two.digests, two.positions, two.roots) == (one.digests, one.positions, one.roots)
    assert two.frontier.root() == one.frontier.root()


def test_two_processes_scan_and_verify_as_one(durable_url: str, tmp_path: Path,
                                              make_tracker: Any) -> None:
    history = build(durable_url, tmp_path, make_tracker)
    try:
        tracker = make_tracker(durable_url, export_otlp=False)
        one, two = _pair(history, tracker)
        sizes = {seal.head.size for seal in one.seals(VerifyReport())} | {0, 1}
        alone = scan(tracker.store, sizes)
        _same(alone, scan(tracker.store, sizes, first_rows=two.first_rows))
        assert len(alone.roots) == len(sizes)
        middle = int(tracker.store.max_position() * FIRST_SHARE)
        ids = [row.id for row in history.rows]
        assert ids[0] <= middle < ids[-1]  # both processes have rows to scan
        first_part = two.first_rows.start(middle, frozenset(sizes))()  # the process answers
        assert first_part is not None and 0 < len(first_part.positions) < len(alone.positions)
        assert list(first_part.positions) == [i for i in alone.positions if i <= middle]

        report = two.verify()
        assert report.ok and report.to_dict() == one.verify().to_dict()

        history.tamper.modify(history.run_rows(3)[0], b"run-c", b"run-x")  # after the middle
        damaged = two.verify()
        assert not damaged.ok and damaged.to_dict() == one.verify().to_dict()
        first = next(row for row in ids if row <= middle and row in history.run_rows(1))
        history.tamper.delete(first)  # and before it
        damaged = two.verify()
        assert damaged.problems[0].position == min(i for i in ids if i > first)
        assert damaged.to_dict() == one.verify().to_dict()
    finally:
        history.tamper.close()


def test_a_failed_second_process_leaves_the_scan_whole(tmp_path: Path, make_tracker: Any,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    url = str(tmp_path / "lineage.db")
    tracker = make_tracker(url, export_otlp=False)
    with tracker.start_run("r") as run:
        for step in range(50):
            run.log_step(step, {"loss": 1.0})
            run.log_eval(step, {"acc": 0.5})
    tracker.flush()
    missing = ProcessFirstRows(partial(scan_first_rows, f"sqlite:///{tmp_path}/none.db"),
                               min_rows=1, load=lambda: 0.0)
    with caplog.at_level("INFO", logger="lineage.verify"):
        split = scan(tracker.store, {3, 40}, first_rows=missing)
    assert "second process failed" in caplog.text and "no lineage database" in caplog.text
    _same(scan(tracker.store, {3, 40}), split)


def test_the_second_process_is_wanted_for_long_logs_with_a_core_free() -> None:
    job = partial(scan_first_rows, "memory://")
    free = ProcessFirstRows(job, min_rows=400_000, load=lambda: 0.9, cores=2)
    assert free.wanted(400_000) and not free.wanted(399_999)
    busy = ProcessFirstRows(job, min_rows=400_000, load=lambda: 1.6, cores=2)
    assert not busy.wanted(10_000_000)


def _hangs(end: int, sizes: frozenset[int]) -> Any:
    """A second process's job that never answers in time (run in the child)."""
    time.sleep(60)


def test_a_second_process_that_hangs_is_killed_and_its_rows_scanned_here(
        tmp_path: Path, make_tracker: Any, caplog: pytest.LogCaptureFixture) -> None:
    tracker = make_tracker(str(tmp_path / "lineage.db"), export_otlp=False)
    with tracker.start_run("r") as run:
        for step in range(50):
            run.log_eval(step, {"acc": 0.5})
    tracker.flush()
    hung = ProcessFirstRows(_hangs, min_rows=1, load=lambda: 0.0, timeout_s=1.0)
    started = time.monotonic()
    with caplog.at_level("INFO", logger="lineage.verify"):
        split = scan(tracker.store, {3, 40}, first_rows=hung)
    assert time.monotonic() - started < 30  # not the child's 60 s
    assert "second process failed" in caplog.text and "no answer in time" in caplog.text
    _same(scan(tracker.store, {3, 40}), split)
    abandoned = hung.start(10, frozenset())  # the caller failed: the child is stopped at once
    started = time.monotonic()
    assert abandoned(abandon=True) is None and time.monotonic() - started < 30


def test_no_load_average_means_one_process() -> None:
    def no_load() -> float:
        raise OSError("no load average here")
    assert not ProcessFirstRows(partial(scan_first_rows, "memory://"), min_rows=1,
                                load=no_load).wanted(10)
    assert not ProcessFirstRows(partial(scan_first_rows, "memory://"), min_rows=1,
                                load=lambda: 0.0).wanted(4_000_001)  # too long to hold
