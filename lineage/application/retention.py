"""Retention (DESIGN §7): after a checkpoint save is committed, retire what the policy does not
keep, then delete the bytes.

Order, so a crash at any point is safe:

1. the save commits (retention never looks at a save that is not committed: it plans from the
   Run aggregate's committed checkpoints, on the writer thread);
2. one command retires the checkpoints outside the policy: a ``Retired`` event each, with the
   reason and the policy. The Artifact aggregate refuses a pinned artifact (the run's best, a
   protected alias, a checkpoint another run resumed from or derived from), so the rule holds
   even against another writer;
3. the bytes are deleted through the ``ArtifactStorage`` port and the outcome recorded
   (``DeletionRecorded``), unless another live artifact records the same bytes at the same uri
   (two runs, or two steps, saving one file): then they are kept, outcome ``in_use``. A
   crash between 2 and 3 leaves retired artifacts with no outcome; ``repair`` (run once per
   tracker when a run with a retention policy starts) finds them and deletes again: deletion
   is idempotent and a file already gone is an outcome, not an error.

A crash between 1 and 2 (the save committed, its retirement not yet) leaves a run with more
than ``keep_last`` live checkpoints, and nothing would retire them unless that run saved again:
``repair`` also finds runs saved on this machine with more live checkpoints than their policy
keeps (``overfull_runs``) and applies the policy to them, as step 2 would have, so pinned
checkpoints stay. Applying a policy that is already met writes nothing, so repair is idempotent.

Steps 2 and 3 run on ``RetentionWorker``'s thread, never on the training thread, and never
raise into it: failures are logged and kept in ``errors``. After a save nothing there waits
for a commit: each write (the retirement, a deletion's outcome) is committed with the writer's
next batch, and its commit queues the next stage, so retention adds no commit of its own to a
training loop (``flush`` and ``close`` ask for the commits now).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple
from uuid import UUID

from lineage.application.background import JobQueue, deadline_after, seconds_left
from lineage.application.handles import Pending
from lineage.application.policies import CheckpointPolicy
from lineage.application.unit_of_work import UnitOfWork
from lineage.codec.dispatch import topic_of
from lineage.domain import Artifact
from lineage.ports import Deletion

if TYPE_CHECKING:
    from lineage.application.recording import Recorder
    from lineage.ports import ArtifactStorage

log = logging.getLogger(__name__)

RETIRED_TOPIC = topic_of(Artifact.Retired)
IDLE_EXIT_S = 30.0  # the worker thread ends after this long with nothing to do (restarts on use)
RUNS_REMEMBERED = 256  # runs whose checkpoints retention keeps track of (CheckpointWatch)


@dataclass(frozen=True)
class Held:
    """One checkpoint of a run, as retention sees it."""

    artifact_id: UUID
    step: int
    order: int  # save order within the run
    live: bool
    pins: tuple[str, ...] = ()


class Retirement(NamedTuple):
    """A retired artifact whose bytes are to be deleted."""

    artifact_id: UUID
    uri: str
    expected: tuple[str, str] | None  # (algorithm, digest) the bytes must still have


def plan_retention(policy: CheckpointPolicy, held: list[Held]) -> list[tuple[UUID, str]]:
    """Which live checkpoints to retire, oldest first, with the reason. Pure.

    Kept: the newest ``keep_last`` live checkpoints (by step, then save order) and every pinned
    one, in addition. Nothing is retired when ``keep_last`` is None.
    """
    if policy.keep_last is None:
        return []
    live = sorted((c for c in held if c.live), key=lambda c: (c.step, c.order))
    newest = {c.artifact_id for c in live[-policy.keep_last:]}
    reason = f"keep_last={policy.keep_last}: {policy.keep_last} newer checkpoint(s) kept"
    return [(c.artifact_id, reason) for c in live if c.artifact_id not in newest and not c.pins]


def retire_outside_policy(uow: UnitOfWork, run_id: UUID, policy: CheckpointPolicy,
                          known: RunCheckpoints | None = None) -> list[Retirement]:
    """Command handler (writer thread): retire the run's checkpoints the policy does not keep.

    Only checkpoints this run produced are considered (a store written when artifact ids were
    content-addressed may list another run's artifact among this run's checkpoints: that
    run's to retire). ``known`` (``CheckpointWatch.of(run_id)``): what earlier calls learnt of
    the run's checkpoints, brought up to date here.
    """
    run = uow.run(run_id)
    known = RunCheckpoints() if known is None else known
    fresh = [(artifact_id, (step, order)) for order, (artifact_id, step)
             in enumerate(run.checkpoints[known.taken:], known.taken)]
    if uow.is_stored(run_id):  # every checkpoint of the run is stored: take them in
        known.open.update(fresh)
        known.taken, fresh = len(run.checkpoints), []
    held = []
    for artifact_id, (step, order) in [*known.open.items(), *fresh]:
        artifact = uow.find_artifact(artifact_id)
        if artifact is None:
            continue
        if artifact.live and artifact.run_id == run_id:
            held.append(Held(artifact_id, step, order, True, tuple(artifact.pins)))
        elif artifact_id in known.open and uow.is_stored(artifact_id):  # gone for good
            del known.open[artifact_id]
    retired = []
    for artifact_id, reason in plan_retention(policy, held):
        artifact = uow.artifact(artifact_id)
        artifact.retire(reason, policy.name, uow.envelope(), uow.timestamp)
        retired.append(Retirement(artifact_id, artifact.uri, expected_bytes(artifact)))
    return retired


def expected_bytes(artifact: Any) -> tuple[str, str] | None:
    if artifact.checksum_algorithm and artifact.checksum:
        return artifact.checksum_algorithm, artifact.checksum
    return None


def record_deletion_in(uow: UnitOfWork, artifact_id: UUID, deletion: Deletion) -> None:
    uow.artifact(artifact_id).record_deletion(deletion.outcome, deletion.detail[:8192],
                                              uow.envelope(), uow.timestamp)


class RunCheckpoints:
    """What retention knows of one run's checkpoints: it has taken in the first ``taken`` (in
    save order, all stored) and must still look at ``open`` of them (artifact id -> (step,
    save order)): those not retired, expired or another run's as stored (an artifact never
    comes back to life). Only what is stored is learnt (``UnitOfWork.is_stored``), so a batch
    that fails leaves nothing wrong here."""

    __slots__ = ("open", "taken")

    def __init__(self) -> None:
        self.taken = 0
        self.open: dict[UUID, tuple[int, int]] = {}


class CheckpointWatch:
    """``RunCheckpoints`` of the last ``RUNS_REMEMBERED`` runs asked for, so a run's retention
    reads its live checkpoints, not every checkpoint the run ever saved (each save of a run
    that saved thousands would otherwise cost more than the last); a run forgotten is looked at
    whole once more. Used by command handlers alone: on the writer thread, one at a time."""

    def __init__(self, limit: int = RUNS_REMEMBERED) -> None:
        self.limit = limit
        self._runs: OrderedDict[UUID, RunCheckpoints] = OrderedDict()

    def of(self, run_id: UUID) -> RunCheckpoints:
        known = self._runs.pop(run_id, None)
        self._runs[run_id] = known = RunCheckpoints() if known is None else known
        while len(self._runs) > self.limit:
            self._runs.popitem(last=False)
        return known


class RetentionWorker:
    """Runs retention and deletions on one background thread (a ``JobQueue``, started on first
    use).

    ``after_save`` may be called from any thread, including the writer thread (it only queues);
    ``drain`` waits until everything queued is done; nothing here raises into the caller's
    training loop: a failed job is logged and appended to ``errors``.
    """

    def __init__(self, recorder: Recorder, storage: ArtifactStorage,
                 unfinished: Callable[[], Iterable[Retirement]],
                 holders: Callable[[Retirement], list[str]],
                 overfull: Callable[[], Iterable[tuple[UUID, CheckpointPolicy]]] = tuple) -> None:
        """``unfinished`` finds the retirements whose deletion a crash interrupted
        (``unfinished_deletions`` on the tracker's store), ``holders`` the live artifacts that
        still hold a retirement's bytes (``ByteHolders`` on the tracker's store), and
        ``overfull`` the runs a crash left with more live checkpoints than their policy keeps
        (``overfull_runs`` on the tracker's store); all wired by the composition root from
        lineage.application.retention_reads."""
        self.recorder = recorder
        self.storage = storage
        self._unfinished = unfinished
        self._holders = holders
        self._overfull = overfull
        self.deletions: list[tuple[UUID, Deletion]] = []
        self._jobs = JobQueue("lineage-retention", label="lineage retention",
                              idle_exit_s=IDLE_EXIT_S, log=log)
        self._lock = threading.Lock()
        self._repair_queued = False
        self._in_flight: set[Pending] = set()  # writes whose commit will queue the next stage
        self._watch = CheckpointWatch()

    @property
    def errors(self) -> list[BaseException]:
        """What failed jobs raised, oldest first."""
        return self._jobs.errors

    def after_save(self, pending: Pending, run_id: UUID, policy: CheckpointPolicy) -> None:
        """Apply ``policy`` to the run once the save behind ``pending`` is committed (its
        stages committed with the writer's batches: nothing waits)."""
        def job() -> None:
            self.apply(run_id, policy, later=True)

        pending.on_done(lambda error: None if error is not None else self._jobs.put(job))

    def repair_once(self) -> None:
        """Queue one repair pass for this tracker (later calls do nothing)."""
        with self._lock:
            if self._repair_queued:
                return
            self._repair_queued = True
        self._jobs.put(self.repair)

    def apply(self, run_id: UUID, policy: CheckpointPolicy, *,
              later: bool = False) -> list[tuple[UUID, Deletion]]:
        """Retire what ``policy`` does not keep of ``run_id``'s checkpoints, then delete;
        returns what each deletion did. ``later``: return at once (empty), the deletions done
        here once the retirement is committed with the writer's next batch."""
        retirement = self._submit(f"retention for run {run_id}",
                                  lambda uow: retire_outside_policy(
                                      uow, run_id, policy, self._watch.of(run_id)))
        return self._then(retirement, lambda retired: [
            (r.artifact_id, self.delete(r, later=later)) for r in retired], later) or []

    def repair(self) -> list[tuple[UUID, Deletion]]:
        """Repair what a crash left undone: apply the policy of runs holding more live
        checkpoints than it keeps, then finish interrupted deletions; returns what each
        deletion did. Idempotent."""
        done = [outcome for run_id, policy in self._overfull()
                for outcome in self.apply(run_id, policy)]
        return done + [(r.artifact_id, self.delete(r)) for r in self._unfinished()]

    def delete(self, retirement: Retirement, *, later: bool = False) -> Deletion:
        """Delete the bytes (unless a live artifact holds them) and record the outcome
        (``later``: committed with the writer's next batch, not waited for)."""
        try:
            holders = self._holders(retirement)
            deletion = (Deletion("in_use", f"{retirement.uri} kept: live artifact(s) "
                                           f"{', '.join(holders)} record the same bytes there")
                        if holders else self.storage.delete(retirement.uri, retirement.expected))
        except Exception as error:  # a broken adapter or query: still an outcome, retried
            deletion = Deletion("failed", f"{type(error).__name__}: {error}")
        recorded = self._submit(f"deletion of {retirement.artifact_id}",
                                lambda uow: record_deletion_in(uow, retirement.artifact_id, deletion))
        self._then(recorded, lambda _: self.deletions.append((retirement.artifact_id, deletion)),
                   later)
        return deletion

    def _then(self, pending: Pending, stage: Callable[[Any], Any], later: bool) -> Any:
        """``stage(what the write returned)`` once ``pending`` is committed: now (waiting, the
        writer asked to commit at once), or ``later`` as a job queued by its commit (a refusal
        is then that job's failure)."""
        if not later:
            return stage(pending.wait())
        with self._lock:
            self._in_flight.add(pending)

        def committed(_: BaseException | None) -> None:  # on the writer thread: queue, no more
            try:
                self._jobs.put(lambda: stage(pending.wait()))  # done: no wait; raises a refusal
            finally:  # queued (or not: a closed queue) before it stops counting as in flight
                with self._lock:
                    self._in_flight.discard(pending)

        pending.on_done(committed)
        return None

    def drain(self, timeout: float | None = None) -> bool:
        """Wait until every queued job is done; False when ``timeout`` passed first."""
        return self._jobs.drain(timeout)

    def close(self, timeout: float | None = None) -> None:
        """Finish what is queued and in flight (its writes committed now), then stop."""
        self._settle(timeout)
        self._jobs.close(timeout)

    def _submit(self, label: str, handler: Callable[[UnitOfWork], Any]) -> Pending:
        return self.recorder.submit(label, handler, self.recorder.envelope(), background=True)

    def flush(self, timeout: float | None = None) -> None:
        """Wait for the writer, then the retention its committed saves set off (its writes
        committed now, stage after stage), then the writer again; WriterError on losses."""
        self.recorder.flush(timeout)
        self._settle(timeout)
        self.recorder.flush(timeout)

    def _settle(self, timeout: float | None) -> None:
        """Drain the jobs until none is queued and no write of theirs awaits its commit; a
        write in flight is waited for (the writer asked to commit it now; its refusal is left
        to its stage's job), which queues its next stage. Returns when ``timeout`` (one
        deadline for all the waits) has passed."""
        deadline = deadline_after(timeout)
        while self.drain(seconds_left(deadline)):
            with self._lock:
                waiting = list(self._in_flight)
            if not waiting:
                return
            for pending in waiting:
                try:
                    pending.wait(seconds_left(deadline))
                except TimeoutError:
                    return
                except Exception:  # a refusal: the stage's job raises it
                    pass
            if seconds_left(deadline) == 0:
                return
            # A commit wakes its waiters before its callbacks queue the next stage: let them.
            time.sleep(0.001)
