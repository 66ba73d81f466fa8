"""The recovery executor (DESIGN §7): a failed or corrupted run resumes as a new, linked run.

Each attempt is recorded on the failed run, in order:

1. ``RecoveryStarted`` (attempt n, strategy). Two executors racing: the Run aggregate refuses a
   second start while one is in progress, and optimistic concurrency makes that hold across
   processes, so exactly one proceeds; the other returns status ``already_recovering``.
2. For each candidate the strategy yields (``latest``, ``best`` or one checkpoint), a check
   (lineage.application.recovery_select): a ``Verified`` event on the artifact when its bytes were hashed,
   and ``RecoveryCheckpointRejected`` with the reason when it cannot be used; then the next
   older one. With ``allow_weights_only``, a checkpoint without optimizer state is used when no
   full one passes. No usable checkpoint: ``RecoveryFailed`` and status ``no_checkpoint``.
3. ``RecoveryCheckpointSelected``; a new run (``ResumedFrom``: the old run, the checkpoint,
   optimizer restored or not, the resume step) is started and handed with the checkpoint to the
   user's ``resume`` function.
4. ``resume`` raising fails the attempt (``RecoveryFailed``; the new run finishes ``failed``).
   A retryable error (RetryPolicy.is_retryable) is retried after the policy's delay, with the
   injected ``sleep``; when attempts run out, ``RecoveryExhausted``.
5. Success: ``StepsLost`` (the steps the old run logged after the checkpoint: first, last,
   count), ``RecoveryCompleted`` and ``Finished(superseded)`` on the old run.

Results, never exceptions, for the outcomes a caller must handle; a store failure still raises.
"""

from __future__ import annotations

import contextlib
import random as random_module
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol
from uuid import UUID

from lineage.application import recovery_select, validation
from lineage.application.commands import id_of
from lineage.application.policies import RetryPolicy
from lineage.application.run_handle import RunHandle
from lineage.application.unit_of_work import UnitOfWork
from lineage.application.views import ArtifactView, LostSteps, RunView
from lineage.domain import ids
from lineage.errors import InvariantError, LineageError, ValidationError

if TYPE_CHECKING:
    from eventsourcing.persistence import Mapper

    from lineage.application.recording import Recorder
    from lineage.ports import ArtifactStorage, EventStore

ResumeFunction = Callable[[ArtifactView, RunHandle], Any]
STRATEGIES = ("latest", "best")
STATUSES = ("recovered", "already_recovering", "already_recovered", "finished", "no_failure",
            "no_checkpoint", "failed", "exhausted")
NOT_RECOVERED = ("completed", "cancelled")  # a run that ended like this is not recovered


@dataclass(frozen=True)
class Rejection:
    checkpoint_id: UUID
    step: int | None
    reason: str


@dataclass(frozen=True)
class Attempt:
    number: int
    checkpoint_id: UUID | None = None
    new_run_id: UUID | None = None
    error: str | None = None
    retryable: bool = False
    delay_s: float | None = None  # waited after this attempt, before the next


@dataclass(frozen=True)
class RecoveryResult:
    """What a recovery did. ``status`` is one of ``recovered``, ``already_recovering`` (another
    executor holds it), ``already_recovered``, ``finished`` (the run completed or was
    cancelled: nothing is written), ``no_failure`` (nothing to recover from),
    ``no_checkpoint`` (no candidate passed the checks), ``failed`` (a non-retryable error)
    or ``exhausted`` (retryable errors until the attempts ran out). ``message`` says what
    happened; ``hint``, when not empty, what a Python caller may do next (the CLI prints its
    own, in terms of its options)."""

    status: str
    run_id: UUID
    message: str
    new_run: RunHandle | None = None
    checkpoint: ArtifactView | None = None
    optimizer_restored: bool = False
    attempts: tuple[Attempt, ...] = ()
    rejected: tuple[Rejection, ...] = ()
    lost_steps: LostSteps | None = None
    hint: str = ""

    @property
    def recovered(self) -> bool:
        return self.status == "recovered"


