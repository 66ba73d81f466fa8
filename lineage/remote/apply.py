"""The server's side of the write path (DESIGN §8): a batch from a remote tracker, applied
through the same application methods a local tracker calls, for one tenant and actor.

``ForcedRecorder`` is the session's recording port: a ``WriterRecorder`` whose next envelope
takes the event id and time the client gave (so a retried item is the same event, and the writer
and the store drop it as a duplicate) and whose step clock reads the client's step times. The
actor and tenant are the session's, from the token: nothing in an item can set them.
``BatchApplier`` runs the items in order: calls on the tracker service or a run handle (and the
two calls only a remote tracker sends: a heartbeat, a verification it hashed), step rows
through the run handle's ``log_step``, step columns checked as columns and stored as blocks in
one append (``lineage.remote.columns``, ``lineage.remote.blocks``); refusals are answered per
item.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Any
from uuid import UUID

from lineage.application import validation
from lineage.application.artifact_check import recorded_by
from lineage.application.artifacts import declared_locations
from lineage.application.commands import as_uuid
from lineage.application.handles import ArtifactRef, Pending
from lineage.application.heartbeat import heartbeat_in
from lineage.application.recording import WriterRecorder
from lineage.application.run_handle import RunHandle
from lineage.application.tracker import TrackerService
from lineage.application.views import LostSteps
from lineage.errors import (
    ArtifactNotFoundError,
    LineageError,
    NotFoundError,
    RunNotFoundError,
    StoreError,
    ValidationError,
    WriterError,
)
from lineage.remote.blocks import BlockAppender, block_ids, fits, open_for_steps
from lineage.remote.columns import StepColumns, put_columns
from lineage.remote.wire import HEARTBEAT, VERIFY, Call, Steps, error_data

log = logging.getLogger(__name__)
DUPLICATE = object()
Owner = Callable[[str], tuple[str, str] | None]  # id -> (kind "run"|"artifact", its tenant)


class ForcedRecorder(WriterRecorder):
    """A WriterRecorder whose envelopes and step times can be set, per thread, by the item
    being applied."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._local = threading.local()

    def force(self, event_id: UUID, occurred_at: str) -> None:
        self._local.forced = (event_id, occurred_at)

    def unforce(self) -> None:
        self._local.forced = None

    def envelope(self, event_id: Any = None, occurred_at: Any = None) -> Any:
        forced = getattr(self._local, "forced", None)
        if forced is not None and event_id is None:
            self._local.forced = None  # one envelope per item
            event_id, occurred_at = forced
        return super().envelope(event_id, occurred_at)

    @property
    def now_ns(self) -> Callable[[], int]:
        return self._step_ns

    def set_step_ns(self, ns: int) -> None:
        self._local.ns = ns

    def _step_ns(self) -> int:
        return getattr(self._local, "ns", 0) or time.time_ns()


