"""Retried writes and concurrent writers, on the real stores (SQLite file, PostgreSQL).

DESIGN §4: a retried write with the same ``event_id`` is a no-op, durably; two writers changing
one aggregate never lose an update, and a conflict is resolved by reloading and re-running the
command, so the invariants still hold (a finished run takes no evaluation).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import textwrap
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any
from uuid import UUID, uuid5

import pytest

import lineage
from lineage import RunFinishedError
from lineage.domain import Artifact, Run, StepRecorded

NS = UUID("00000000-0000-0000-0000-0000000001d0")
STEP_ID, ARTIFACT_ID, EVAL_ID = uuid5(NS, "step"), uuid5(NS, "artifact"), uuid5(NS, "eval")

MakeTracker = Callable[..., Any]


def counts(tracker: Any, run: Any) -> Counter[str]:
    return Counter(type(event).__name__ for event in tracker.run_events(run))


def registered(tracker: Any, artifact_id: UUID) -> int:
    return sum(isinstance(stored, Artifact.Registered)
               for stored in map(tracker.mapper.to_domain_event,
                                 tracker.store.read_stream(artifact_id)))


def assert_contiguous(tracker: Any, stream_id: UUID) -> None:
    versions = [e.originator_version for e in tracker.store.read_stream(stream_id)]
    assert versions == list(range(1, len(versions) + 1))


# -- (a) a retried write stores nothing new ------------------------------------------------------


def write_everything_once(tracker: Any, run: Any, checkpoint: Path) -> None:
    """What a retrying client sends: the same three writes with the same event ids."""
    run.log_step(1, {"loss": 0.5}, event_id=STEP_ID)
    tracker.flush()
    tracker.register_artifact(checkpoint, type="checkpoint", run=run, step=1,
                              event_id=ARTIFACT_ID)
    run.log_eval(1, {"accuracy": 0.9}, event_id=EVAL_ID).wait(30)


def test_a_retried_write_with_the_same_event_id_stores_nothing(
        durable_url: str, make_tracker: MakeTracker, tmp_path: Path) -> None:
    checkpoint = tmp_path / "ckpt.bin"
    checkpoint.write_bytes(b"weights " * 100)
    first = make_tracker(durable_url)
    run = first.start_run("idempotent")

    write_everything_once(first, run, checkpoint)
    expected = counts(first, run)
    assert expected == {"Started": 1, "StepRecorded": 1, "EvaluationRecorded": 1}
    artifact = first.artifacts(run=run)[0]

    write_everything_once(first, run, checkpoint)  # retried in the same process
    first.flush()
    assert counts(first, run) == expected
    assert len(first.steps(run)) == 1
    assert first.writer.stats.duplicate_events == 2  # the step and the evaluation
    first.close()

    again = make_tracker(durable_url)  # retried after a restart: the ids are durable
    handle = again.run_handle(run.id)
    write_everything_once(again, handle, checkpoint)
    again.flush()
    assert counts(again, run) == expected
    assert [s.event_id for s in again.steps(run)] == [STEP_ID]
    assert again.run(run).steps == 1 and again.run(run).evaluations == 1
    assert [a.id for a in again.artifacts()] == [artifact.id]
    assert registered(again, artifact.id) == 1
    assert_contiguous(again, run.id)


def test_a_write_retried_before_the_first_is_committed_is_stored_once(
        durable_url: str, make_tracker: MakeTracker) -> None:
    tracker = make_tracker(durable_url, batch_interval_s=600)  # commits only when asked
    run = tracker.start_run("quick retry")
    run.log_step(1, {"loss": 0.5}, event_id=STEP_ID)
    run.log_step(1, {"loss": 0.5}, event_id=STEP_ID)  # all four land in one batch
    first = run.log_eval(1, {"accuracy": 0.9}, event_id=EVAL_ID)
    retry = run.log_eval(1, {"accuracy": 0.9}, event_id=EVAL_ID)
    errors = []
    for pending in (first, retry):
        try:
            pending.wait(60)
        except lineage.LineageError as error:
            errors.append(error)
    try:
        tracker.flush()
    except lineage.WriterError as error:
        errors.append(error)
    assert counts(tracker, run) == {"Started": 1, "StepRecorded": 1, "EvaluationRecorded": 1}
    assert errors == []


# -- (b) concurrent writers on one aggregate -----------------------------------------------------


def record_many(handle: Any, tag: str, count: int) -> list[str]:
    """``count`` evaluations and failures tagged ``{tag}-{i}``; waits now and then so the two
    writers' batches interleave. Returns, per write, "ok" or the name of the error it raised."""
    pending = []
    for i in range(count):
        if i % 4 == 3:
            pending.append(handle.record_failure("OOM", f"{tag}-{i}", step=i))
        else:
            pending.append(handle.log_eval(i, {"accuracy": i / count}, dataset=f"{tag}-{i}"))
        if i % 10 == 0:
            with contextlib.suppress(Exception):  # collected below
                pending[-1].wait(120)
    outcomes = []
    for item in pending:
        try:
            item.wait(120)
            outcomes.append("ok")
        except Exception as error:
            outcomes.append(type(error).__name__)
    return outcomes


