"""The remote tracker: ``lineage.Tracker("http://host:port", token=...)`` keeps the tracker's
API and its guarantees (DESIGN §8) over ``lineage serve``.

Every public write method runs as for a local tracker, in the caller's thread, with the same
validation (a bad input raises here, before anything is spooled), on a ``SpoolRecorder``: where a
local recorder queues the command for the writer, this one queues the *call* (its method, its
arguments, the event id and time of its envelope, the locations of the local files it names,
hashed here once) for the shipper (``lineage.remote.shipper``); the server runs the same
method with them. ``log_step`` is the run handle's own, its queue the shipper's deque.
Queries read the server's REST API (``RemoteReadModels``) after a flush; ``steps``,
``run_events`` and ``run_history`` read its event routes page by page and rebuild the same
domain events with this tracker's mapper. Heartbeats of idle runs are calls too
(``RemoteHeartbeats``), so the server's monitor sees a remote run alive.

What a ``wait()`` means here: committed on the server or, while it is unreachable, kept in
the durable spool (sent later; nothing is lost).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any
from uuid import UUID

from lineage.application.artifact_check import Record, recorded_by
from lineage.application.artifacts import declared_locations, locate
from lineage.application.commands import id_of
from lineage.application.handles import Pending
from lineage.application.heartbeat import Heartbeats
from lineage.application.metric_history import MetricHistory
from lineage.application.recording import WriterRecorder
from lineage.application.recovery import RecoveryExecutor
from lineage.application.run_handle import RunHandle
from lineage.application.tracker import TrackerService
from lineage.application.views import LostSteps
from lineage.errors import LineageError
from lineage.remote import wire

EVENT_PAGE = 1000  # events a read request of a remote tracker asks for


class SpooledPending(Pending):
    """A call's handle: resolves once the server answered, or once the call is in the spool
    while the server is unreachable (``wait`` returns None then)."""

    def wait(self, timeout: float | None = None) -> Any:
        shipper: Any = self._writer
        while not self._future.done():
            if shipper.offline_since is not None and not any(
                    getattr(entry, "future", None) is self._future for entry in list(shipper.queue)):
                return None  # durable in the spool; delivered later
            shipper.expedite()
            try:
                return super().wait(0.05 if timeout is None else min(timeout, 0.05))
            except TimeoutError:
                if timeout is not None:
                    timeout -= 0.05
                    if timeout <= 0:
                        raise
        return super().wait(timeout)


class SpoolRecorder(WriterRecorder):
    """``Recorder`` whose commands are calls sent to the server (see the module)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._local = threading.local()

    @contextmanager
    def calling(self, op: str, run: UUID | None, args: tuple[Any, ...], kwargs: dict[str, Any],
                locations: list[Any]) -> Iterator[None]:
        """The call that the next ``submit`` in this thread sends (the outermost one wins)."""
        if getattr(self._local, "call", None) is not None:
            yield
            return
        self._local.call = (op, run, args, kwargs, locations)
        try:
            with declared_locations({loc.uri: loc for loc in locations}) if locations else ExitStack():
                yield
        finally:
            self._local.call = None

    def submit(self, label: str, handler: Any, envelope: Any, *,
               background: bool = False) -> Pending:
        call = getattr(self._local, "call", None)
        if call is None:
            raise LineageError(f"{label}: this command has no remote form (a remote tracker "
                               "sends only the tracker's and run handles' public calls)")
        self._local.call = None
        op, run, args, kwargs, locations = call
        item = wire.call_item(op, run, args, kwargs, envelope.event_id, envelope.occurred_at,
                              locations)
        shipper: Any = self.writer  # a Shipper (lineage.remote.shipper)
        return SpooledPending(shipper.submit_call(item), shipper)


def _located(args: tuple[Any, ...], kwargs: dict[str, Any], name: str,
             field: str) -> tuple[tuple[Any, ...], dict[str, Any], Any]:
    """The call with its first argument (a path or uri) replaced by its uri, and its location
    (a local file is sized and hashed here, once)."""
    target = args[0] if args else kwargs.pop(name)
    location = locate(target, checksum=kwargs.get("checksum"), size=kwargs.get("size"),
                      field=field)
    return (location.uri, *args[1:]), kwargs, location


def _remote(op: str, base: Callable[..., Any]) -> Callable[..., Any]:
    def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        recorder: SpoolRecorder = self.recorder
        location = None
        if op == "register_artifact":
            args, kwargs, location = _located(args, kwargs, "target", "uri")
        elif op == "save_checkpoint":
            args, kwargs, location = _located(args, kwargs, "path", "path")
            if kwargs.get("parents") is None:
                kwargs["parents"] = self.next_parents(location, kwargs.get("step"))
        elif op in ("start_run", "resume_run") and kwargs.get("run_id") is None:
            job = kwargs.get("job")
            if not (isinstance(job, dict) and "key" in job):
                kwargs["run_id"] = self.new_id()  # the server starts the run with this id
        locations = [location] if location is not None and location.local_path else []
        run = self.id if isinstance(self, RunHandle) else None
        with recorder.calling(op, run, args, kwargs, locations):
            return base(self, *args, **kwargs)

    method.__name__ = op
    method.__doc__ = base.__doc__
    return method


