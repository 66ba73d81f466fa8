"""``JobQueue``: order, failures kept rather than raised, idle exit, close."""

from __future__ import annotations

import functools
import logging
import threading

from lineage.application.background import JobQueue

log = logging.getLogger(__name__)


def make_queue(idle_exit_s: float = 30.0) -> JobQueue:
    return JobQueue("test-jobs", label="test jobs", idle_exit_s=idle_exit_s, log=log)


def test_jobs_run_in_order_on_the_named_thread() -> None:
    queue = make_queue()
    seen: list[tuple[int, str]] = []

    def record(number: int) -> None:
        seen.append((number, threading.current_thread().name))

    for number in range(5):
        queue.put(functools.partial(record, number))
    assert queue.drain(5)
    assert seen == [(n, "test-jobs") for n in range(5)]
    queue.close(5)


def test_a_failing_job_is_kept_in_errors_and_the_next_one_still_runs() -> None:
    queue = make_queue()
    done: list[str] = []

    def fail() -> None:
        raise RuntimeError("boom")

    queue.put(fail)
    queue.put(lambda: done.append("after"))
    assert queue.drain(5)
    assert [str(e) for e in queue.errors] == ["boom"]
    assert done == ["after"]
    queue.close(5)


def test_an_idle_thread_ends_and_a_later_job_starts_another() -> None:
    queue = make_queue(idle_exit_s=0.01)
    threads: list[threading.Thread] = []
    queue.put(lambda: threads.append(threading.current_thread()))
    assert queue.drain(5)
    threads[0].join(5)
    assert not threads[0].is_alive()
    queue.put(lambda: threads.append(threading.current_thread()))
    assert queue.drain(5)
    assert len(threads) == 2 and threads[1] is not threads[0]
    queue.close(5)


def test_close_drains_then_ignores_later_jobs() -> None:
    queue = make_queue()
    done: list[int] = []
    queue.put(lambda: done.append(1))
    queue.close(5)
    queue.put(lambda: done.append(2))
    assert queue.drain(1)
    assert done == [1]
