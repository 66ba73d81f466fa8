"""The public Python API: ``Tracker`` (one per process and store) and the commands it queues.

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
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

from lineage.application import validation
from lineage.application.artifacts import locate
from lineage.application.commands import as_uuid, id_of, move_alias_in, register_in
from lineage.application.handles import ArtifactRef, Pending
from lineage.application.heartbeat import Heartbeats
from lineage.application.jobspec import job_spec
from lineage.application.policies import RetryPolicy
from lineage.application.read_api import ReadAPI
from lineage.application.recovery import RecoveryExecutor, RecoveryResult, ResumeFunction
from lineage.application.retention import RetentionWorker
from lineage.application.run_handle import RunHandle
from lineage.application.unit_of_work import UnitOfWork
from lineage.application.views import Queries
from lineage.application.writer import Command, Writer
from lineage.codec.mapper import make_mapper
from lineage.config import Settings
from lineage.domain import Run, ids
from lineage.domain.envelope import Envelope
from lineage.errors import WriterError
from lineage.ports import ArtifactStorage, EventStore
from lineage.timestamps import normalise

RunLike = UUID | str | RunHandle
ArtifactLike = UUID | str | ArtifactRef


class Tracker(ReadAPI, Queries):
    """Records runs, steps and artifacts into an event store, and answers questions about them.

    ``Tracker()`` uses ``LINEAGE_DATABASE_URL``, else ``./lineage.db`` (SQLite). Pass a URL
    (``"postgresql+psycopg://postgres@127.0.0.1:5432/test"``) or an EventStore to choose;
    ``create=False`` refuses to create a new SQLite file.
    Close it (or use it as a context manager) to wait for every queued event; an open tracker is
    also flushed at interpreter exit. ``export_otlp=True`` (or an OTLP endpoint in the
    environment, see ``lineage.otlp_config``) also sends spans to a collector from a background
    thread that never blocks or breaks training (``lineage.adapters.otlp.background``).
    """

    def __init__(self, database_url: str | None = None, *, store: EventStore | None = None,
                 clock: Callable[[], datetime] | None = None,
                 id_source: Callable[[], UUID] | None = None, create: bool = True,
                 export_otlp: bool | None = None, storage: ArtifactStorage | None = None,
                 **settings: Any) -> None:
        self.settings = Settings.load(database_url=database_url, **settings)
        otlp_url = self.settings.database_url if store is None else None
        if store is None:
            from lineage.bootstrap import open_store  # the composition root wires adapters

            store = open_store(self.settings.database_url, create=create)
        self.store = store
        from lineage.bootstrap import start_otlp_export  # None unless OTLP export is enabled

        self._otlp = start_otlp_export(store, otlp_url, export_otlp)
        self.mapper = make_mapper()
        self._clock_given = clock is not None
        self.clock = clock or (lambda: datetime.now(UTC))
        self.new_id = id_source or uuid4
        self.writer = Writer(
            store, self.mapper, source=self.settings.source, tenant_id=self.settings.tenant_id,
            actor=self.settings.actor, clock=self.clock, id_source=self.new_id,
            max_queue=self.settings.queue_size, batch_size=self.settings.batch_size,
            batch_interval_s=self.settings.batch_interval_s, retry_for_s=self.settings.retry_for_s,
        )
        self._closed = False
        self._storage = storage  # ArtifactStorage for retention and recovery; default on use
        self.retention = RetentionWorker(self)
        self.heartbeats = Heartbeats(self, self.settings.heartbeat_interval_s)
        self._finalizer = weakref.finalize(self, _close_at_exit, self.writer, store)
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
        self.writer.flush(timeout)
        self.retention.drain(timeout)
        self.writer.flush(timeout)

    @property
    def storage(self) -> ArtifactStorage:
        """Where checkpoint bytes are checked and deleted (local files unless one was given)."""
        if self._storage is None:
            from lineage.bootstrap import open_artifact_storage  # the composition root

            self._storage = open_artifact_storage()
        return self._storage

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
            if self._views is not None:
                self._views.close()
            self.store.close()
        if self._otlp is not None:
            self._otlp.raise_if_strict()
        if failure is not None:
            raise failure

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- envelopes and commands ----------------------------------------------------------------

    def envelope(self, event_id: Any = None, occurred_at: Any = None) -> Envelope:
        """The envelope for a new event, validated now (in the caller's thread)."""
        if occurred_at is None:
            moment, raw = self.clock(), None
        else:
            moment, raw = normalise(occurred_at)
        return Envelope(
            event_id=self.new_id() if event_id is None else as_uuid(event_id, "event_id"),
            occurred_at=moment, occurred_at_raw=raw, source=self.settings.source,
            tenant_id=self.settings.tenant_id, actor=self.settings.actor,
        )

    def submit(self, label: str, handler: Callable[[UnitOfWork], Any], envelope: Envelope) -> Pending:
        future = self.writer.submit(Command(handler, envelope, label))
        return Pending(future, self.writer)

    def now_ns(self) -> int:
        """Epoch nanoseconds for a step's default time (the injected clock, when there is one)."""
        if self._clock_given:
            return int(self.clock().timestamp() * 1_000_000) * 1000
        return time.time_ns()

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

        The id is deterministic (content digest, else uri), so registering the same thing twice
        returns the same artifact and stores nothing new.
        """
        kind = validation.choice(type, "type", validation.ARTIFACT_TYPES)
        step = validation.optional_step(step, "step")
        if format is not None and kind == "checkpoint":
            format = validation.choice(format, "format", validation.CHECKPOINT_FORMATS)
        fields = {
            "type": kind, "name": validation.optional_text(name, "name"),
            "format": validation.optional_text(format, "format", max_length=64),
            "run_id": None if run is None else id_of(run, "run"),
            "step": step,
            "parents": [id_of(parent, "parents") for parent in parents],
            "includes_optimizer": includes_optimizer,
            "metadata": validation.json_object(metadata, "metadata"),
        }
        location = locate(target, checksum=checksum, size=size)
        artifact_id = location.artifact_id(self.tenant_id)
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
        name = validation.text(alias, "alias", max_length=128)
        scope = validation.text(str(scope), "scope", max_length=128)
        envelope = self.envelope(event_id, occurred_at)

        def move(uow: UnitOfWork) -> None:
            move_alias_in(uow, artifact_id, scope, name, protected, force)

        return self.submit(f"move alias {name}", move, envelope)

    # -- runs ----------------------------------------------------------------------------------

    def start_run(self, name: str, *, job: dict[str, Any] | None = None,
                  inputs: Sequence[ArtifactLike] = (), tags: Any = None,
                  run_id: Any = None, start_step: int = 0, event_id: Any = None,
                  occurred_at: Any = None, wait: bool = True) -> RunHandle:
        """Start a run (a LineageIR trace). Use the handle as a context manager: leaving the
        block finishes the run as completed, or as failed when an exception escapes."""
        name = validation.text(name, "name", max_length=256)
        spec = job_spec(job)
        tag_map = validation.tags(tags)
        start = validation.step(start_step, "start_step")
        input_ids = [id_of(item, "inputs") for item in inputs]
        if run_id is not None:
            new_id = as_uuid(run_id, "run_id")
        elif "key" in spec:
            new_id = ids.run_id_for_key(self.tenant_id, spec["key"])
        else:
            new_id = self.new_id()
        envelope = self.envelope(event_id, occurred_at)

        def start_it(uow: UnitOfWork) -> UUID:
            run = uow.add(Run.start(new_id, name, spec, tag_map, start, uow.envelope(), uow.timestamp))
            for artifact_id in input_ids:
                artifact = uow.artifact(artifact_id)
                run.use_input(artifact_id, artifact.uri, artifact.type, uow.envelope(), uow.timestamp)
            return new_id

        pending = self.submit(f"start run {name}", start_it, envelope)
        if wait:
            pending.wait()
        return RunHandle(self, new_id, name, start_step=start, job=spec)

    def run_handle(self, run: RunLike) -> RunHandle:
        """A handle to record more on an existing run (e.g. a failure flagged later)."""
        view = self.run(run)
        return RunHandle(self, view.id, view.name, start_step=view.start_step, job=view.job)

    def resume_run(self, previous: RunLike, checkpoint: ArtifactLike, *, name: str | None = None,
                   optimizer_restored: bool = True, job: dict[str, Any] | None = None,
                   step: int | None = None, **start: Any) -> RunHandle:
        """Start a new run that resumes ``previous`` from ``checkpoint`` (linked both ways by
        the recovery events; see ``lineage.application.recovery``)."""
        previous_id = id_of(previous, "run")
        checkpoint_id = id_of(checkpoint, "checkpoint")
        old = self.run(previous_id)
        ckpt = self.artifact(checkpoint_id)
        resume_step = ckpt.step if step is None else validation.step(step)
        handle = self.start_run(name or old.name, job=job if job is not None else old.job,
                                inputs=[checkpoint_id], start_step=resume_step or 0, **start)
        handle._last_checkpoint = checkpoint_id  # its first checkpoint derives from this one
        envelope = self.envelope()

        def link(uow: UnitOfWork) -> None:
            uow.run(handle.id).resume_from(previous_id, checkpoint_id, resume_step or 0,
                                           optimizer_restored, uow.envelope(), uow.timestamp)
            # retention must keep what another run resumed from
            uow.artifact(checkpoint_id).pin(f"resumed:{handle.id}", f"run {handle.id} resumed "
                                            "from it", uow.envelope(), uow.timestamp)

        self.submit(f"resume {previous_id}", link, envelope).wait()
        return handle

    # -- policies and recovery (DESIGN §7) ------------------------------------------------------

    def recover(self, run: RunLike, *, strategy: Any = "latest", restore_optimizer: bool = True,
                allow_weights_only: bool = False, retry: RetryPolicy | dict[str, Any] | None = None,
                resume: ResumeFunction | None = None, name: str | None = None,
                tags: Any = None, sleep: Callable[[float], None] = time.sleep) -> RecoveryResult:
        """Recover a failed or corrupted run into a new run (see lineage.application.recovery).

        ``strategy``: ``"latest"``, ``"best"`` or a checkpoint (id or ref). ``resume(checkpoint,
        new_run)`` is your function that loads the checkpoint into the new run's trainer; an
        exception from it fails the attempt, retried per ``retry`` (default: the job spec's
        ``retry_policy``, else ``RetryPolicy()``), sleeping with ``sleep``. Returns a
        RecoveryResult (``.new_run`` when recovered); a run another executor is recovering gives
        status ``already_recovering``, not an exception.
        """
        executor = RecoveryExecutor(self, sleep=sleep)
        return executor.recover(run, strategy=strategy, restore_optimizer=restore_optimizer,
                                allow_weights_only=allow_weights_only, retry=retry,
                                resume=resume, name=name, tags=tags)

    def repair_retention(self) -> list[tuple[UUID, Any]]:
        """Delete the bytes of artifacts retired on this machine whose deletion a crash
        interrupted (runs by itself when a run with a retention policy starts); returns
        (artifact id, Deletion) pairs. Blocks until done."""
        return self.retention.repair()



def _close_at_exit(writer: Writer, store: EventStore) -> None:
    try:
        writer.close(timeout=60)
    finally:
        store.close()