class RemoteRunHandle(RunHandle):
    """A run handle whose commands go to the server; ``log_step`` is RunHandle's own."""

    def next_parents(self, location: Any, step: Any) -> list[UUID]:
        """What the checkpoint derives from when no ``parents`` are given (as RunHandle
        decides it), sent explicitly: the server's handle may not know this run's history."""
        previous = self._last_checkpoint
        if previous is None or not isinstance(step, int):
            return []
        own = location.artifact_id(self.recorder.origin.tenant_id, self.id, step)
        return [] if own == previous else [previous]


for _op in wire.RUN_OPS:
    setattr(RemoteRunHandle, _op, _remote(_op, getattr(RunHandle, _op)))


class RemoteHeartbeats(Heartbeats):
    """Heartbeats of this process's idle remote runs, sent as calls (``wire.HEARTBEAT``)."""

    def _send(self, run_id: UUID, last_step: int) -> int:
        recorder: Any = self._recorder
        with recorder.calling(wire.HEARTBEAT, run_id, (os.getpid(), last_step), {}, []):
            return super()._send(run_id, last_step)


class RemoteRecoveryExecutor(RecoveryExecutor):
    """Recovery through the server: a checkpoint is hashed here (the server never opens a
    file) and the verification is sent as a call (``wire.VERIFY``)."""

    def _record_verification(self, artifact_id: UUID,
                             verified: tuple[bool, str | None, str]) -> None:
        recorder: Any = self.host.recorder
        with recorder.calling(wire.VERIFY, None, (artifact_id, *verified), {}, []):
            super()._record_verification(artifact_id, verified)

    def _lost_steps(self, run_id: UUID, after_step: int) -> LostSteps | None:
        """Found by the server, which reads the run's step stream."""
        host: Any = self.host
        found = host.views.get(f"/v1/runs/{run_id}/lost-steps", after_step=after_step)
        return None if found is None else LostSteps(**found)


class RemoteTracker(TrackerService):
    """A ``TrackerService`` on a spool recorder and the server's read API."""

    recovery_executor = RemoteRecoveryExecutor

    def _handle(self, run_id: UUID, name: str, start_step: int,
                job: dict[str, Any] | None) -> RunHandle:
        return RemoteRunHandle(self.recorder, run_id, name, heartbeats=self.heartbeats,
                               retention=self.retention, start_step=start_step, job=job)

    def _verification(self) -> Record:
        """Files are hashed here (the server never opens one); each outcome is sent as a call
        (``wire.VERIFY``), as the recovery's checks are."""
        local = recorded_by(self.recorder)
        recorder: Any = self.recorder

        def record(artifact_id: UUID, verified: tuple[bool, str | None, str]) -> Pending:
            with recorder.calling(wire.VERIFY, None, (artifact_id, *verified), {}, []):
                return local(artifact_id, verified)

        return record

    def steps(self, run: Any, *, after: int = 0, limit: int | None = None,
              last: bool = False) -> list[Any]:
        """As ``Tracker.steps``, read from the server ``EVENT_PAGE`` steps a request."""
        self.flush()
        path = f"/v1/runs/{id_of(run, 'run')}/steps"
        if last and limit is not None:
            return self._events(path, after=after, limit=limit, last=True)
        found: list[Any] = []
        while limit is None or len(found) < limit:
            size = EVENT_PAGE if limit is None else min(EVENT_PAGE, limit - len(found))
            page = self._events(path, after=after, limit=size)
            found += page
            if len(page) < size:
                break
            after = page[-1].originator_version  # a step's place in its run's step stream
        return found

    def run_history(self, run: Any, *, steps: int | None = None) -> list[tuple[int, Any]]:
        """As ``Tracker.run_history``, read from the server page by page."""
        self.flush()
        path = f"/v1/runs/{id_of(run, 'run')}/history"
        found: list[tuple[int, Any]] = []
        while True:
            page = self.views.get(path, steps=steps, offset=len(found),  # type: ignore[attr-defined]
                                        limit=EVENT_PAGE)
            found += [wire.event_from(data, self.mapper) for data in page]
            if len(page) < EVENT_PAGE:
                return found

    def run_events(self, run: Any, *, steps: bool = True) -> list[Any]:
        return [event for _, event in self.run_history(run, steps=None if steps else 0)]

    def _events(self, path: str, **params: Any) -> list[Any]:
        page = self.views.get(path, **params)  # type: ignore[attr-defined]
        return [wire.event_from(data, self.mapper)[1] for data in page]

    @property
    def spool_path(self) -> Any:
        """The file this tracker's unacknowledged items are kept in."""
        shipper: Any = self.writer
        return shipper.spool.path


