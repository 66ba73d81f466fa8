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

Steps 2 and 3 run on ``RetentionWorker``'s thread, never on the training thread, and never
raise into it: failures are logged and kept in ``errors``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple
from uuid import UUID

from lineage.application.background import JobQueue
from lineage.application.handles import Pending
from lineage.application.policies import CheckpointPolicy
from lineage.application.unit_of_work import UnitOfWork
from lineage.codec.dispatch import topic_of
from lineage.domain import Artifact
from lineage.ports import Deletion

if TYPE_CHECKING:
    from eventsourcing.persistence import Mapper

    from lineage.application.recording import Recorder
    from lineage.ports import ArtifactStorage, EventStore, ReadModelsPort

log = logging.getLogger(__name__)

RETIRED_TOPIC = topic_of(Artifact.Retired)
PAGE = 1000
MAX_PAGE = 10_000  # the read models' largest page
IDLE_EXIT_S = 30.0  # the worker thread ends after this long with nothing to do (restarts on use)


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


def retire_outside_policy(uow: UnitOfWork, run_id: UUID, policy: CheckpointPolicy) -> list[Retirement]:
    """Command handler (writer thread): retire the run's checkpoints the policy does not keep.

    Only checkpoints this run produced are considered (a store written when artifact ids were
    content-addressed may list another run's artifact among this run's checkpoints: that
    run's to retire).
    """
    run = uow.run(run_id)
    held = []
    for order, (artifact_id, step) in enumerate(run.checkpoints):
        artifact = uow.find_artifact(artifact_id)
        if artifact is not None and artifact.run_id == run_id:
            held.append(Held(artifact_id, step, order, artifact.live, tuple(artifact.pins)))
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


def live_holders(views: ReadModelsPort, retirement: Retirement) -> list[str]:
    """Ids of the live artifacts that record ``retirement``'s bytes at its uri (the read
    models, caught up first). Its bytes must stay while one does."""
    if retirement.expected is None:
        return []
    algorithm, digest = retirement.expected
    rows = views.artifacts(checksum=f"{algorithm}:{digest}", status="live", limit=MAX_PAGE)
    return [row["id"] for row in rows
            if row["uri"] == retirement.uri and row["id"] != str(retirement.artifact_id)]


def record_deletion_in(uow: UnitOfWork, artifact_id: UUID, deletion: Deletion) -> None:
    uow.artifact(artifact_id).record_deletion(deletion.outcome, deletion.detail[:8192],
                                              uow.envelope(), uow.timestamp)


def host_of(source: str) -> str:
    """The machine part of an envelope's ``source`` (``host/program``)."""
    return source.split("/", 1)[0]


def unfinished_deletions(recorder: Recorder, store: EventStore, mapper: Mapper) -> Iterator[Retirement]:
    """Artifacts of this tenant retired on this machine whose bytes were not dealt with.

    Local paths only mean something on the machine that wrote them, so an artifact retired
    from another host is left for that host's repair.
    """
    here = host_of(recorder.origin.source)
    retired_on: dict[UUID, str] = {}
    start = 1
    while True:
        page = store.read_log(start, PAGE, [RETIRED_TOPIC])
        for notification in page:
            event: Any = mapper.to_domain_event(notification)
            retired_on[event.originator_id] = host_of(event.source)
        if len(page) < PAGE:
            break
        start = page[-1].id + 1
    for artifact_id, host in retired_on.items():
        if host != here:
            continue
        artifact: Any = None
        for stored in store.read_stream(artifact_id):
            replayed: Any = mapper.to_domain_event(stored)
            artifact = replayed.mutate(artifact)
        if (isinstance(artifact, Artifact) and artifact.needs_deletion
                and artifact.tenant_id == recorder.origin.tenant_id):
            yield Retirement(artifact_id, artifact.uri, expected_bytes(artifact))


class RetentionWorker:
    """Runs retention and deletions on one background thread (a ``JobQueue``, started on first
    use).

    ``after_save`` may be called from any thread, including the writer thread (it only queues);
    ``drain`` waits until everything queued is done; nothing here raises into the caller's
    training loop: a failed job is logged and appended to ``errors``.
    """

    def __init__(self, recorder: Recorder, storage: ArtifactStorage,
                 unfinished: Callable[[], Iterable[Retirement]],
                 holders: Callable[[Retirement], list[str]]) -> None:
        """``unfinished`` finds the retirements whose deletion a crash interrupted
        (``unfinished_deletions`` on the tracker's store), ``holders`` the live artifacts that
        still hold a retirement's bytes (``live_holders`` on the tracker's read models); both
        wired by the composition root."""
        self.recorder = recorder
        self.storage = storage
        self._unfinished = unfinished
        self._holders = holders
        self.deletions: list[tuple[UUID, Deletion]] = []
        self._jobs = JobQueue("lineage-retention", label="lineage retention",
                              idle_exit_s=IDLE_EXIT_S, log=log)
        self._repair_lock = threading.Lock()
        self._repair_queued = False

    @property
    def errors(self) -> list[BaseException]:
        """What failed jobs raised, oldest first."""
        return self._jobs.errors

    def after_save(self, pending: Pending, run_id: UUID, policy: CheckpointPolicy) -> None:
        """Apply ``policy`` to the run once the save behind ``pending`` is committed."""
        def job() -> None:
            self.apply(run_id, policy)

        pending.on_done(lambda error: None if error is not None else self._jobs.put(job))

    def repair_once(self) -> None:
        """Queue one repair pass for this tracker (later calls do nothing)."""
        with self._repair_lock:
            if self._repair_queued:
                return
            self._repair_queued = True
        self._jobs.put(self.repair)

    def apply(self, run_id: UUID, policy: CheckpointPolicy) -> list[Retirement]:
        """Retire what ``policy`` does not keep of ``run_id``'s checkpoints, then delete."""
        retired: list[Retirement] = self._submit(
            f"retention for run {run_id}", lambda uow: retire_outside_policy(uow, run_id, policy))
        for retirement in retired:
            self.delete(retirement)
        return retired

    def repair(self) -> list[tuple[UUID, Deletion]]:
        """Finish deletions a crash interrupted; returns what each one did."""
        return [(r.artifact_id, self.delete(r)) for r in self._unfinished()]

    def delete(self, retirement: Retirement) -> Deletion:
        try:
            holders = self._holders(retirement)
            deletion = (Deletion("in_use", f"{retirement.uri} kept: live artifact(s) "
                                           f"{', '.join(holders)} record the same bytes there")
                        if holders else self.storage.delete(retirement.uri, retirement.expected))
        except Exception as error:  # a broken adapter or query: still an outcome, retried
            deletion = Deletion("failed", f"{type(error).__name__}: {error}")
        self._submit(f"deletion of {retirement.artifact_id}",
                     lambda uow: record_deletion_in(uow, retirement.artifact_id, deletion))
        self.deletions.append((retirement.artifact_id, deletion))
        return deletion

    def drain(self, timeout: float | None = None) -> bool:
        """Wait until every queued job is done; False when ``timeout`` passed first."""
        return self._jobs.drain(timeout)

    def close(self, timeout: float | None = None) -> None:
        self._jobs.close(timeout)

    def _submit(self, label: str, handler: Callable[[UnitOfWork], Any]) -> Any:
        return self.recorder.submit(label, handler, self.recorder.envelope()).wait()

    def flush(self, timeout: float | None = None) -> None:
        """Wait for the writer, then the retention its committed saves set off, then the
        writer again (what that retention wrote); WriterError on losses."""
        self.recorder.flush(timeout)
        self.drain(timeout)
        self.recorder.flush(timeout)
