"""The recovery executor (DESIGN §7): a failed or corrupted run resumes as a new, linked run.

Each attempt is recorded on the failed run, in order:

1. ``RecoveryStarted`` (attempt n, strategy, holder, lease). Two executors racing: the Run
   aggregate refuses a second start while one holds an unexpired lease, and optimistic
   concurrency makes that hold across processes, so exactly one proceeds; the other returns
   status ``already_recovering``. The executor renews its lease while it works; an attempt
   whose executor died is taken over once its lease expired, and an executor whose attempt
   was taken over records nothing more and returns ``taken_over``
   (lineage.application.recovery_lease).
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

Results, never exceptions, for the outcomes a caller must handle; a store failure still raises
(the result types and the refusals decided before an attempt: lineage.application.recovery_result).
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
from lineage.application.artifact_check import recorded_by
from lineage.application.commands import id_of
from lineage.application.policies import RetryPolicy
from lineage.application.recovery_lease import LeaseKeeper, new_holder, now_of
from lineage.application.recovery_result import Attempt, RecoveryResult, Rejection, refusal
from lineage.application.recovery_select import lost_steps
from lineage.application.run_handle import RunHandle
from lineage.application.views import ArtifactView, RunView
from lineage.domain.recovery_rules import DEFAULT_RECOVERY_LEASE_S
from lineage.errors import InvariantError, LineageError, ValidationError

if TYPE_CHECKING:
    from eventsourcing.persistence import Mapper

    from lineage.application.recording import Recorder
    from lineage.ports import ArtifactStorage, EventStore

ResumeFunction = Callable[[ArtifactView, RunHandle], Any]
STRATEGIES = ("latest", "best")


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
    number: int = 0  # the attempt in progress: the fencing token of every command for it
    taking_over: bool = False  # the run was recovering (a dead executor's expired lease)
    new_run: RunHandle | None = None  # the run this attempt started, if any

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

    def runs(self, status: str | None = None, *, newest: int | None = None) -> list[RunView]: ...

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
                 random: Callable[[], float] = random_module.random,
                 lease_s: float = DEFAULT_RECOVERY_LEASE_S) -> None:
        """``lease_s``: how long an attempt is held without a renewal (renewed every third of
        it while this executor works); another executor may take it over after that."""
        self.host = host
        self.sleep = sleep
        self.random = random
        self.lease_s = lease_s
        self.holder = new_holder(host.recorder)

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
        refused = refusal(view, now_of(self.host.recorder))
        if refused is not None:
            return refused
        plan.taking_over = view.recovering
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
        try:
            handle.exhaust_recovery(attempt=plan.number).wait()
        except InvariantError:  # another executor began an attempt while this one slept
            return refusal(self.host.run(handle.id), now_of(self.host.recorder)) or self._result(
                "already_recovering", handle, plan, "another executor is recovering the run")
        return self._result("exhausted", handle, plan, f"{policy.max_attempts} attempt(s) "
                            f"failed; last: {plan.attempts[-1].error}")

    def _attempt(self, handle: RunHandle, plan: _Plan,
                 policy: RetryPolicy) -> Attempt | RecoveryResult:
        try:
            plan.number = int(handle.begin_recovery(plan.label, holder=self.holder,
                                                    lease_s=self.lease_s).wait())
        except InvariantError:  # lost a race: say why, from the state that won
            refused = refusal(self.host.run(handle.id), now_of(self.host.recorder))
            if refused is None:
                raise
            return refused
        plan.new_run = None
        if plan.taking_over:
            self._end_abandoned(handle.id, plan.number - 1)
            plan.taking_over = False
        with LeaseKeeper(handle, plan.number, self.holder, self.lease_s):
            try:
                return self._held(handle, plan, policy)
            except InvariantError:
                if self.host.run(handle.id).recovery_attempts <= plan.number:
                    raise  # not a takeover: a real refusal
                return self._taken_over(handle, plan)

    def _held(self, handle: RunHandle, plan: _Plan,
              policy: RetryPolicy) -> Attempt | RecoveryResult:
        """The attempt ``plan.number``, while this executor holds its lease."""
        number, earlier = plan.number, len(plan.rejected)
        choice = self._choose(handle, plan)
        if choice is None:
            summary = "; ".join(f"step {r.step}: {r.reason}" for r in plan.rejected[earlier:]) \
                or "the run has no checkpoint"
            handle.fail_recovery("NoValidCheckpoint", validation.clean_text(summary), attempt=number).wait()
            plan.attempts.append(Attempt(number, error=f"NoValidCheckpoint: {summary}"))
            return self._result("no_checkpoint", handle, plan, f"no usable checkpoint: {summary}")
        checkpoint = choice.checkpoint
        handle.select_recovery_checkpoint(checkpoint.id, step=checkpoint.step or 0,
                                          reason=choice.reason, attempt=number).wait()
        new_run = plan.new_run = self.host.resume_run(
            handle.id, checkpoint.id, name=plan.name,
            optimizer_restored=choice.optimizer_restored, tags=plan.tags)
        try:
            if plan.resume is not None:
                plan.resume(checkpoint, new_run)
        except BaseException as error:
            attempt = self._failed_attempt(handle, plan, new_run, number, checkpoint, error,
                                           policy)
            if not isinstance(error, Exception):
                raise
            return attempt
        lost = self._lost_steps(handle.id, checkpoint.step or 0)
        handle.complete_recovery(new_run, checkpoint, lost=lost, checkpoint_step=checkpoint.step
                                 or 0, attempt=number).wait()
        plan.attempts.append(Attempt(number, checkpoint.id, new_run.id))
        return self._result("recovered", handle, plan, f"resumed as run {new_run.id} from "
                            f"checkpoint step {checkpoint.step}", new_run=new_run,
                            checkpoint=checkpoint, optimizer_restored=choice.optimizer_restored,
                            lost_steps=lost)

    def _lost_steps(self, run_id: UUID, after_step: int) -> Any:
        """The steps ``run_id`` logged after ``after_step`` (LostSteps, or None), from the
        store's step stream."""
        return lost_steps(self.host, run_id, after_step)

    def _end_abandoned(self, run_id: UUID, attempt: int) -> None:
        """End failed the runs the dead executor of ``attempt`` started and never handed to a
        trainer (still pending: nothing logged), so they do not wait forever."""
        for view in self.host.runs("pending"):
            if view.resumed_from == run_id:
                with contextlib.suppress(LineageError):  # a trainer picked it up meanwhile
                    self.host.run_handle(view.id).finish(
                        "failed", reason=f"recovery attempt {attempt} of run {run_id} was "
                        "taken over after its executor's lease expired").wait()

    def _taken_over(self, handle: RunHandle, plan: _Plan) -> RecoveryResult:
        """Another executor took attempt ``plan.number`` over (this one's lease expired): the
        run this attempt started, if any, ends failed; nothing more is recorded on the run."""
        message = (f"attempt {plan.number} was taken over by another executor after its lease "
                   f"({self.lease_s:g}s) expired; this executor recorded nothing more")
        if plan.new_run is not None:
            with contextlib.suppress(LineageError):
                plan.new_run.finish("failed", reason=message).wait()
        plan.attempts.append(Attempt(plan.number, error=f"RecoveryLeaseExpired: {message}"))
        return self._result("taken_over", handle, plan, message)

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
        handle.reject_recovery_checkpoint(artifact_id, step=step, reason=reason,
                                          attempt=plan.number).wait()

    def _record_verification(self, artifact_id: UUID, verified: tuple[bool, str | None, str]) -> None:
        recorded_by(self.host.recorder)(artifact_id, verified).wait()

    def _failed_attempt(self, handle: RunHandle, plan: _Plan, new_run: RunHandle, number: int,
                        checkpoint: ArtifactView, error: BaseException,
                        policy: RetryPolicy) -> Attempt:
        kind = validation.clean_text(type(error).__name__, validation.NAME_MAX)
        message = validation.clean_text(f"{kind}: {error}")
        with contextlib.suppress(LineageError):  # resume may have ended the new run itself
            new_run.finish("failed", reason=validation.clean_text(f"resume failed: {message}"))\
                .wait()
        handle.fail_recovery(kind, validation.clean_text(str(error)), attempt=number).wait()
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
                 resume, validation.optional_text(name, "name"),
                 validation.tags(tags))

