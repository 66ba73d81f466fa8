"""PostgreSQL behind a loopback proxy we control (``tests.faults.proxy``): connections cut
mid-batch, the server unreachable for a while, and unreachable past the bound; and the
server's disk full (its genuine ``disk_full`` error, injected at the store adapter). The shared
server itself is never touched; each test has its own schema (the ``postgres_url`` fixture).
What was stored is read back directly, not through the proxy."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import make_url

import lineage
from lineage.errors import DISK_FULL, UNREACHABLE, StepGapError
from tests.faults.helpers import FIGURES, Timed, check_prefix, stored_steps, train_while_mending
from tests.faults.proxy import TcpProxy

pytestmark = pytest.mark.postgres
MakeTracker = Callable[..., Any]


@pytest.fixture
def proxy(postgres_url: str) -> Iterator[TcpProxy]:
    url = make_url(postgres_url)
    with TcpProxy(url.host or "127.0.0.1", url.port or 5432) as running:
        yield running


def through(proxy: TcpProxy, postgres_url: str) -> str:
    return make_url(postgres_url).set(host="127.0.0.1", port=proxy.port).render_as_string(
        hide_password=False)


def read_back(postgres_url: str, run_id: Any) -> list[int]:
    from lineage.bootstrap import open_store

    store = open_store(postgres_url)
    try:
        return stored_steps(store, run_id)
    finally:
        store.close()


def committed_run(tracker: Any, name: str, steps: int) -> tuple[Any, list[int]]:
    """A run of ``steps`` committed steps on ``tracker``, and the steps logged."""
    run = tracker.start_run(name)
    logged = list(range(steps))
    for step in logged:
        run.log_step(step, {"loss": 1.0})
    tracker.flush()
    return run, logged


def refused_after_200_steps(proxy: TcpProxy, postgres_url: str, make_tracker: MakeTracker,
                            name: str, **settings: Any) -> tuple[Any, Any, list[int]]:
    """A tracker through ``proxy`` with a run of 200 committed steps; then the proxy refuses
    every connection (the server is unreachable)."""
    tracker = make_tracker(through(proxy, postgres_url), export_otlp=False, **settings)
    run, logged = committed_run(tracker, name, 200)
    proxy.refuse()
    FIGURES["faults_injected"] += 1
    return tracker, run, logged


def test_connections_cut_mid_batch_lose_nothing(
        proxy: TcpProxy, postgres_url: str, make_tracker: MakeTracker) -> None:
    tracker = make_tracker(through(proxy, postgres_url), retry_for_s=120, export_otlp=False)
    run = tracker.start_run("cut mid-batch")
    tracker.flush()
    done = threading.Event()

    def cutter() -> None:  # cut whatever is open, many times while the writer commits
        while not done.wait(0.05):
            proxy.cut()

    cutting = threading.Thread(target=cutter, daemon=True)
    cutting.start()
    logged = []
    for step in range(20_000):
        run.log_step(step, {"loss": 1.0 / (step + 1)})
        logged.append(step)
        if step % 2000 == 1999:
            time.sleep(0.2)  # let the writer commit some batches under the cutter
    done.set()
    cutting.join()
    tracker.flush()
    FIGURES["faults_injected"] += proxy.cuts
    FIGURES["postgres_connections_cut"] += proxy.cuts
    check_prefix(read_back(postgres_url, run.id), logged, scenario="postgres cut mid-batch", transient=True)
    assert tracker.writer.stats.lost_events == 0


def test_a_server_unreachable_for_a_while_loses_nothing(
        proxy: TcpProxy, postgres_url: str, make_tracker: MakeTracker) -> None:
    # An attempt against an unreachable server takes up to 20 s (2 x the pool's 10 s wait).
    tracker, run, logged = refused_after_200_steps(proxy, postgres_url, make_tracker,
                                                   "server away", retry_for_s=300)
    train_while_mending(tracker, run, logged, proxy.resume, after_retries=2, first=200, until=1000,
                        pause_s=0.002)
    tracker.flush()
    check_prefix(read_back(postgres_url, run.id), logged, scenario="postgres away a while", transient=True)
    assert tracker.writer.stats.give_ups == 0


def test_a_server_unreachable_past_the_bound_is_reported_and_leaves_a_prefix(
        proxy: TcpProxy, postgres_url: str, make_tracker: MakeTracker) -> None:
    tracker, run, logged = refused_after_200_steps(proxy, postgres_url, make_tracker,
                                                   "server gone", retry_for_s=2.0, queue_size=100)
    log_step = Timed(run.log_step, "postgres unreachable, full queue, retry_for_s=2")
    with pytest.raises(lineage.WriterError) as error:
        for step in range(200, 10**6):  # blocks on the full queue, then gets the error
            log_step(step, {"loss": 1.0})
            logged.append(step)
    assert error.value.reason == UNREACHABLE and "unreachable server" in str(error.value)
    stored = read_back(postgres_url, run.id)
    assert error.value.lost == len(logged) - len(stored)
    check_prefix(stored, logged, scenario="postgres gone", transient=False)
    with pytest.raises(StepGapError, match="unreachable server"):
        run.log_step(10**6, {"loss": 1.0})

    proxy.resume()  # back: other runs and commands go on
    run.finish("failed", reason="lost steps").wait(60)
    other = tracker.start_run("after the outage")
    other.log_step(0, {"loss": 1.0})
    tracker.close()
    assert read_back(postgres_url, other.id) == [0] and read_back(postgres_url, run.id) == stored


def server_disk_full(postgres_url: str) -> BaseException:
    """A genuine psycopg error for SQLSTATE 53100 (disk_full), raised by the server itself (a
    shared server's disk is never filled for a test)."""
    import psycopg

    from tests.conftest import _libpq_url

    with psycopg.connect(_libpq_url(postgres_url.split("?")[0]), autocommit=True) as conn:
        try:
            conn.execute("DO $$ BEGIN RAISE EXCEPTION USING ERRCODE = 'disk_full', MESSAGE = "
                         "'could not extend file: No space left on device'; END $$")
        except psycopg.errors.DiskFull as error:
            return error
    raise AssertionError("the server did not raise disk_full")


def full_disk_on(tracker: Any, error: BaseException) -> threading.Event:
    """Make ``tracker``'s appends fail with ``error`` (as the library raises it) until the
    event returned is set."""
    from tests.faults.conftest import raise_as_library

    mended = threading.Event()
    original = tracker.store.recorder.insert_events

    def insert_events(*args: Any, **kwargs: Any) -> Any:
        if not mended.is_set():
            raise_as_library(error)
        return original(*args, **kwargs)

    tracker.store.recorder.insert_events = insert_events
    FIGURES["faults_injected"] += 1
    FIGURES["postgres_disk_full_injected"] += 1
    return mended


def test_a_full_disk_on_the_server_for_a_while_loses_nothing(
        postgres_url: str, make_tracker: MakeTracker) -> None:
    tracker = make_tracker(postgres_url, retry_for_s=120, export_otlp=False)
    run, logged = committed_run(tracker, "server disk full a while", 100)
    mended = full_disk_on(tracker, server_disk_full(postgres_url))
    step = 100
    while step < 600 or not mended.is_set():  # training goes on, without flush
        run.log_step(step, {"loss": 1.0})
        logged.append(step)
        step += 1
        if tracker.writer.stats.store_retries >= 3:
            mended.set()
        time.sleep(0.001)
    tracker.flush()
    check_prefix(read_back(postgres_url, run.id), logged, scenario="postgres disk full a while",
                 transient=True)
    assert tracker.writer.stats.store_retries >= 3 and tracker.writer.stats.lost_events == 0


def test_a_full_disk_on_the_server_past_the_bound_is_reported_as_disk_full(
        postgres_url: str, make_tracker: MakeTracker) -> None:
    tracker = make_tracker(postgres_url, retry_for_s=1.0, export_otlp=False)
    run, logged = committed_run(tracker, "server disk full", 100)
    mended = full_disk_on(tracker, server_disk_full(postgres_url))
    for step in range(100, 300):
        run.log_step(step, {"loss": 1.0})
        logged.append(step)
    with pytest.raises(lineage.WriterError) as error:
        tracker.flush()  # waits for the give-up, then reports
    assert error.value.reason == DISK_FULL and "disk full" in str(error.value)
    stored = read_back(postgres_url, run.id)
    assert error.value.lost == len(logged) - len(stored) > 0
    check_prefix(stored, logged, scenario="postgres disk full", transient=False)
    with pytest.raises(StepGapError, match="disk full"):
        run.log_step(300, {"loss": 1.0})
    mended.set()  # space again: other runs and commands go on
    run.finish("failed", reason="lost steps").wait(60)
    other = tracker.start_run("after the disk full")
    other.log_step(0, {"loss": 1.0})
    tracker.flush()
    assert read_back(postgres_url, other.id) == [0] and read_back(postgres_url, run.id) == stored