@dataclass
class _Plan:
    strategy: str
    checkpoint_id: UUID | None
    restore_optimizer: bool
    allow_weights_only: bool
    retry: RetryPolicy | None
    resume: ResumeFunction | None
    name: str | None
    tags: Any
    attempts: list[Attempt] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)

    @property
    def label(self) -> str:
        return self.strategy if self.checkpoint_id is None else f"checkpoint {self.checkpoint_id}"


@dataclass(frozen=True)
class _Choice:
    checkpoint: ArtifactView
    optimizer_restored: bool
    reason: str


class RecoveryHost(Protocol):
    """What the executor needs of the tracker it recovers for (``Tracker`` provides it): its
    queries, the run commands it chains, and where checkpoint bytes are checked."""

    @property
    def store(self) -> EventStore: ...

    @property
    def mapper(self) -> Mapper: ...

    @property
    def storage(self) -> ArtifactStorage: ...

    @property
    def recorder(self) -> Recorder: ...

    def flush(self, timeout: float | None = None) -> None: ...

    def run(self, run: Any) -> RunView: ...

    def artifact(self, artifact: Any) -> ArtifactView: ...

    @property
    def artifacts(self) -> Callable[..., list[ArtifactView]]: ...

    @property
    def resume_run(self) -> Callable[..., RunHandle]: ...

    def run_handle(self, run: Any) -> RunHandle: ...


