"""What retention reads from the event store alone (no read model is read or caught up): which
live artifacts still hold a retirement's bytes (``ByteHolders``), which deletions a crash
interrupted (``unfinished_deletions``) and which runs a crash left holding more live
checkpoints than their policy keeps (``overfull_runs``). The composition root hands them to
``RetentionWorker`` (lineage.application.retention), which runs them on its thread.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any
from uuid import UUID

from lineage.application.policies import CheckpointPolicy
from lineage.application.retention import RETIRED_TOPIC, Retirement, expected_bytes
from lineage.codec.dispatch import topic_of
from lineage.domain import Artifact, Run
from lineage.errors import ValidationError

if TYPE_CHECKING:
    from eventsourcing.persistence import Mapper

    from lineage.application.recording import Recorder
    from lineage.ports import EventStore

# What overfull_runs reads: policies, saves, and what left the live set.
_STARTED, _SAVED = topic_of(Run.Started), topic_of(Run.CheckpointSaved)
_REGISTERED = topic_of(Artifact.Registered)
_GONE = (RETIRED_TOPIC, topic_of(Artifact.Expired))
PAGE = 1000


class ByteHolders:
    """Which live artifacts record a retirement's bytes at its uri (its bytes must stay while
    one does), from the event store alone: no read model is read or caught up.

    Every ``Artifact.Registered`` event is indexed once by (uri, algorithm, digest): the log is
    read from the start on the first question, and from where the last one stopped after that
    (one ranged read of one topic); each candidate's state comes from its own stream (a
    retirement or expiry since it was registered counts). Thread-safe: the retention worker
    asks, and so does ``repair_retention`` on its caller's thread."""

    def __init__(self, store: EventStore, mapper: Mapper) -> None:
        self.store, self.mapper = store, mapper
        self._by_bytes: dict[tuple[str, str, str], set[UUID]] = {}
        self._next = 1  # the first log position not indexed yet
        self._lock = threading.Lock()

    def __call__(self, retirement: Retirement) -> list[str]:
        if retirement.expected is None:
            return []
        with self._lock:
            self._index_new()
            candidates = set(self._by_bytes.get((retirement.uri, *retirement.expected), ()))
        return [str(artifact_id) for artifact_id in sorted(candidates)
                if artifact_id != retirement.artifact_id and self._live(artifact_id)]

    def _index_new(self) -> None:
        """Index the registrations stored since the last call, up to the log's head now."""
        head = self.store.max_position()
        for event in _read_topics(self.store, self.mapper, [_REGISTERED], self._next, head):
            if event.checksum_algorithm and event.checksum:
                key = (event.uri, event.checksum_algorithm, event.checksum)
                self._by_bytes.setdefault(key, set()).add(event.originator_id)
        self._next = max(self._next, head + 1)

    def _live(self, artifact_id: UUID) -> bool:
        artifact = _replayed(self.store, self.mapper, artifact_id)
        return isinstance(artifact, Artifact) and artifact.live


def host_of(source: str) -> str:
    """The machine part of an envelope's ``source`` (``host/program``)."""
    return source.split("/", 1)[0]


def _read_topics(store: EventStore, mapper: Mapper, topics: list[str], start: int = 1,
                 end: int | None = None) -> Iterator[Any]:
    """Every stored event with one of ``topics`` from log position ``start`` (up to ``end``
    when given), in log order, decoded (paged)."""
    while end is None or start <= end:
        page = store.read_log(start, PAGE, topics)
        for notification in page:
            if end is not None and notification.id > end:
                return
            yield mapper.to_domain_event(notification)
        if len(page) < PAGE:
            return
        start = page[-1].id + 1


def _replayed(store: EventStore, mapper: Mapper, artifact_id: UUID) -> Any:
    """The artifact as its stream says now (None when it has no events)."""
    artifact: Any = None
    for stored in store.read_stream(artifact_id):
        replayed: Any = mapper.to_domain_event(stored)
        artifact = replayed.mutate(artifact)
    return artifact


def unfinished_deletions(recorder: Recorder, store: EventStore, mapper: Mapper) -> Iterator[Retirement]:
    """Artifacts of this tenant retired on this machine whose bytes were not dealt with.

    Local paths only mean something on the machine that wrote them, so an artifact retired
    from another host is left for that host's repair.
    """
    here = host_of(recorder.origin.source)
    retired_on: dict[UUID, str] = {}
    for event in _read_topics(store, mapper, [RETIRED_TOPIC]):
        retired_on[event.originator_id] = host_of(event.source)
    for artifact_id, host in retired_on.items():
        if host != here:
            continue
        artifact = _replayed(store, mapper, artifact_id)
        if (isinstance(artifact, Artifact) and artifact.needs_deletion
                and artifact.tenant_id == recorder.origin.tenant_id):
            yield Retirement(artifact_id, artifact.uri, expected_bytes(artifact))


def overfull_runs(recorder: Recorder, store: EventStore,
                  mapper: Mapper) -> Iterator[tuple[UUID, CheckpointPolicy]]:
    """Runs of this tenant with a ``keep_last`` policy that hold more live checkpoints saved on
    this machine than it keeps (pinned ones count: applying the policy then retires nothing),
    with their policy. Only this machine's saves: their bytes are deleted here. One pass over
    the log's starts, saves, retirements and expiries."""
    here, tenant = host_of(recorder.origin.source), recorder.origin.tenant_id
    policies: dict[UUID, CheckpointPolicy] = {}
    saved: dict[UUID, set[UUID]] = {}
    gone: set[UUID] = set()
    for event in _read_topics(store, mapper, [_STARTED, _SAVED, *_GONE]):
        if isinstance(event, Run.Started):
            policy = _keep_last_policy(event.job)
            if policy is not None and event.tenant_id == tenant:
                policies[event.originator_id] = policy
        elif isinstance(event, Run.CheckpointSaved):
            if host_of(event.source) == here:
                saved.setdefault(event.originator_id, set()).add(event.artifact_id)
        else:
            gone.add(event.originator_id)
    for run_id, policy in policies.items():
        if len(saved.get(run_id, set()) - gone) > (policy.keep_last or 0):
            yield run_id, policy


def _keep_last_policy(job: dict[str, Any]) -> CheckpointPolicy | None:
    data = (job or {}).get("checkpoint_policy")
    if data is None:
        return None
    try:
        policy = CheckpointPolicy.from_dict(data, "job.checkpoint_policy")
    except ValidationError:  # stored before policies were checked: the run keeps everything
        return None
    return policy if policy.keep_last is not None else None
