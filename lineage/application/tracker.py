"""The application service behind ``lineage.Tracker``: the commands it queues and, through
``ReadAPI``, the queries it answers.

Threading: every method may be called from any thread. Writes are validated in the caller's
thread (a bad input raises here, before anything is queued) and committed by the writer thread.
Methods returning ``Pending`` or ``ArtifactRef`` do not wait unless you call ``.wait()``;
``register_artifact`` and ``start_run`` wait by default (they are rare, and what follows
usually needs them committed).
"""

from __future__ import annotations

import atexit
import os
import time
import weakref
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple
from uuid import UUID

from eventsourcing.persistence import Mapper

from lineage.application import validation
from lineage.application.artifact_check import ArtifactCheck, Record, check_artifacts, recorded_by
from lineage.application.artifacts import locate
from lineage.application.commands import as_uuid, id_of, move_alias_in, register_in
from lineage.application.handles import ArtifactRef, Pending
from lineage.application.heartbeat import Heartbeats
from lineage.application.jobspec import job_spec
from lineage.application.policies import RetryPolicy
from lineage.application.read_api import ReadAPI
from lineage.application.recording import WriterRecorder
from lineage.application.recovery import RecoveryExecutor, ResumeFunction
from lineage.application.recovery_result import RecoveryResult
from lineage.application.retention import RetentionWorker
from lineage.application.run_handle import RunHandle
from lineage.application.trace_context import active_trace_context
from lineage.application.unit_of_work import UnitOfWork
from lineage.application.writer import Writer
from lineage.config import Settings
from lineage.domain import Run, ids
from lineage.domain.envelope import Envelope
from lineage.domain.run import FINAL_STATUSES
from lineage.errors import RunExistsError, ValidationError, WriterError
from lineage.ports import ArtifactStorage, BackgroundExport, EventStore, ReadModelsPort

RunLike = UUID | str | RunHandle
ArtifactLike = UUID | str | ArtifactRef


class TrackerParts(NamedTuple):
    """Everything a tracker works with, built by the composition root (``lineage.bootstrap``)
    and pushed in: the tracker never opens a database, a file or a socket itself."""

    settings: Settings
    store: EventStore
    mapper: Mapper
    read_models: ReadModelsPort
    storage: ArtifactStorage
    recorder: WriterRecorder
    retention: RetentionWorker
    heartbeats: Heartbeats
    exporter: BackgroundExport | None