class BatchApplier:
    """Applies batches for one session: ``service`` built on a ``ForcedRecorder``, ``owner``
    telling which tenant a run or artifact belongs to. Thread-safe."""

    def __init__(self, service: TrackerService, recorder: ForcedRecorder, owner: Owner) -> None:
        self.service = service
        self.recorder = recorder
        self.owner = owner
        self.tenant = recorder.origin.tenant_id
        self._handles: dict[UUID, RunHandle] = {}
        self._lock = threading.Lock()
        origin = recorder.origin
        self.blocks = BlockAppender(service.store, (origin.source, origin.tenant_id,
                                                    origin.actor), self._open_for_steps)

    def apply(self, items: list[Steps | Call | StepColumns],
              retry: bool = False) -> dict[str, Any]:
        """Apply ``items`` in order and wait until they are committed. Returns ``{"results":
        [per item], "errors": [refusals found by the final flush]}``. Raises StoreError while
        the store cannot commit (the client sends the batch again: nothing is applied twice).
        A ``retry`` batch may hold events already stored: those are left out first."""
        ids = [item.event_id.hex for item in items if isinstance(item, Call)]
        if retry:
            ids += [hex_id for item in items for hex_id in _resent_ids(item)]
        known = self._known(ids)
        if retry:
            items = [_unsent(item, known) for item in items]
        outcomes: list[Any] = []
        for item in items:
            if item is None:
                outcomes.append(DUPLICATE)
            elif isinstance(item, Steps):
                outcomes.append(self._guard(self._steps, item))
            elif isinstance(item, StepColumns):
                outcomes.append(self._guard(self._columns, item))
            elif item.event_id.hex in known:
                outcomes.append(DUPLICATE)
            else:
                outcomes.append(self._guard(self._call, item))
        for outcome in outcomes:
            if isinstance(outcome, StoreError):
                raise outcome  # the whole batch again later: stored items are then left out
        results = [_result(outcome) for outcome in outcomes]
        errors: list[dict[str, Any]] = []
        try:
            self.recorder.flush()
        except WriterError as error:
            if any(isinstance(failure, StoreError) for failure in error.failures):
                raise StoreError(f"the store could not commit the batch: {error.reason}",
                                 "unreachable server") from error
            errors = [error_data(failure) for failure in error.failures]
        return {"results": results, "errors": errors}

    def _known(self, ids: list[str]) -> set[str]:
        known: set[str] = set()
        for start in range(0, len(ids), 1000):
            known |= self.service.store.known_event_ids(ids[start:start + 1000])
        return known

    # -- items ---------------------------------------------------------------------------------

    def _guard(self, apply: Callable[[Any], Any], item: Any) -> Any:
        try:
            return apply(item)
        except LineageError as error:
            return error
        except TypeError as error:  # wrong argument names or count for the method
            return ValidationError(getattr(item, "op", "rows"), f"bad arguments: {error}")
        except Exception as error:  # a value our checks let through: refuse the item, not 500
            log.exception("lineage server: refusing an item that failed unexpectedly")
            return ValidationError(getattr(item, "op", "rows"), f"refused: {type(error).__name__}")

    def _steps(self, item: Steps) -> None:
        handle = self._handle(item.run)
        set_ns, log_step = self.recorder.set_step_ns, handle.log_step
        for row in item.rows:
            set_ns(row.occurred_ns)
            log_step(row.step, row.metrics, epoch=row.epoch, durations=row.durations,
                     tokens=row.tokens, resources=row.resources, occurred_at=row.occurred_at,
                     event_id=row.event_id)

    def _columns(self, item: StepColumns) -> Any:
        handle = self._handle(item.run)
        if fits(item):
            return None if self.blocks.append(handle, item) else DUPLICATE
        put_columns(handle, item, self.recorder.put_step)  # ids wrap: each step its own id
        return None

    def _open_for_steps(self, run_id: UUID) -> None:
        """Wait until what this session queued is committed, and refuse steps of a finished
        run or of one with a gap (``blocks.open_for_steps`` on the writer)."""
        gaps = self.service.writer.losses.gaps
        pending = self.recorder.submit(f"steps of run {run_id}",
                                       lambda uow: open_for_steps(uow, run_id, gaps),
                                       self.recorder.envelope())
        self.service.writer.expedite()
        pending.wait()

    def _call(self, call: Call) -> Any:
        self._check_owners(call.args, call.kwargs)
        target: Any = self.service if call.run is None else self._handle(call.run)
        kwargs = dict(call.kwargs)
        if call.op == "complete_recovery" and isinstance(kwargs.get("lost"), dict):
            kwargs["lost"] = _lost_steps(kwargs["lost"])
        method: Callable[..., Any]
        if call.op == HEARTBEAT:
            method = partial(self._heartbeat, target.id)
        elif call.op == VERIFY:
            method = self._verification
        else:
            method = getattr(target, call.op)
        with declared_locations(call.locations):
            self.recorder.force(call.event_id, call.occurred_at)
            try:
                result = method(*call.args, **kwargs)
            finally:
                self.recorder.unforce()
        if isinstance(result, RunHandle):
            with self._lock:
                self._handles[result.id] = result
        return result

    def _heartbeat(self, run_id: UUID, pid: Any, last_step: Any) -> Pending:
        """A remote run's heartbeat, appended as the local heartbeat thread appends it (False,
        nothing written, once the run finished)."""
        pid = validation.step(pid, "pid")
        last_step = validation.step(last_step, "last_step")
        return self.recorder.submit(f"heartbeat for run {run_id}",
                                    lambda uow: heartbeat_in(uow, run_id, pid, last_step),
                                    self.recorder.envelope())

    def _verification(self, artifact: Any, ok: Any, observed: Any, detail: Any) -> Pending:
        """What a remote recovery found hashing a checkpoint on its machine (the server never
        opens the file), recorded on the artifact as a local recovery records it."""
        artifact_id = as_uuid(artifact, "artifact")
        if type(ok) is not bool:
            raise ValidationError("ok", "must be true or false", ok)
        if observed is not None:
            observed = validation.text(observed, "observed", max_length=256)
        detail = validation.text(detail, "detail", max_length=1024)
        return recorded_by(self.recorder)(artifact_id, (ok, observed, detail))

    def _handle(self, run_id: UUID) -> RunHandle:
        with self._lock:
            handle = self._handles.get(run_id)
        if handle is None:
            if self.owner(str(run_id)) != ("run", self.tenant):
                raise RunNotFoundError(run_id)
            handle = self.service.run_handle(run_id)
            with self._lock:
                handle = self._handles.setdefault(run_id, handle)
        return handle

    def _check_owners(self, *values: Any) -> None:
        """Every id an item names that exists must be this tenant's: another tenant's runs and
        artifacts are not found, as in queries."""
        for text in _id_texts(values):
            found = self.owner(text)
            if found is not None and found[1] != self.tenant:
                raise (RunNotFoundError if found[0] == "run" else ArtifactNotFoundError)(text)


