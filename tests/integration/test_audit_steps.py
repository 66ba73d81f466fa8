"""Step events in the audit (``audit(include_steps=True)``): made from the step metrics rows,
one stored block each, merged in log order with the audit rows; every filter; paging that
never skips or repeats a step (a page never cuts a block)."""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import func, select

from lineage.cli.main import main
from lineage.codec.jsontext import strict_dumps
from lineage.projections.tables import audit, step_metrics
from lineage.timestamps import iso

MakeTracker = Callable[..., Any]
STEP = "run.step_recorded"
COLUMNS = [column.name for column in audit.columns]


def log_groups(tracker: Any, run: Any, sizes: Sequence[int], *, first: int = 0,
               evaluate: bool = True) -> int:
    """Log steps in groups of ``sizes``, each committed on its own (so at least one block
    each), with an evaluation between groups; returns the next step number."""
    step = first
    for group, size in enumerate(sizes):
        for _ in range(size):
            metrics = {"loss": 1 / (step + 1), "tokens_seen": step}
            if step % 5 == 3:
                metrics["loss"] = math.nan
            run.log_step(step, metrics)
            step += 1
        tracker.flush()
        if evaluate:
            run.log_eval(step - 1, {"val_loss": float(group)})
    return step


def block_count(tracker: Any, run: Any) -> int:
    tracker.flush()
    tracker.views.runner.catch_up()
    with tracker.views.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(step_metrics)
                                .where(step_metrics.c.run_id == str(run.id))).scalar_one())