class RecoveryExecutor:
    """Runs recoveries for one tracker. ``sleep`` and ``random`` (backoff jitter) are injected
    so tests never wait. Blocking: every step waits for its events to be committed."""

    def __init__(self, host: RecoveryHost, *, sleep: Callable[[float], None] = time.sleep,
                 random: Callable[[], float] = random_module.random) -> None:
        self.host = host
        self.sleep = sleep
        self.random = random

    def recover(self, run: Any, *, strategy: Any = "latest", restore_optimizer: bool = True,
                allow_weights_only: bool = False, retry: Any = None,
                resume: ResumeFunction | None = None, name: str | None = None,
                tags: Any = None) -> RecoveryResult:
        """Recover ``run`` (a handle, id or id string); see the module docstring. Bad arguments
        raise ValidationError before anything is recorded."""
        plan = _plan(strategy, restore_optimizer, allow_weights_only, retry, resume, name, tags)
        self.host.flush()  # a failure just queued (not yet committed) must count
        handle = run if isinstance(run, RunHandle) else self.host.run_handle(run)
        view = self.host.run(handle.id)
        refused = _refusal(view)
        if refused is not None:
            return refused
        policy = plan.retry or RetryPolicy.from_dict(view.job.get("retry_policy") or {})
        delays = policy.delays(self.random)
        for index in range(policy.max_attempts):
            outcome = self._attempt(handle, plan, policy)
            if isinstance(outcome, RecoveryResult):
                return outcome
            if not outcome.retryable:
                return self._result("failed", handle, plan, f"attempt {outcome.number} failed "
                                    f"and is not retryable: {outcome.error}")
            if index + 1 < policy.max_attempts:
                plan.attempts[-1] = Attempt(**{**vars(outcome), "delay_s": delays[index]})
                self.sleep(delays[index])
        handle.exhaust_recovery().wait()
        return self._result("exhausted", handle, plan, f"{policy.max_attempts} attempt(s) "
                            f"failed; last: {plan.attempts[-1].error}")

    def _attempt(self, handle: RunHandle, plan: _Plan,
                 policy: RetryPolicy) -> Attempt | RecoveryResult:
        try:
            number = int(handle.begin_recovery(plan.label).wait())
        except InvariantError:  # lost a race: say why, from the state that won
            refused = _refusal(self.host.run(handle.id))
            if refused is None:
                raise
            return refused
        earlier = len(plan.rejected)
        choice = self._choose(handle, plan)
        if choice is None:
            summary = "; ".join(f"step {r.step}: {r.reason}" for r in plan.rejected[earlier:]) \
                or "the run has no checkpoint"
            handle.fail_recovery("NoValidCheckpoint", summary[:8192]).wait()
            plan.attempts.append(Attempt(number, error=f"NoValidCheckpoint: {summary}"))
            return self._result("no_checkpoint", handle, plan, f"no usable checkpoint: {summary}")
        checkpoint = choice.checkpoint
        handle.select_recovery_checkpoint(checkpoint.id, step=checkpoint.step or 0,
                                          reason=choice.reason).wait()
        new_run = self.host.resume_run(handle.id, checkpoint.id, name=plan.name,
                                          optimizer_restored=choice.optimizer_restored,
                                          tags=plan.tags)
        try:
            if plan.resume is not None:
                plan.resume(checkpoint, new_run)
        except BaseException as error:
            attempt = self._failed_attempt(handle, plan, new_run, number, checkpoint, error,
                                           policy)
            if not isinstance(error, Exception):
                raise
            return attempt
        lost = lost_steps(self.host, handle.id, checkpoint.step or 0)
        handle.complete_recovery(new_run, checkpoint, lost=lost,
                                 checkpoint_step=checkpoint.step or 0).wait()
        plan.attempts.append(Attempt(number, checkpoint.id, new_run.id))
        return self._result("recovered", handle, plan, f"resumed as run {new_run.id} from "
                            f"checkpoint step {checkpoint.step}", new_run=new_run,
                            checkpoint=checkpoint, optimizer_restored=choice.optimizer_restored,
                            lost_steps=lost)

    def _choose(self, handle: RunHandle, plan: _Plan) -> _Choice | None:
        view = self.host.run(handle.id)
        ordered, how = recovery_select.candidates(self.host, view, plan.strategy,
                                                  plan.checkpoint_id)
        fallback: ArtifactView | None = None
        for position, (artifact_id, step) in enumerate(ordered):
            artifact = self._artifact(artifact_id)
            if artifact is None:
                self._reject(handle, plan, artifact_id, step, "is not registered")
                continue
            if position > 0 and artifact.status != "live":
                continue  # retention retired it on purpose: not a fallback, not worth a record
            verdict = recovery_select.check(artifact, self.host.storage, plan.restore_optimizer)
            if verdict.verified is not None:
                self._record_verification(artifact.id, verdict.verified)
            if verdict.problem is None:
                checked = "; " + verdict.verified[2] if verdict.verified else "; remote, not hashed"
                return _Choice(artifact, plan.restore_optimizer, f"{how}: step {artifact.step}"
                               f"{checked}")
            if verdict.weights_only and plan.allow_weights_only and fallback is None:
                fallback = artifact
            self._reject(handle, plan, artifact.id, artifact.step, verdict.problem)
        if fallback is None:
            return None
        return _Choice(fallback, False, f"weights only: no checkpoint with optimizer state "
                                        f"passed the checks; step {fallback.step} "
                                        "(allow_weights_only)")

    def _artifact(self, artifact_id: UUID) -> ArtifactView | None:
        try:
            return self.host.artifact(artifact_id)
        except LineageError:
            return None

    def _reject(self, handle: RunHandle, plan: _Plan, artifact_id: UUID, step: int | None,
                reason: str) -> None:
        plan.rejected.append(Rejection(artifact_id, step, reason))
        handle.reject_recovery_checkpoint(artifact_id, step=step, reason=reason).wait()

    def _record_verification(self, artifact_id: UUID, verified: tuple[bool, str | None, str]) -> None:
        ok, observed, detail = verified

        def verify(uow: UnitOfWork) -> None:
            uow.artifact(artifact_id).verify(ok, observed, detail, uow.envelope(), uow.timestamp)

        self.host.recorder.submit(f"verify {artifact_id}", verify, self.host.recorder.envelope()).wait()

    def _failed_attempt(self, handle: RunHandle, plan: _Plan, new_run: RunHandle, number: int,
                        checkpoint: ArtifactView, error: BaseException,
                        policy: RetryPolicy) -> Attempt:
        kind = type(error).__name__
        message = f"{kind}: {error}"[:8192]
        with contextlib.suppress(LineageError):  # resume may have ended the new run itself
            new_run.finish("failed", reason=f"resume failed: {message}").wait()
        handle.fail_recovery(kind, str(error)[:8192]).wait()
        retryable = isinstance(error, Exception) and policy.is_retryable(error)
        attempt = Attempt(number, checkpoint.id, new_run.id, message, retryable)
        plan.attempts.append(attempt)
        return attempt

    def _result(self, status: str, handle: RunHandle, plan: _Plan, message: str,
                **found: Any) -> RecoveryResult:
        return RecoveryResult(status, handle.id, message, attempts=tuple(plan.attempts),
                              rejected=tuple(plan.rejected), **found)


