"""``RunHandle``: what training code holds while a run is going on.

``log_step`` is the hot path: it validates, builds one tuple and appends it to the writer's
queue; it never waits for the database (only for room in a full queue). Everything else is rare
and returns a ``Pending`` (or an ``ArtifactRef``) that resolves once committed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import struct
from collections.abc import Callable
from operator import countOf, itemgetter
from types import TracebackType
from typing import TYPE_CHECKING, Any
from uuid import UUID

from lineage.application import validation
from lineage.application.artifacts import locate
from lineage.application.best import LATEST_ALIAS, evaluate_in
from lineage.application.commands import as_uuid, id_of, move_alias_in, register_in
from lineage.application.handles import ArtifactRef, Pending
from lineage.application.policies import CheckpointPolicy, CheckpointSchedule
from lineage.application.run_recovery import RecoveryCommands
from lineage.application.unit_of_work import UnitOfWork
from lineage.errors import RunFinishedError, ValidationError
from lineage.timestamps import normalise

if TYPE_CHECKING:
    from lineage.application.heartbeat import Heartbeats
    from lineage.application.recording import Recorder
    from lineage.application.retention import RetentionWorker

_check_metrics = validation.metrics
INT64_MAX = validation.INT64_MAX
METRICS_MAX = validation.METRICS_MAX
_KNOWN_NAMES = validation.KNOWN_METRIC_NAMES  # names ``validation.metrics`` has accepted
SHAPES_KEPT = 64  # sets of metric names a handle keeps ready (a loop alternating between a few)
log = logging.getLogger(__name__)


class RunHandle(RecoveryCommands):
    """One run being recorded. Thread-safe: several threads may log to one run."""

    def __init__(self, recorder: Recorder, run_id: UUID, name: str, *,
                 heartbeats: Heartbeats, retention: RetentionWorker, start_step: int = 0,
                 job: dict[str, Any] | None = None) -> None:
        self.recorder = recorder
        self.retention = retention
        self.id = run_id
        self._key = run_id.int  # the queued steps' run (step_log.StepRecord.run_key)
        self._shape = _shape(())  # how the last metrics were queued packed (see log_step)
        self._shapes: dict[tuple[Any, ...], _Shape] = {}  # each set of names seen, kept once
        self.name = name
        self.start_step = start_step
        self._max_step = -1  # the highest step logged: -1 before the first (see max_step)
        self.finished_status: str | None = None
        self.policy = _policy_of(job, run_id)
        self._steps = recorder.step_queue
        self._now_ns = recorder.now_ns
        self._last_checkpoint: UUID | None = None  # the next checkpoint derives from it
        self._schedule = None if self.policy is None else CheckpointSchedule(self.policy)
        self._before_finish: list[Callable[[], Any]] = []  # see finish_after
        heartbeats.watch(self)
        if self.policy is not None and self.policy.keep_last is not None:
            retention.repair_once()  # finish deletions a crash interrupted

    def __repr__(self) -> str:
        return f"RunHandle(id={self.id}, name={self.name!r})"

    def continue_from(self, checkpoint: Any) -> None:
        """The run's next checkpoint derives from ``checkpoint`` (a run resumed from it: the
        lineage goes checkpoint -> its next one, across the two runs). No I/O."""
        self._last_checkpoint = id_of(checkpoint, "checkpoint")

    # -- the hot path --------------------------------------------------------------------------

    def log_step(self, step: int, metrics: dict[str, float] | None = None, *,
                 epoch: int | None = None, durations: dict[str, float] | None = None,
                 tokens: int | None = None, resources: dict[str, float] | None = None,
                 occurred_at: Any = None, event_id: Any = None) -> None:
        """Record one training step. Returns as soon as the step is queued (microseconds).

        ``metrics`` are numbers (NaN and +-inf are kept as they are); ``durations`` (seconds),
        ``tokens`` and ``resources`` are optional. Raises ValidationError for bad input and
        RunFinishedError after the run finished, before anything is queued.
        """
        # The common call (step, a dict of floats with the names of the previous call, maybe
        # an epoch) is checked inline: the same rules as the full path, at a fraction of its
        # cost; its values are queued packed (step_log.StepRecord says why).
        if (type(metrics) is dict and type(step) is int and 0 <= step <= INT64_MAX
                and self.finished_status is None and durations is None and tokens is None
                and resources is None and occurred_at is None and event_id is None
                and (epoch is None or (type(epoch) is int and 0 <= epoch <= INT64_MAX))):
            # The names of the previous call: as many, each there (so no other), their
            # values taken in their order by one C call.
            count, names, take, pack = self._shape
            try:
                values = take(metrics) if len(metrics) == count else None
            except KeyError:
                values = None
            if values is None and (shape := self._shape_of(metrics)) is not None:
                count, names, take, pack = shape
                values = take(metrics)
            if values is not None:  # None: names not accepted yet, for the checked path
                for value in values:
                    if type(value) is not float:
                        break
                else:
                    record = (self._key, step, names, pack(*values), epoch, None, None, None,
                              self._now_ns(), None, None, None)  # StepRecord's order
                    queue = self._steps  # StepQueue: append here while there is room, no call
                    if len(queue.items) < queue.room:
                        queue.items.append(record)
                    else:
                        queue.put(record)
                    if step > self._max_step:
                        self._max_step = step
                    return
        self._log_step_checked(step, metrics, epoch, durations, tokens, resources,
                               occurred_at, event_id)
        if step > self._max_step:
            self._max_step = step

    def _shape_of(self, metrics: dict[str, Any]) -> _Shape | None:
        """How ``log_step`` queues metrics with ``metrics``' names, when it may queue them
        packed (at most METRICS_MAX names, each accepted before), remembered for the next
        call; else None: the checked path says what is wrong, or accepts the new names."""
        names = tuple(metrics)
        shape = self._shapes.get(names)
        if shape is None:
            # Names accepted before, and plain ``str`` (a ``str`` subclass equal to a known
            # name would keep every queued step in the collector's reach).
            if (len(names) > METRICS_MAX or not _KNOWN_NAMES.issuperset(names)
                    or countOf(map(type, names), str) != len(names)):
                return None
            shape = _shape(names)
            if len(self._shapes) < SHAPES_KEPT:
                self._shapes[names] = shape
        self._shape = shape
        return shape

    @property
    def max_step(self) -> int | None:
        """The highest step this handle logged; None before its first ``log_step``."""
        return None if self._max_step < 0 else self._max_step

    @max_step.setter
    def max_step(self, step: int | None) -> None:  # steps appended past log_step (the server's)
        self._max_step = -1 if step is None else step

    def _log_step_checked(self, step: Any, metrics: Any, epoch: Any, durations: Any,
                          tokens: Any, resources: Any, occurred_at: Any, event_id: Any) -> None:
        """``log_step`` with every argument checked and converted one by one."""
        if self.finished_status is not None:
            raise RunFinishedError(self.id, self.finished_status, "steps")
        step = validation.step(step)
        metrics = {} if metrics is None else dict(_check_metrics(metrics))
        if epoch is not None:
            epoch = validation.step(epoch, "epoch")
        if durations is not None:
            durations = dict(validation.durations(durations))
        if tokens is not None:
            tokens = validation.step(tokens, "tokens")
        if resources is not None:
            resources = dict(_check_metrics(resources, "resources"))
        if occurred_at is None:
            ns, moment, raw = self._now_ns(), None, None
        else:
            ns = 0
            moment, raw = normalise(occurred_at)
        if event_id is not None and type(event_id) is not UUID:
            event_id = as_uuid(event_id, "event_id")
        self._steps.put((self._key, step, None, metrics, epoch, durations, tokens, resources, ns,
                         moment, raw, event_id))  # step_log.StepRecord's order

    def should_checkpoint(self, step: int, epoch: int | None = None,
                          metrics: dict[str, float] | None = None, *, final: bool = False) -> bool:
        """Whether the run's checkpoint policy wants a checkpoint after ``step`` (no I/O).

        Call it once per step from the training loop; the handle remembers the previous epoch
        (strategy ``epoch``) and the best ``best_metric`` value among the calls that returned
        True (``best`` / ``save_best``), so save when it says so. ``final=True`` on the last
        step. Raises ValidationError when the job spec has no ``checkpoint_policy``.
        """
        return self._require_schedule().should_checkpoint(step, epoch, metrics, final=final)

    # -- rare, important events ----------------------------------------------------------------

    def log_eval(self, step: int, metrics: dict[str, float], *, dataset: str | None = None,
                 split: str | None = None, event_id: Any = None,
                 occurred_at: Any = None) -> Pending:
        """Record an evaluation (validation metrics at a step, on ``dataset``/``split``).

        With a policy ``best_metric``, a strictly better value moves the run's ``best`` alias to
        its latest committed checkpoint at or before ``step`` (see lineage.application.best); the Pending
        resolves to that checkpoint's id, or None when the best did not change.
        """
        self._require_open("evaluations")
        step = validation.step(step)
        values = dict(validation.metrics(metrics))
        dataset = validation.optional_text(dataset, "dataset")
        split = validation.optional_text(split, "split", max_length=validation.SHORT_MAX)
        policy = self.policy
        return self._command("evaluation", event_id, occurred_at,
                             lambda uow: evaluate_in(uow, self.id, policy, step, values,
                                                     dataset, split))

    def save_checkpoint(self, path: str | os.PathLike[str], *, step: int,
                        format: str | None = None, includes_optimizer: bool = False,
                        metadata: dict[str, Any] | None = None, checksum: str | None = None,
                        parents: list[Any] | None = None, event_id: Any = None,
                        occurred_at: Any = None) -> ArtifactRef:
        """Register a checkpoint this run saved (hashed now when local) and record the save.

        The checkpoint is this run's own artifact (its id: the uri, the content, this run and
        ``step``), even when another run saved the same bytes; saving it again is a no-op, or
        ArtifactExistsError from ``.wait()`` when other details (format, metadata...) differ.
        The checkpoint derives from the run's previous checkpoint unless ``parents`` is given.
        The run-scoped alias ``latest`` moves to it. ``format`` defaults to the policy's. Once
        the save is committed, retention (a policy ``keep_last``) runs on a background thread
        (lineage.application.retention). Returns at once; ``.wait()`` to block.
        """
        step = self._checkpoint_step(step)
        if format is None and self.policy is not None:
            format = self.policy.format
        if format is not None:
            format = validation.choice(format, "format", validation.CHECKPOINT_FORMATS)
        meta = validation.json_object(metadata, "metadata")
        includes_optimizer = validation.bool_flag(includes_optimizer, "includes_optimizer")
        location = locate(path, checksum=checksum, field="path")
        # this run's own checkpoint, whoever else saved the same bytes (a retry: the same id)
        artifact_id = location.artifact_id(self.recorder.origin.tenant_id, self.id, step)
        previous = self._last_checkpoint
        parent_ids = ([id_of(p, "parents") for p in validation.id_list(parents, "parents")]
                      if parents is not None
                      else [previous] if previous not in (None, artifact_id) else [])
        fields = {"type": "checkpoint", "name": None, "format": format, "run_id": self.id,
                  "step": step, "parents": parent_ids, "includes_optimizer": includes_optimizer,
                  "metadata": meta, "uri": location.uri, "size": location.size,
                  "checksum": location.checksum, "checksum_algorithm": location.checksum_algorithm}

        def save(uow: UnitOfWork) -> UUID:
            register_in(uow, artifact_id, fields)
            uow.run(self.id).save_checkpoint(artifact_id, location.uri, step, format,
                                             includes_optimizer, uow.envelope(), uow.timestamp)
            move_alias_in(uow, artifact_id, str(self.id), LATEST_ALIAS, False, False)
            return artifact_id

        pending = self._command("checkpoint", event_id, occurred_at, save)
        self._last_checkpoint = artifact_id
        if self.policy is not None and self.policy.keep_last is not None:
            self.retention.after_save(pending, self.id, self.policy)
        return ArtifactRef(artifact_id, location.uri, "checkpoint", location.size,
                           location.checksum_algorithm, location.checksum, step, pending)

    def use_input(self, artifact: Any, *, role: str | None = None) -> Pending:
        """Record that this run consumed an artifact (dataset, base model, checkpoint)."""
        artifact_id = id_of(artifact, "artifact")
        role = validation.optional_text(role, "role", max_length=validation.SHORT_MAX)

        def use(uow: UnitOfWork) -> None:
            found = uow.artifact(artifact_id)
            uow.run(self.id).use_input(artifact_id, found.uri, role or found.type,
                                       uow.envelope(), uow.timestamp)

        return self._command("input", None, None, use)

    def record_failure(self, error_type: str, message: str = "", *, signal: str = "exception",
                       retryable: bool = False, corrupted: bool = False, step: int | None = None,
                       event_id: Any = None, occurred_at: Any = None) -> Pending:
        """Record a detected failure (an exception, a backend ``corrupted`` flag, a lost worker)
        on the open run. After the run finished it is refused, writing nothing: RunFinishedError
        at once when this handle knows (it finished the run, or was opened on a finished one),
        else from ``wait()`` (refused on the writer thread)."""
        self._require_open("failures")
        error_type = validation.text(error_type, "error_type")
        message = validation.text(message, "message", max_length=validation.TEXT_MAX,
                                  allow_empty=True, multiline=True)
        signal = validation.text(signal, "signal", max_length=validation.SHORT_MAX)
        retryable = validation.bool_flag(retryable, "retryable")
        corrupted = validation.bool_flag(corrupted, "corrupted")
        at_step = validation.optional_step(step, "step")
        return self._command("failure", event_id, occurred_at,
                             lambda uow: uow.run(self.id).detect_failure(
                                 signal, error_type, message, bool(retryable), bool(corrupted),
                                 at_step, uow.envelope(), uow.timestamp))

    def finish(self, status: str = "completed", *, reason: str | None = None,
               superseded_by: Any = None, event_id: Any = None, occurred_at: Any = None) -> Pending:
        """End the run: completed, failed, cancelled or superseded. Blocks first until the
        work handed to ``finish_after`` is done."""
        status = validation.choice(status, "status", validation.RUN_STATUSES_FINAL)
        reason = validation.optional_text(reason, "reason", max_length=validation.TEXT_MAX,
                                          multiline=True)
        successor = None if superseded_by is None else as_uuid(
            getattr(superseded_by, "id", superseded_by), "superseded_by")
        while self._before_finish:
            with contextlib.suppress(Exception):  # that work reports its failure itself
                self._before_finish.pop(0)()
        pending = self._command("finish", event_id, occurred_at,
                                lambda uow: uow.run(self.id).finish(
                                    status, reason, successor, uow.envelope(), uow.timestamp))
        self.finished_status = status
        return pending

    def finish_after(self, wait: Callable[[], Any]) -> None:
        """Have ``finish`` call ``wait()`` (it blocks until work that records on this run, such
        as a checkpoint saved on another thread, is done) before the run ends; what ``wait``
        raises is that work's own failure, reported elsewhere, and does not stop the finish."""
        self._before_finish.append(wait)

    def flush(self, timeout: float | None = None) -> None:
        self.retention.flush(timeout)

    def __enter__(self) -> RunHandle:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        """Finish the run (failed on an exception, cancelled on Ctrl-C) and wait for it all."""
        if self.finished_status is None:
            if error is None:
                self.finish("completed")
            elif isinstance(error, KeyboardInterrupt):
                self.finish("cancelled", reason="KeyboardInterrupt")
            else:
                error_type = validation.clean_text(type(error).__name__, validation.NAME_MAX)
                self.record_failure(error_type, validation.clean_text(str(error)),
                                    signal="exception", step=self.max_step)
                self.finish("failed", reason=validation.clean_text(f"{error_type}: {error}"))
        self.retention.flush()

    # -- helpers -------------------------------------------------------------------------------

    def _checkpoint_step(self, step: Any) -> int:
        step = validation.step(step)
        self._require_open("checkpoints")
        if self.max_step is not None and step > self.max_step:
            raise ValidationError("step", f"checkpoint step {step} is after the last step "
                                          f"logged by this run ({self.max_step})", step)
        if step < self.start_step:
            raise ValidationError("step", f"checkpoint step {step} is before the run's first "
                                          f"step ({self.start_step})", step)
        return step

    def _require_schedule(self) -> CheckpointSchedule:
        if self._schedule is None:
            raise ValidationError("job.checkpoint_policy", "this run's job spec has none; start "
                                  "the run with job={'checkpoint_policy': "
                                  "lineage.CheckpointPolicy(...)}")
        return self._schedule

    def _require_open(self, what: str) -> None:
        if self.finished_status is not None:
            raise RunFinishedError(self.id, self.finished_status, what)