def tags_recorded(tracker: Any, run: Any) -> Counter[str]:
    tags: Counter[str] = Counter()
    for event in tracker.run_events(run, steps=False):
        if isinstance(event, Run.EvaluationRecorded):
            tags[str(event.dataset)] += 1
        elif isinstance(event, Run.FailureDetected):
            tags[event.message] += 1
    return tags


def assert_no_update_lost(tracker: Any, run: Any, outcomes: dict[str, list[str]]) -> None:
    """Every write the caller was told succeeded is stored exactly once; a write that was
    refused failed loudly with ConflictError (DESIGN §4) and is not stored; nothing else."""
    stored = tags_recorded(tracker, run)
    told_ok = Counter(f"{tag}-{i}" for tag, results in outcomes.items()
                      for i, result in enumerate(results) if result == "ok")
    assert stored == told_ok
    assert {r for results in outcomes.values() for r in results} <= {"ok", "ConflictError"}
    assert_contiguous(tracker, run.id)


def test_two_trackers_on_one_run_lose_no_update(durable_url: str,
                                                make_tracker: MakeTracker) -> None:
    a, b = make_tracker(durable_url), make_tracker(durable_url)
    run = a.start_run("contended")
    handles = {"a": run, "b": b.run_handle(run.id)}
    outcomes: dict[str, list[str]] = {}
    go = threading.Barrier(2)

    def work(tag: str) -> None:
        go.wait(30)
        outcomes[tag] = record_many(handles[tag], tag, 120)

    threads = [threading.Thread(target=work, args=(tag,)) for tag in handles]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)

    assert sorted(outcomes) == ["a", "b"]
    assert all("ok" in results for results in outcomes.values())
    assert_no_update_lost(a, run, outcomes)
    assert_no_update_lost(b, run, outcomes)


WORKER = textwrap.dedent("""
    import contextlib
    import sys
    import lineage
    from tests.integration.test_idempotency_and_conflicts import record_many

    url, run_id, tag, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    tracker = lineage.Tracker(url)
    handle = tracker.run_handle(run_id)
    print("ready", flush=True)
    sys.stdin.readline()  # the parent says go once both are ready
    print(*record_many(handle, tag, count), flush=True)
    with contextlib.suppress(lineage.WriterError):  # refusals were reported per write above
        tracker.close()
""")