def _plan(strategy: Any, restore_optimizer: bool, allow_weights_only: bool, retry: Any,
          resume: Any, name: str | None, tags: Any) -> _Plan:
    checkpoint_id = None
    if isinstance(strategy, str) and strategy in STRATEGIES:
        label = strategy
    else:
        try:
            checkpoint_id = id_of(strategy, "strategy")
        except ValidationError:
            raise ValidationError("strategy", f"must be latest, best or a checkpoint id; got "
                                              f"{strategy!r}", strategy) from None
        label = "checkpoint"
    if resume is not None and not callable(resume):
        raise ValidationError("resume", "must be a function resume(checkpoint, new_run)", resume)
    policy = None if retry is None else RetryPolicy.from_dict(retry, "retry")
    return _Plan(label, checkpoint_id, bool(restore_optimizer), bool(allow_weights_only), policy,
                 resume, validation.optional_text(name, "name", max_length=256),
                 validation.tags(tags))


def _refusal(view: RunView) -> RecoveryResult | None:
    """The result for a run that must not be recovered now, or None when it may be."""
    if view.superseded_by is not None:
        return RecoveryResult("already_recovered", view.id, f"run {view.id} was already "
                              f"recovered as run {view.superseded_by}")
    if view.recovering:
        return RecoveryResult("already_recovering", view.id, f"run {view.id} is already "
                              f"recovering (attempt {view.recovery_attempts} in progress)")
    if view.status in NOT_RECOVERED:
        return RecoveryResult("finished", view.id, f"run {view.id} {view.status}: a finished "
                              "run is not recovered", hint="tracker.resume_run starts a new run "
                              "from one of its checkpoints")
    if view.failures == 0 and view.status != "failed":
        return RecoveryResult("no_failure", view.id, f"run {view.id} has no failure recorded",
                              hint="record one first, e.g. run.record_failure(...)")
    return None


def lost_steps(tracker: Any, run_id: UUID, after_step: int) -> LostSteps | None:
    """The steps ``run_id`` logged after ``after_step``: found by binary search over the step
    stream's versions (a few reads for a million steps), taking steps as non-decreasing."""
    stream = ids.step_stream_id(run_id)

    def step_at(version: int) -> int:
        (stored,) = tracker.store.read_stream(stream, after=version - 1, limit=1)
        return int(tracker.mapper.to_domain_event(stored).step)

    last = tracker.store.read_stream(stream, desc=True, limit=1)
    if not last:
        return None
    total = last[0].originator_version
    last_step = int(tracker.mapper.to_domain_event(last[0]).step)
    if last_step <= after_step:
        return None
    low, high = 1, total
    while low < high:
        middle = (low + high) // 2
        if step_at(middle) > after_step:
            high = middle
        else:
            low = middle + 1
    return LostSteps(step_at(low), last_step, total - low + 1)