for _op in wire.TRACKER_OPS:
    setattr(RemoteTracker, _op, _remote(_op, getattr(TrackerService, _op)))


class ServerSideRetention:
    """Retention for a remote tracker: the server retires checkpoints by a policy's
    ``keep_last`` (events); the bytes on this machine are not deleted."""

    def __init__(self, recorder: WriterRecorder) -> None:
        self.recorder = recorder
        self.errors: list[BaseException] = []

    def after_save(self, *args: Any) -> None:
        return None

    def repair_once(self) -> None:
        return None

    def repair(self) -> list[Any]:
        return []

    def flush(self, timeout: float | None = None) -> None:
        self.recorder.flush(timeout)

    def drain(self, timeout: float | None = None) -> bool:
        return True

    def close(self, timeout: float | None = None) -> None:
        return None


class RemoteEndpoint:
    """What a remote tracker holds in place of an event store: where it sends."""

    read_only = False

    def __init__(self, url: str) -> None:
        self.location = url

    def close(self) -> None:
        return None


class RemoteReadModels:
    """``ReadModelsPort`` over the server's REST read API (``transport.get``)."""

    def __init__(self, transport: Any) -> None:
        self.get = transport.get

    def catches_up(self) -> bool:
        return False  # the server's read models catch up there, before each answer

    def trace(self, run_id: str, *, shape: str = "lineageir") -> dict[str, Any]:
        return dict(self.get(f"/v1/runs/{run_id}/trace", format=shape))

    @contextmanager
    def trace_stream(self, run_id: str, *, shape: str = "lineageir") -> Iterator[dict[str, Any]]:
        yield self.trace(run_id, shape=shape)

    def runs(self, **filters: Any) -> list[dict[str, Any]]:
        return list(self.get("/v1/runs", **filters))

    def run(self, run_id: str) -> dict[str, Any]:
        return dict(self.get(f"/v1/runs/{run_id}"))

    def run_count(self, **filters: Any) -> int:
        return int(self.get("/v1/run-count", **filters))

    def ids_with_prefix(self, prefix: str, *, kind: str = "any", limit: int = 4) -> list[str]:
        return list(self.get("/v1/ids", prefix=prefix, kind=kind, limit=limit))

    def artifacts(self, **filters: Any) -> list[dict[str, Any]]:
        as_of = filters.get("as_of")
        if isinstance(as_of, int) and not isinstance(as_of, bool):
            filters["as_of"] = f"@{as_of}"
        elif as_of is not None and hasattr(as_of, "isoformat"):
            filters["as_of"] = as_of.isoformat()
        return list(self.get("/v1/artifacts", **filters))

    def artifact(self, artifact_id: str) -> dict[str, Any]:
        return dict(self.get(f"/v1/artifacts/{artifact_id}"))

    def lineage(self, node_id: str, *, direction: str = "up", depth: int = 20) -> dict[str, Any]:
        return dict(self.get(f"/v1/lineage/{node_id}", direction=direction, depth=depth))

    def audit(self, **filters: Any) -> list[dict[str, Any]]:
        filters["steps"] = filters.pop("include_steps", False)
        return list(self.get("/v1/audit", **filters))

    def alias_history(self, name: str, *, scope: str | None = None) -> list[dict[str, Any]]:
        return list(self.get(f"/v1/aliases/{name}", scope=scope))

    def metric_history(self, run_id: str, name: str) -> MetricHistory:
        data = self.get(f"/v1/runs/{run_id}/metrics/{name}")
        history = MetricHistory()
        history.extend(data["steps"], data["values"])
        return history

    def metric_buckets(self, run_id: str, name: str, buckets: int) -> list[dict[str, Any]]:
        return list(self.get(f"/v1/runs/{run_id}/metrics/{name}", buckets=buckets))

    def quarantined(self, read_model: str | None = None) -> list[dict[str, Any]]:
        """The events the server's read models quarantined, of this tenant's runs and
        artifacts (an admin token's)."""
        found: list[dict[str, Any]] = []
        after: dict[str, Any] = {}  # the key of the row that ended the page before
        while True:
            page = self.get("/v1/quarantine", read_model=read_model, limit=EVENT_PAGE, **after)
            found += page
            if len(page) < EVENT_PAGE:
                return found
            after = {"after_model": page[-1]["read_model"], "after_position": page[-1]["position"]}

    def close(self) -> None:
        return None