# log_step's packed metrics: how many names, the names, what takes their values from a dict
# (a tuple, in the names' order; KeyError when one is missing), and what packs those values
# as float64 (native order: ``array("d")``'s bytes).
_Shape = tuple[int, tuple[str, ...], Callable[[dict[str, Any]], tuple[Any, ...]],
               Callable[..., bytes]]


def _shape(names: tuple[str, ...]) -> _Shape:
    count = len(names)
    take: Callable[[dict[str, Any]], tuple[Any, ...]]
    if count > 1:
        take = itemgetter(*names)
    else:  # itemgetter of one name gives the bare value, of none is an error
        take = (lambda metrics: (metrics[names[0]],)) if names else (lambda metrics: ())
    return count, names, take, struct.Struct(f"{count}d").pack


def _policy_of(job: dict[str, Any] | None, run_id: UUID) -> CheckpointPolicy | None:
    """The run's checkpoint policy from its stored job spec (None when it has none, or when a
    spec stored before policies were checked holds one that is no longer valid)."""
    data = (job or {}).get("checkpoint_policy")
    if data is None:
        return None
    try:
        return CheckpointPolicy.from_dict(data, "job.checkpoint_policy")
    except ValidationError as error:
        log.warning("run %s: ignoring its stored checkpoint policy (%s)", run_id, error)
        return None