class TrackerService(ReadAPI):
    """Records runs, steps and artifacts, and answers questions about them, with the parts it
    is given (the public ``lineage.Tracker`` builds them from a URL or an injected store).

    Close it (or use it as a context manager) to wait for every queued event; an open tracker
    is also flushed at interpreter exit.
    """

    recovery_executor = RecoveryExecutor  # a remote tracker's records verifications as calls

    def __init__(self, parts: TrackerParts) -> None:
        self.settings = parts.settings
        self.store = parts.store
        self.mapper = parts.mapper
        self.views = parts.read_models
        self.storage = parts.storage
        self.recorder = parts.recorder
        self.writer = parts.recorder.writer
        self.retention = parts.retention
        self.heartbeats = parts.heartbeats
        self._otlp = parts.exporter
        self.new_id = parts.recorder.new_id
        self._closed = False
        self._finalizer = weakref.finalize(self, _close_at_exit, self.writer, self.heartbeats,
                                           self.store)
        atexit.register(self._finalizer)

    # -- lifecycle -----------------------------------------------------------------------------

    @property
    def location(self) -> str:
        return self.store.location

    @property
    def tenant_id(self) -> str:
        return self.settings.tenant_id

    def flush(self, timeout: float | None = None) -> None:
        """Block until everything queued so far is committed, including the retention that
        committed checkpoint saves set off; raise WriterError on losses."""
        self.retention.flush(timeout)

    def close(self, timeout: float | None = None) -> None:
        if self._closed:
            return
        self._closed = True
        failure: WriterError | None = None
        try:
            self.heartbeats.close()
            try:
                self.writer.flush(timeout)  # committed saves set off retention: let it run
            except WriterError as error:
                failure = error
            self.retention.close(timeout)
            self.writer.close(timeout)
        finally:
            if self._otlp is not None:
                self._otlp.close(drain=self.writer.stats.committed_events > 0)
            atexit.unregister(self._finalizer)
            self._finalizer.detach()
            self.views.close()
            self.store.close()
        if self._otlp is not None:
            self._otlp.raise_if_strict()
        if failure is not None:
            raise failure

    def __enter__(self) -> TrackerService:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- envelopes and commands ----------------------------------------------------------------

    def envelope(self, event_id: Any = None, occurred_at: Any = None) -> Envelope:
        """The envelope for a new event, validated now (in the caller's thread)."""
        return self.recorder.envelope(event_id, occurred_at)

    def submit(self, label: str, handler: Callable[[UnitOfWork], Any], envelope: Envelope) -> Pending:
        return self.recorder.submit(label, handler, envelope)

    def _handle(self, run_id: UUID, name: str, start_step: int,
                job: dict[str, Any] | None) -> RunHandle:
        return RunHandle(self.recorder, run_id, name, heartbeats=self.heartbeats,
                         retention=self.retention, start_step=start_step, job=job)

    # -- artifacts -----------------------------------------------------------------------------

    def register_artifact(self, target: str | os.PathLike[str], *, type: str,
                          name: str | None = None, checksum: str | None = None,
                          size: int | None = None, format: str | None = None,
                          metadata: dict[str, Any] | None = None,
                          parents: Iterable[ArtifactLike] = (), run: RunLike | None = None,
                          step: int | None = None, includes_optimizer: bool | None = None,
                          event_id: Any = None, occurred_at: Any = None,
                          wait: bool = True) -> ArtifactRef:
        """Register a checkpoint, model, dataset or log. Local files are sized and hashed now.

        The id is derived from the uri, the content (when known) and the producing ``run`` and
        ``step`` (never from the content alone), so registering the same thing twice returns
        the same artifact and stores nothing new; registering it again with another type, name,
        format, metadata, size or ``includes_optimizer`` raises ArtifactExistsError, storing
        nothing. The same bytes elsewhere are another artifact: ``artifacts(checksum=...)``.
        """
        kind = validation.choice(type, "type", validation.ARTIFACT_TYPES)
        step = validation.optional_step(step, "step")
        if format is not None and kind == "checkpoint":
            format = validation.choice(format, "format", validation.CHECKPOINT_FORMATS)
        run_id = None if run is None else id_of(run, "run")
        fields = {
            "type": kind, "name": validation.optional_text(name, "name"),
            "format": validation.optional_text(format, "format", max_length=validation.SHORT_MAX),
            "run_id": run_id,
            "step": step,
            "parents": [id_of(parent, "parents")
                        for parent in validation.id_list(parents, "parents")],
            "includes_optimizer": validation.optional_bool(includes_optimizer, "includes_optimizer"),
            "metadata": validation.json_object(metadata, "metadata"),
        }
        location = locate(target, checksum=checksum, size=size)
        artifact_id = location.artifact_id(self.tenant_id, run_id, step)
        fields.update(uri=location.uri, size=location.size, checksum=location.checksum,
                      checksum_algorithm=location.checksum_algorithm)
        envelope = self.envelope(event_id, occurred_at)

        def register(uow: UnitOfWork) -> UUID:
            return register_in(uow, artifact_id, fields)

        pending = self.submit(f"register artifact {location.uri}", register, envelope)
        ref = ArtifactRef(artifact_id, location.uri, kind, location.size,
                          location.checksum_algorithm, location.checksum, step, pending)
        return ref.wait() if wait else ref

    def move_alias(self, artifact: ArtifactLike, alias: str, *, scope: str = "registry",
                   protected: bool = False, force: bool = False, event_id: Any = None,
                   occurred_at: Any = None) -> Pending:
        """Point ``alias`` (in ``scope``: a run id or ``registry``) at ``artifact``."""
        artifact_id = id_of(artifact, "artifact")
        name = validation.text(alias, "alias", max_length=validation.ALIAS_MAX)
        scope = validation.text(str(scope), "scope", max_length=validation.ALIAS_MAX)
        protected = validation.bool_flag(protected, "protected")
        force = validation.bool_flag(force, "force")
        envelope = self.envelope(event_id, occurred_at)

        def move(uow: UnitOfWork) -> None:
            move_alias_in(uow, artifact_id, scope, name, protected, force)

        return self.submit(f"move alias {name}", move, envelope)

    def retire_artifact(self, artifact: ArtifactLike, reason: str, *, policy: str | None = None,
                        bytes_gone: bool = False, event_id: Any = None) -> Pending:
        """Retire ``artifact`` with ``reason``: by hand (``policy`` None), or in the name of a
        retention ``policy`` (then a pinned artifact is refused: InvariantError on ``wait()``).
        ``bytes_gone``: something else already deleted its bytes (a framework's own rotation),
        recorded as the deletion's outcome ``already_gone``; else the bytes are left as they
        are. Retiring it again is a no-op."""
        artifact_id = id_of(artifact, "artifact")
        reason = validation.text(reason, "reason", max_length=validation.TEXT_MAX, multiline=True)
        policy = validation.optional_text(policy, "policy")
        gone = validation.bool_flag(bytes_gone, "bytes_gone")

        def retire(uow: UnitOfWork) -> None:
            found = uow.artifact(artifact_id)
            found.retire(reason, policy, uow.envelope(), uow.timestamp)
            if gone:
                found.record_deletion("already_gone", f"deleted elsewhere: {reason}"[:8192],
                                      uow.envelope(), uow.timestamp)

        return self.submit(f"retire {artifact_id}", retire, self.envelope(event_id))

    def verify_artifacts(self) -> list[ArtifactCheck]:
        """Re-hash every live local artifact against its registered checksum and record the
        outcome (``Artifact.Verified``: verified, mismatch or missing); returns the
        ``ArtifactCheck`` list. A remote tracker hashes here and sends the outcomes."""
        listed, offset = [], 0
        while page := self.artifacts(limit=500, offset=offset):
            listed.extend(page)
            offset += len(page)
        return check_artifacts(listed, self.storage, self._verification())

    def _verification(self) -> Record:
        return recorded_by(self.recorder)

    # -- runs ----------------------------------------------------------------------------------

    def start_run(self, name: str, *, job: dict[str, Any] | None = None,
                  inputs: Sequence[ArtifactLike] = (), tags: Any = None,
                  run_id: Any = None, start_step: int = 0, event_id: Any = None,
                  occurred_at: Any = None, wait: bool = True) -> RunHandle:
        """Start a run (a LineageIR trace). Use the handle as a context manager: leaving the
        block finishes the run as completed, or as failed when an exception escapes."""
        handle, start_it = self._starter(name, job, inputs, tags, run_id, start_step)
        pending = self.submit(f"start run {name}", start_it,
                              self.envelope(event_id, occurred_at))
        if wait:
            pending.wait()
        return handle

    def _starter(self, name: str, job: dict[str, Any] | None, inputs: Sequence[ArtifactLike],
                 tags: Any, run_id: Any,
                 start_step: int) -> tuple[RunHandle, Callable[[UnitOfWork], UUID]]:
        """The new run's handle and the command that starts it, validated now (nothing
        recorded): ``resume_run`` adds its link to the same command, so both commit together."""
        name = validation.text(name, "name")
        spec = job_spec(job)
        tag_map = validation.tags(tags)
        start = validation.step(start_step, "start_step")
        input_ids = [id_of(item, "inputs") for item in validation.id_list(inputs, "inputs")]
        context = active_trace_context()  # the caller's thread's, not the writer's
        if run_id is not None:
            new_id = as_uuid(run_id, "run_id")
        elif "key" in spec:
            new_id = ids.run_id_for_key(self.tenant_id, spec["key"])
        else:
            new_id = self.new_id()

        def start_it(uow: UnitOfWork) -> UUID:
            existing = uow.find_run(new_id)
            if existing is not None or uow.exists(new_id):
                raise RunExistsError(new_id, getattr(existing, "name", "?"), spec.get("key"))
            run = uow.add(Run.start(new_id, name, spec, tag_map, start, uow.envelope(), uow.timestamp))
            if context is not None:
                run.link_trace_context(*context, uow.envelope(), uow.timestamp)
            for artifact_id in input_ids:
                artifact = uow.artifact(artifact_id)
                run.use_input(artifact_id, artifact.uri, artifact.type, uow.envelope(), uow.timestamp)
            return new_id

        return self._handle(new_id, name, start, spec), start_it

    def run_handle(self, run: RunLike) -> RunHandle:
        """A handle to record more on an existing run (e.g. a failure flagged while it runs).
        On a finished run the handle knows it: steps, evaluations, checkpoints and failures are
        refused at once (RunFinishedError); the recovery commands still apply."""
        view = self.run(run)
        handle = self._handle(view.id, view.name, view.start_step, view.job)
        if view.status in FINAL_STATUSES:
            handle.finished_status = view.status
        return handle

    def resume_run(self, previous: RunLike, checkpoint: ArtifactLike, *, name: str | None = None,
                   optimizer_restored: bool = True, job: dict[str, Any] | None = None,
                   step: int | None = None, **start: Any) -> RunHandle:
        """Start a new run that resumes ``previous`` from ``checkpoint`` (linked both ways by
        the recovery events; see ``lineage.application.recovery``). The new run and its link
        commit in one transaction: a crash never leaves a new run that resumes nothing.
        Blocks until committed (``wait`` is ignored)."""
        previous_id = id_of(previous, "run")
        checkpoint_id = id_of(checkpoint, "checkpoint")
        optimizer_restored = validation.bool_flag(optimizer_restored, "optimizer_restored")
        old = self.run(previous_id)
        ckpt = self.artifact(checkpoint_id)
        resume_step = ckpt.step if step is None else validation.step(step)
        start.pop("wait", None)
        handle, start_it = self._starter(
            name or old.name, job if job is not None else old.job, [checkpoint_id],
            start.pop("tags", None), start.pop("run_id", None), resume_step or 0)
        envelope = self.envelope(start.pop("event_id", None), start.pop("occurred_at", None))
        if start:
            raise TypeError(f"resume_run() got unexpected keyword arguments {sorted(start)}")
        handle.continue_from(checkpoint_id)

        def start_and_link(uow: UnitOfWork) -> None:
            start_it(uow)
            uow.run(handle.id).resume_from(previous_id, checkpoint_id, resume_step or 0,
                                           optimizer_restored, uow.envelope(), uow.timestamp)
            # retention must keep what another run resumed from
            uow.artifact(checkpoint_id).pin(f"resumed:{handle.id}", f"run {handle.id} resumed "
                                            "from it", uow.envelope(), uow.timestamp)

        self.submit(f"resume {previous_id}", start_and_link, envelope).wait()
        return handle

    # -- policies and recovery (DESIGN §7) ------------------------------------------------------

    def recover(self, run: RunLike, *, strategy: Any = "latest", restore_optimizer: bool = True,
                allow_weights_only: bool = False, retry: RetryPolicy | dict[str, Any] | None = None,
                resume: ResumeFunction | None = None, name: str | None = None,
                tags: Any = None, sleep: Callable[[float], None] = time.sleep,
                lease_s: float | None = None) -> RecoveryResult:
        """Recover a failed or corrupted run into a new run (see lineage.application.recovery).

        ``strategy``: ``"latest"``, ``"best"`` or a checkpoint (id or ref). ``resume(checkpoint,
        new_run)`` is your function that loads the checkpoint into the new run's trainer; an
        exception from it fails the attempt, retried per ``retry`` (default: the job spec's
        ``retry_policy``, else ``RetryPolicy()``), sleeping with ``sleep``. Returns a
        RecoveryResult (``.new_run`` when recovered); a run another executor is recovering gives
        status ``already_recovering``, not an exception. ``lease_s`` (default: the
        ``recovery_lease_s`` setting) is how long each attempt is held without a renewal; an
        attempt whose executor died is taken over once its lease expired.
        """
        lease = self.settings.recovery_lease_s if lease_s is None else lease_s
        if isinstance(lease, bool) or not isinstance(lease, int | float) or not lease > 0:
            raise ValidationError("lease_s", "must be a positive number of seconds", lease_s)
        executor = self.recovery_executor(self, sleep=sleep, lease_s=float(lease))
        return executor.recover(run, strategy=strategy, restore_optimizer=restore_optimizer,
                                allow_weights_only=allow_weights_only, retry=retry,
                                resume=resume, name=name, tags=tags)

    def repair_retention(self) -> list[tuple[UUID, Any]]:
        """Repair what a crash left of retention on this machine (runs by itself when a run
        with a retention policy starts): apply ``keep_last`` to runs holding more live
        checkpoints than it keeps, and delete the bytes of retired artifacts whose deletion was
        interrupted; returns (artifact id, Deletion) pairs. Idempotent; blocks until done."""
        return self.retention.repair()



def _close_at_exit(writer: Writer, heartbeats: Heartbeats, store: EventStore) -> None:
    try:
        heartbeats.close()
        writer.close(timeout=60)
    finally:
        store.close()