@pytest.mark.postgres
def test_two_processes_on_one_run_lose_no_update(postgres_url: str, make_tracker: MakeTracker,
                                                 tmp_path: Path) -> None:
    tracker = make_tracker(postgres_url)
    run = tracker.start_run("contended across processes")
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    root = Path(__file__).resolve().parents[2]
    workers: list[subprocess.Popen[str]] = []
    try:
        for tag in ("p", "q"):  # opened one after the other: see test_event_store's
            workers.append(subprocess.Popen(  # test_stores_opened_at_once_all_open
                [sys.executable, str(script), postgres_url, str(run.id), tag, "100"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=root,
                env={**os.environ, "PYTHONPATH": str(root)}))
            assert workers[-1].stdout is not None
            assert workers[-1].stdout.readline() == "ready\n"
        for worker in workers:
            assert worker.stdin is not None
            worker.stdin.write("go\n")
            worker.stdin.flush()
        outputs = [worker.communicate(timeout=300)[0] for worker in workers]
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    assert [worker.returncode for worker in workers] == [0, 0]
    outcomes = {tag: output.split() for tag, output in zip("pq", outputs, strict=True)}
    assert [len(results) for results in outcomes.values()] == [100, 100]
    assert all("ok" in results for results in outcomes.values())
    assert_no_update_lost(tracker, run, outcomes)


class LosesRaces:
    """An EventStore wrapper for writer B: before B appends to ``contended``, the rival tracker
    commits an event there first, ``times`` times, so B loses the race each time, as it would
    against a busy writer. Deterministic: no timing involved."""

    def __init__(self, store: Any, rival: Any, contended: UUID, times: int) -> None:
        self.store, self.rival, self.contended, self.remaining = store, rival, contended, times
        self.rival_events = 0

    def append(self, events: Any, event_ids: Any, expect: Any = ()) -> None:
        if self.remaining and any(e.originator_id == self.contended for e in events):
            self.remaining -= 1
            self.rival_events += 1
            self.rival.record_failure("Rival", f"rival-{self.rival_events}").wait(30)
        self.store.append(events, event_ids, expect)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


def test_a_writer_that_loses_several_races_still_commits(
        durable_url: str, make_tracker: MakeTracker) -> None:
    from lineage.bootstrap import open_store

    a = make_tracker(durable_url)
    run = a.start_run("busy rival")
    racing = LosesRaces(open_store(durable_url), run, run.id, times=8)
    b = make_tracker(durable_url, store=racing)
    b.run_handle(run.id).log_eval(1, {"accuracy": 0.5}, dataset="b-1").wait(60)
    assert tags_recorded(a, run)["b-1"] == 1
    assert racing.rival_events == 8
    assert_contiguous(a, run.id)


def test_a_conflict_on_one_run_fails_only_that_runs_commands(
        durable_url: str, make_tracker: MakeTracker) -> None:
    from lineage.bootstrap import open_store

    a = make_tracker(durable_url)
    contended = a.start_run("contended")
    racing = LosesRaces(open_store(durable_url), contended, contended.id, times=100)
    b = make_tracker(durable_url, store=racing, batch_interval_s=600, retry_for_s=2.0)
    own = b.start_run("b's own run")
    for step in range(50):
        own.log_step(step, {"loss": 1.0 / (step + 1)})
    own_eval = own.log_eval(49, {"accuracy": 0.5})
    contended_eval = b.run_handle(contended.id).log_eval(1, {"accuracy": 0.5}, dataset="b-1")
    with contextlib.suppress(lineage.ConflictError):  # giving up on the contended run is fine
        contended_eval.wait(120)  # also commits the steps queued before it (one batch)
    own_eval.wait(60)
    b.flush()
    assert [s.step for s in b.steps(own)] == list(range(50))
    assert b.run(own).evaluations == 1


def finished_elsewhere(durable_url: str, make_tracker: MakeTracker) -> tuple[Any, Any, Any, Any]:
    """Trackers A and B on one store; a run A finished while B's handle (``stale``) still
    caches it as running. Returns (a, b, run, stale)."""
    a, b = make_tracker(durable_url), make_tracker(durable_url)
    run = a.start_run("finished elsewhere")
    stale = b.run_handle(run.id)
    stale.log_eval(1, {"accuracy": 0.5}).wait(30)  # B now caches the run as running
    run.finish("completed").wait(30)
    return a, b, run, stale


def test_a_stale_writer_cannot_record_on_a_run_another_finished(
        durable_url: str, make_tracker: MakeTracker) -> None:
    a, _, run, stale = finished_elsewhere(durable_url, make_tracker)
    late = stale.log_eval(2, {"accuracy": 0.6})  # B's cache still says running
    with pytest.raises(RunFinishedError):
        late.wait(60)
    # A failure after the end is refused too (issue 9: it used to turn a completed run
    # corrupted): B's handle cannot know, so its writer thread refuses it, writing nothing.
    late_failure = stale.record_failure("Late", "flagged after the end", corrupted=True)
    with pytest.raises(RunFinishedError):
        late_failure.wait(60)

    assert [type(e).__name__ for e in a.run_events(run)] == [
        "Started", "EvaluationRecorded", "Finished"]
    view = a.run(run)
    assert (view.status, view.job_status, view.evaluations, view.failures) == (
        "completed", "completed", 1, 0)
    assert_contiguous(a, run.id)


def test_a_failure_after_finish_is_refused_at_once_and_writes_nothing(
        any_url: str, make_tracker: MakeTracker) -> None:
    tracker = make_tracker(any_url)
    run = tracker.start_run("done")
    run.log_step(1, {"loss": 1.0})
    run.finish("completed").wait()
    tracker.flush()
    before = tracker.store.max_position()
    reopened = tracker.run_handle(run.id)  # a handle opened on the finished run knows it too
    for handle in (run, reopened):
        with pytest.raises(RunFinishedError, match="no failures after a run finished") as error:
            handle.record_failure("backend_corrupted", "flagged late", corrupted=True)
        assert error.value.run_id == run.id and error.value.status == "completed"
    tracker.flush()
    assert tracker.store.max_position() == before
    assert tracker.run(run).job_status == "completed"


def test_a_stale_writer_cannot_log_steps_on_a_run_another_finished(
        durable_url: str, make_tracker: MakeTracker) -> None:
    a, b = make_tracker(durable_url), make_tracker(durable_url)
    run = a.start_run("finished elsewhere")
    stale = b.run_handle(run.id)
    stale.log_step(0, {"loss": 1.0})
    stale.flush()  # B now caches the run as running

    run.finish("completed").wait(30)
    stale.log_step(1, {"loss": 0.9})
    with pytest.raises(lineage.WriterError):
        stale.flush()
    assert [s.step for s in a.steps(run)] == [0]
    assert all(isinstance(s, StepRecorded) for s in a.steps(run))


def test_a_refused_write_nobody_waited_on_is_reported_by_flush_and_close(
        durable_url: str, make_tracker: MakeTracker) -> None:
    a, b, run, stale = finished_elsewhere(durable_url, make_tracker)
    stale.log_eval(2, {"accuracy": 0.6})  # refused on B's writer thread; nobody waits on it
    with pytest.raises(lineage.WriterError) as error:
        b.flush()
    assert error.value.lost == 1 and isinstance(error.value.failures[0], RunFinishedError)
    b.flush()  # reported once

    waited = stale.log_eval(3, {"accuracy": 0.7})
    with pytest.raises(RunFinishedError):
        waited.wait(60)
    b.flush()  # the caller saw that one: nothing more to report

    stale.log_eval(4, {"accuracy": 0.8})
    with pytest.raises(lineage.WriterError):
        b.close()
    assert a.run(run).evaluations == 1


def test_an_evaluation_on_a_finished_handle_is_refused_at_once(make_tracker: MakeTracker) -> None:
    tracker = make_tracker("memory://")
    run = tracker.start_run("r")
    run.finish().wait()
    before = tracker.store.max_position()
    with pytest.raises(RunFinishedError):
        run.log_eval(1, {"accuracy": 0.5})
    tracker.flush()
    assert tracker.store.max_position() == before


def test_starting_a_run_id_or_job_key_twice_is_refused_at_once(
        durable_url: str, make_tracker: MakeTracker) -> None:
    from lineage.errors import RunExistsError

    a, b = make_tracker(durable_url), make_tracker(durable_url)
    first = a.start_run("first", run_id="0123abcd-ef01-4234-8567-89abcdef0123")
    keyed = a.start_run("keyed", job={"key": "nightly-2026-11-30"})
    before = a.store.max_position()
    for tracker in (a, b):  # the same process, and another one
        with pytest.raises(RunExistsError, match="already used by run") as error:
            tracker.start_run("again", run_id=str(first.id))
        assert error.value.run_id == first.id
        with pytest.raises(RunExistsError, match="job key 'nightly-2026-11-30'"):
            tracker.start_run("again", job={"key": "nightly-2026-11-30"})
        assert tracker.writer.stats.conflicts_retried == 0  # refused, not retried as a conflict
    a.flush()
    b.flush()
    assert a.store.max_position() == before
    assert [v.name for v in a.runs()] == ["first", "keyed"] and keyed.id != first.id