def steps_of(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [row for row in rows if row["kind"] == STEP]


def test_every_step_of_a_multi_block_run_in_log_order(any_url: str,
                                                      make_tracker: MakeTracker) -> None:
    tracker = make_tracker(any_url, actor="alice")
    run = tracker.start_run("blocks")
    log_groups(tracker, run, [7, 1, 30, 12])
    run.log_step(50, {f"metric_{i:03d}": float(i) for i in range(60)})  # a summary over 500
    run.finish().wait()
    assert block_count(tracker, run) >= 5

    rows = tracker.audit(subject=run.id, include_steps=True, limit=10_000)
    stored = tracker.steps(run.id)
    listed = steps_of(rows)
    assert [row["event_id"] for row in listed] == [str(step.event_id) for step in stored]
    assert [row["summary"] for row in listed] == [
        f"step {step.step}: {strict_dumps(step.metrics)}"[:500] for step in stored]
    assert len(listed[-1]["summary"]) == 500
    assert [row["occurred_at"] for row in listed] == [iso(step.occurred_at) for step in stored]
    assert all(list(row) == COLUMNS for row in rows)
    assert {(row["actor"], row["subject_type"], row["subject_id"], row["run_id"], row["tenant_id"])
            for row in listed} == {("alice", "run", str(run.id), str(run.id), "default")}
    positions = [row["position"] for row in rows]
    assert positions == sorted(positions)
    assert len({row["position"] for row in listed}) == block_count(tracker, run)
    without = tracker.audit(subject=run.id, limit=10_000)
    assert [row for row in rows if row["kind"] != STEP] == without
    assert not steps_of(without)


def test_filters_apply_to_steps(any_url: str, make_tracker: MakeTracker) -> None:
    tracker = make_tracker(any_url, actor="alice", heartbeat_interval_s=3600)
    first, second = tracker.start_run("first"), tracker.start_run("second")
    log_groups(tracker, first, [3, 4])
    log_groups(tracker, second, [2], evaluate=False)
    checkpoint = first.save_checkpoint("s3://bucket/ckpt-6", step=6, checksum="sha256:" + "ab" * 32)
    checkpoint.wait()
    assert tracker.heartbeats.beat_idle() == 0 and tracker.heartbeats.beat_idle() == 2

    def kinds(**filters: Any) -> Counter[str]:
        return Counter(row["kind"] for row in tracker.audit(limit=10_000, **filters))

    assert kinds(subject=first.id, include_steps=True)[STEP] == 7
    assert kinds(subject=second.id, include_steps=True)[STEP] == 2
    assert kinds(subject=checkpoint.id, include_steps=True)[STEP] == 0
    assert kinds(subject=checkpoint.id, include_steps=True)["artifact.registered"] == 1
    assert kinds(include_steps=True, kind="step") == {STEP: 9}
    assert kinds(kind="step") == {} and kinds(include_steps=True, kind="checkpoint")[STEP] == 0
    assert kinds(include_steps=True, kind="run.")[STEP] == 9
    assert kinds(include_steps=True, actor="alice")[STEP] == 9
    assert kinds(include_steps=True, actor="bob") == {}
    assert "run.heartbeat" not in kinds() and kinds(include_steps=True)["run.heartbeat"] == 2


def test_actor_and_time_filters(durable_url: str, make_tracker: MakeTracker) -> None:
    alice = make_tracker(durable_url, actor="alice")
    run = alice.start_run("shared")
    log_groups(alice, run, [5], evaluate=False)
    time.sleep(0.01)
    between = datetime.now(UTC)
    time.sleep(0.01)
    bob = make_tracker(durable_url, actor="bob")
    other = bob.start_run("bob's")
    log_groups(bob, other, [4], evaluate=False)

    def steps(**filters: Any) -> list[str]:
        rows = bob.audit(include_steps=True, kind="step", limit=10_000, **filters)
        return [row["summary"].split(":")[0] for row in rows]

    assert steps(actor="alice") == [f"step {s}" for s in range(5)]
    assert steps(actor="bob") == [f"step {s}" for s in range(4)]
    assert steps(until=between) == [f"step {s}" for s in range(5)]
    assert steps(since=between) == [f"step {s}" for s in range(4)]
    assert steps(since=between, actor="alice") == []
    assert steps(since="2000-01-01", until="2000-01-02") == []
    assert steps(since=between.timestamp() - 3600) == steps()
    rows = bob.audit(include_steps=True, until=between, limit=10_000)
    assert all(row["recorded_at"] <= iso(between) for row in rows)


@pytest.mark.parametrize("limit", [1, 7, 100])
def test_paging_lists_every_step_once(any_url: str, make_tracker: MakeTracker, limit: int) -> None:
    tracker = make_tracker(any_url)
    run = tracker.start_run("long")
    last = log_groups(tracker, run, [250, 3, 1, 401, 90, 17, 1, 600])
    other = tracker.start_run("other")
    log_groups(tracker, other, [20, 5])
    assert last == 1363
    everything = tracker.audit(include_steps=True, limit=10_000)
    pages = page_through(lambda after: tracker.audit(include_steps=True, after=after, limit=limit))
    assert [row for page in pages for row in page] == everything
    ids = [row["event_id"] for row in steps_of(everything)]
    assert len(ids) == len(set(ids)) == 1388
    sizes = Counter(row["position"] for row in everything)
    for page in pages:  # whole blocks only, and no more than one block past the limit
        assert all(Counter(row["position"] for row in page)[p] == sizes[p] for p in {
            row["position"] for row in page})
        assert len(page) < limit + max(sizes.values())
    mine = page_through(lambda after: tracker.audit(subject=run.id, include_steps=True,
                                                    kind="step", after=after, limit=limit))
    assert [row["summary"].split(":")[0] for page in mine for row in page] == [
        f"step {s}" for s in range(last)]


def page_through(page_after: Callable[[int], list[dict[str, Any]]]) -> list[list[dict[str, Any]]]:
    """Pages by ``after`` = the last position seen, to the first empty page."""
    pages, after = [], 0
    while page := page_after(after):
        pages.append(page)
        after = page[-1]["position"]
    return pages


def test_cli_audit_steps_pages(tmp_path: Any, make_tracker: MakeTracker,
                               capsys: pytest.CaptureFixture[str],
                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    db = str(tmp_path / "a.db")
    tracker = make_tracker(db)
    run = tracker.start_run("cli")
    log_groups(tracker, run, [40, 2, 33])
    tracker.close()
    pages: list[list[dict[str, Any]]] = []
    after = 0
    while True:
        assert main(["--db", db, "audit", "--steps", "--limit", "5", "--after", str(after),
                     "--json"]) == 0
        page = json.loads(capsys.readouterr().out)
        if not page:
            break
        pages.append(page)
        after = page[-1]["position"]
    assert [row["summary"].split(":")[0] for page in pages for row in steps_of(page)] == [
        f"step {s}" for s in range(75)]
    assert main(["--db", db, "audit", "--steps", "--limit", "5"]) == 0
    out = capsys.readouterr().out
    last = pages[0][-1]
    assert last["summary"].split(":")[0] + ":" in out
    assert f"more: --after {last['position']}" in out
