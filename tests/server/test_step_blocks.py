"""Step items of binary columns through a real server: stored as blocks with the client's event
ids, in the order of the calls around them, exactly once when sent again, refused for a
finished run; the columns round-trip every kind of value the common step holds."""

from __future__ import annotations

import json
import math
import struct
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import lineage
from lineage.remote.blocks import fits
from lineage.remote.columns import StepColumns, column_item, decode_columns
from lineage.remote.wire import call_item, step_rows
from tests.server.conftest import InProcessServer

NS = 1_700_000_000_000_000_000


def records(run_id: uuid.UUID, steps: range, **metrics_of: Any) -> list[tuple[Any, ...]]:
    """Queued steps (StepRecord order), as log_step queues a step with an int metric."""
    return [(run_id.int, step, None, {"loss": step / 10, "tokens_seen": step * 512},
             step // 10 or None, None, None, None, NS + step, None, None, None)
            for step in steps]


def packed(run_id: uuid.UUID, steps: range) -> list[tuple[Any, ...]]:
    """Queued steps as log_step queues the common one: floats packed beside one names tuple."""
    names = ("loss", "lr")
    return [(run_id.int, step, names, struct.pack("2d", step / 10, 1e-4), None, None, None,
             None, NS + step, None, None, None) for step in steps]


def test_columns_round_trip_floats_ints_nan_and_epochs_and_leave_the_rest_to_rows() -> None:
    run_id = uuid.uuid4()
    queued = records(run_id, range(1, 13))
    queued[3] = (*queued[3][:3], {"loss": math.nan, "tokens_seen": 2**62}, *queued[3][4:])
    item = column_item(run_id, queued, 7)
    assert item is not None and item["kinds"] == "dq"
    decoded = decode_columns(json.loads(json.dumps(item)), "items[0]", run_id, 7, 100)
    assert decoded.steps == list(range(1, 13)) and decoded.ns == [NS + s for s in range(1, 13)]
    assert decoded.epochs == [None] * 9 + [1, 1, 1]
    assert math.isnan(decoded.values[0][3]) and decoded.values[1][3] == 2**62
    mixed = [(*queued[0][:3], {"loss": 1}, *queued[0][4:]), queued[1]]  # int then float
    assert column_item(run_id, mixed, 7) is None
    timed = [(*queued[0][:9], datetime.now(UTC), "raw", None)]
    assert column_item(run_id, timed, 7) is None
    renamed = [queued[0], (*queued[1][:3], {"other": 1.0, "tokens_seen": 1}, *queued[1][4:])]
    assert column_item(run_id, renamed, 7) is None


def test_packed_steps_go_as_float_columns_and_as_rows_beside_a_dict() -> None:
    run_id = uuid.uuid4()
    queued = packed(run_id, range(1, 6))
    item = column_item(run_id, queued, 7)
    assert item is not None and item["kinds"] == "dd" and item["names"] == ["loss", "lr"]
    decoded = decode_columns(json.loads(json.dumps(item)), "items[0]", run_id, 7, 100)
    assert decoded.values == [[s / 10 for s in range(1, 6)], [1e-4] * 5]
    beside = [*queued, (*queued[0][:2], None, {"loss": 0.5}, *queued[0][4:])]
    mixed = column_item(run_id, beside, 7)
    assert mixed is None  # the names differ: rows
    rows = step_rows(run_id, beside, 7)["rows"]
    assert [row[1] for row in rows] == [{"loss": s / 10, "lr": 1e-4} for s in range(1, 6)] + [
        {"loss": 0.5}]


def test_ids_that_would_wrap_inside_a_block_go_through_the_writer() -> None:
    def item(first: int, count: int) -> StepColumns:
        return StepColumns(uuid.uuid4(), first, [1] * count, [1] * count, None, [], [])

    assert fits(item(0, 5000)) and fits(item((1 << 32) - 1000, 1000))
    assert not fits(item((1 << 32) - 999, 1000))
    assert not fits(item((1 << 32) - 10, 5000))


def _post(server: InProcessServer, token: str, items: list[Any], retry: bool = False) -> Any:
    response = server.http.post("/v1/batches", json={"retry": retry, "items": items},
                                headers={"Authorization": f"Bearer {token}"})
    return response.status_code, response.json()


def test_a_column_item_is_stored_once_with_the_client_s_ids_in_call_order(
        shared_server: InProcessServer, tmp_path: Path) -> None:
    token = shared_server.token(f"b-{uuid.uuid4().hex[:10]}")
    run_id = uuid.uuid4()
    first = uuid.uuid4().int & ~0xFFFF_FFFF  # far from a wrap
    now = datetime.now(UTC)
    start = call_item("start_run", None, ("blocks",), {"run_id": str(run_id)}, uuid.uuid4(), now)
    steps = column_item(run_id, records(run_id, range(1, 2501)), first)
    finish = call_item("finish", run_id, (), {}, uuid.uuid4(), now)
    status, answer = _post(shared_server, token, [start, steps, finish])
    assert status == 200 and all(result["ok"] for result in answer["results"]), answer
    for retry in (True, False):  # sent again (a lost answer), flagged or not
        status, answer = _post(shared_server, token, [steps], retry=retry)
        assert status == 200 and answer["results"][0].get("duplicate") is True, answer
    late = column_item(run_id, records(run_id, range(2501, 2503)), first + 2500)
    status, answer = _post(shared_server, token, [late])
    assert answer["results"][0]["error"]["type"] == "RunFinishedError"
    tracker = lineage.Tracker(shared_server.url, token=token, spool=tmp_path / "spool")
    try:
        stored = tracker.steps(run_id)
        events = tracker.run_events(run_id)
    finally:
        tracker.close()
    assert [s.step for s in stored] == list(range(1, 2501))
    assert [s.event_id.int for s in stored] == [first + i for i in range(2500)]
    assert stored[0].metrics == {"loss": 0.1, "tokens_seen": 512} and stored[99].epoch == 10
    assert (stored[0].tenant_id, stored[0].actor) == (token.split(".")[1], "alice")
    kinds = [type(e).__name__ for e in events]
    assert kinds[0] == "Started" and kinds[-1] == "Finished" and len(kinds) == 2502


@pytest.mark.postgres
def test_column_items_on_postgresql_are_stored_once(postgres_url: str, tmp_path: Path) -> None:
    server = InProcessServer(postgres_url)
    try:
        token = server.token(f"p-{uuid.uuid4().hex[:10]}")
        tracker = lineage.Tracker(server.url, token=token, spool=tmp_path / "spool")
        run = tracker.start_run("blocks on postgres")
        for step in range(1, 3001):
            run.log_step(step, {"loss": 0.5})
        tracker.flush()
        assert [s.step for s in tracker.steps(run.id)] == list(range(1, 3001))
        tracker.close()
    finally:
        server.stop()


def test_rows_and_columns_of_one_run_interleave_in_order(shared_server: InProcessServer,
                                                         tmp_path: Path) -> None:
    """Steps with durations go as rows (through the session's writer), the others as columns
    (appended straight): both append to one step stream, in the order logged."""
    tracker = lineage.Tracker(shared_server.url, token=shared_server.token("mixed"),
                              spool=tmp_path / "spool")
    try:
        run = tracker.start_run("mixed")
        for step in range(1, 301):
            extra = {"durations": {"forward": 0.1}} if step % 50 == 0 else {}
            run.log_step(step, {"loss": 1 / step}, **extra)
            if step % 25 == 0:
                tracker.flush()  # each kind in its own batch, one after the other
        stored = tracker.steps(run.id)
    finally:
        tracker.close()
    assert [s.step for s in stored] == list(range(1, 301))
    assert [s.step for s in stored if s.durations] == list(range(50, 301, 50))


def test_the_spool_counts_the_steps_of_a_column_item(tmp_path: Path) -> None:
    from lineage.adapters.spool import SqliteSpool

    run_id = uuid.uuid4()
    spool = SqliteSpool.new(tmp_path, server="http://127.0.0.1:1", tenant="a")
    try:
        spool.append([column_item(run_id, records(run_id, range(1, 5001)), 1)])
        assert [steps for _, _, steps, _ in spool.head(10, 20_000)] == [5000]
    finally:
        spool.close(remove_if_empty=False)