def _resent_ids(item: Any) -> list[str]:
    """The ids that tell which of a resent step item's steps are stored: each row's, a block
    item's first block's (its blocks are stored in one append, or none is)."""
    if isinstance(item, Steps):
        return [row.event_id.hex for row in item.rows]
    if isinstance(item, StepColumns):
        return block_ids(item)[:1] if fits(item) else item.event_hex()
    return []


def _unsent(item: Any, known: set[str]) -> Any:
    """A resent step item less the steps the store holds (None: all of them); a call is
    checked when applied."""
    if isinstance(item, Steps):
        return Steps(item.run, [row for row in item.rows if row.event_id.hex not in known])
    if isinstance(item, StepColumns):
        if fits(item):  # stored whole or not at all
            return None if block_ids(item)[0] in known else item
        return item.without(known)
    return item


def _id_texts(value: Any) -> list[str]:
    if isinstance(value, str):
        try:
            return [str(UUID(value))] if len(value) in (32, 36) else []
        except ValueError:
            return []
    if isinstance(value, list | tuple):
        return [text for item in value for text in _id_texts(item)]
    if isinstance(value, dict):
        return _id_texts(list(value.values()))
    return []


def _lost_steps(data: dict[str, Any]) -> LostSteps:
    try:
        return LostSteps(int(data["first_step"]), int(data["last_step"]), int(data["count"]))
    except (KeyError, TypeError, ValueError):
        raise ValidationError("lost", "must have first_step, last_step and count (integers)",
                              data) from None


def _result(outcome: Any) -> dict[str, Any]:
    if outcome is DUPLICATE:
        return {"ok": True, "duplicate": True}
    try:
        if isinstance(outcome, BaseException):
            raise outcome
        if isinstance(outcome, ArtifactRef):
            outcome = outcome.wait().id
        elif isinstance(outcome, Pending):
            outcome = outcome.wait()
        elif isinstance(outcome, RunHandle):
            outcome = outcome.id
    except (LineageError, NotFoundError) as error:
        return {"ok": False, "error": error_data(error)}
    return {"ok": True, "value": str(outcome) if isinstance(outcome, UUID) else outcome}
