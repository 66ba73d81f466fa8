"""Ports: the small interfaces the core owns and adapters implement.

``EventStore`` is what the writer and the queries need from persistence. Adapters:
``lineage.adapters.eventstore.SQLiteEventStore`` / ``PostgresEventStore`` (the eventsourcing
library's own recorders plus an event-id table) and ``lineage.adapters.memory.MemoryEventStore``
(the fake). ``tests/contract/test_event_store.py`` runs one set of cases against all three.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol
from uuid import UUID

from eventsourcing.persistence import Notification, StoredEvent

from lineage.application.metric_history import MetricHistory


class DuplicateEventError(Exception):
    """An append carried event ids that are already stored; nothing of it was written."""

    def __init__(self, event_ids: set[str]) -> None:
        self.event_ids = event_ids
        super().__init__(f"{len(event_ids)} event id(s) already stored")


def repeated(event_ids: Sequence[str]) -> set[str]:
    """The ids that occur more than once in one append (a batch repeating a write)."""
    seen: set[str] = set()
    twice: set[str] = set()
    for event_id in event_ids:
        (twice if event_id in seen else seen).add(event_id)
    return twice


class VersionConflictError(Exception):
    """An append collided with a stream version another writer stored first; nothing written."""


class EventStore(Protocol):
    """An append-only store of events in streams, with one global order (the notification log).

    Thread-safety: every method may be called from any thread. ``append`` is atomic: all the
    events and their ids are stored in one transaction, or none are.
    """

    def append(self, events: Sequence[StoredEvent], event_ids: Sequence[str],
               expect: Sequence[tuple[UUID, int]] = ()) -> None:
        """Store ``events`` durably, with ``event_ids`` (32 lowercase hex digits each): the ids
        held unique from now on (each event's id; for a step block, the block's id and the
        step ids its caller chose). ``events`` may be any objects with StoredEvent's attributes.
        ``expect``: (stream, version) pairs of streams ``events`` do not append to, each of
        which must still end at that version (0: no event) when they are stored, checked in
        the same transaction (the writer's steps for a run it has cached: another writer may
        have finished the run since).

        Raises DuplicateEventError when any id is already stored, VersionConflictError when a
        (stream, version) is taken or an expected stream moved on (nothing stored),
        lineage.errors.StoreError when the store fails.
        """

    def known_event_ids(self, event_ids: Iterable[str]) -> set[str]:
        """The subset of ``event_ids`` (hex) already stored."""

    def read_stream(self, stream_id: UUID, *, after: int | None = None,
                    desc: bool = False, limit: int | None = None) -> Sequence[StoredEvent]:
        """Events of one stream by version (ascending unless ``desc``)."""

    def positions(self, stream_id: UUID, versions: Sequence[int] | None = None) -> dict[int, int]:
        """Where events of one stream stand in the log: version -> notification id, for
        ``versions`` (every version when None; versions not stored are left out)."""

    def read_log(self, start: int, limit: int, topics: Sequence[str] = ()) -> Sequence[Notification]:
        """Notifications with id >= ``start`` in order; ids may have gaps."""

    def read_rows(self, start: int, limit: int) -> Sequence[tuple[int, Any, int, str, bytes]]:
        """The bulk read of the log (sealing and verification hash every row): up to ``limit``
        rows with notification id >= ``start`` in order, each a plain tuple (notification id,
        stream id as the database holds it (a UUID, or its text with or without dashes),
        version, topic, state). No event objects are built."""

    def max_position(self) -> int:
        """The highest notification id stored, 0 when empty."""

    @property
    def location(self) -> str:
        """Where the events are, for people (a file path or a URL without password)."""

    @property
    def read_only(self) -> bool:
        """True when the store can only be read (a read-only file, mount, role or URL):
        ``append`` then raises ReadOnlyStoreError at once, and nothing else writes either."""

    @property
    def database(self) -> Any:
        """The database the events live in (``lineage.adapters.database.Database``): the
        composition root opens the read models and positions on this same database."""

    def close(self) -> None: ...


class PositionStore(Protocol):
    """Where each follower of the notification log (projection, exporter) has got to.

    Adapter: ``lineage.adapters.positions.SqlAlchemyPositionStore`` (a ``lineage_positions``
    table in the store's own database).
    """

    def get(self, name: str) -> int:
        """The last notification id processed by ``name``; 0 when none."""

    def set(self, name: str, position: int) -> None:
        """Durably record that ``name`` has processed everything up to ``position``."""

    def all(self) -> dict[str, int]: ...


class Deletion(NamedTuple):
    """What deleting an artifact's bytes did: ``outcome`` is one of ``deleted``,
    ``already_gone`` (nothing to delete: recorded, not an error), ``remote`` (not ours to
    delete: only marked retired), ``content_changed`` (the bytes there are no longer the
    artifact's: kept) or ``failed`` (retried by the next repair); ``detail`` says more."""

    outcome: str
    detail: str


class ArtifactStorage(Protocol):
    """Where artifact bytes live, as far as lineage touches them: checking and deleting.

    Adapters: ``lineage.adapters.storage.LocalArtifactStorage`` (``file://`` uris) and
    ``MemoryArtifactStorage`` (the fake); ``tests/contract/test_artifact_storage.py`` runs one
    set of cases against both. Thread-safety: any method from any thread.
    """

    def manages(self, uri: str) -> bool:
        """True when this storage can read and delete ``uri``; other uris (``s3://``,
        ``tinker://``...) are never read or deleted through it."""

    def digest(self, uri: str, algorithm: str = "sha256") -> str | None:
        """The hex digest of the bytes at ``uri``, None when nothing is there. Raises OSError
        when the bytes exist but cannot be read, ValueError for a uri it does not manage."""

    def delete(self, uri: str, expected: tuple[str, str] | None = None) -> Deletion:
        """Delete the bytes at ``uri`` if they still hash to ``expected`` (algorithm, hex).
        Idempotent; never raises for a missing file or an I/O error (they are outcomes)."""


@dataclass(frozen=True)
class RunSignal:
    """A status source's report that a run needs recovering."""

    run_id: UUID
    signal: str  # "heartbeat.lost", "tinker.corrupted", "session.failed"...
    error_type: str
    message: str
    corrupted: bool = False
    retryable: bool = True
    step: int | None = None
    already_recorded: bool = False  # the failure is already an event on the run


class RunStatusSource(Protocol):
    """Something that knows which runs failed: the local store (crashed processes, recorded
    failures) now, a training service's REST API (its ``corrupted`` flag) later."""

    name: str

    def poll(self) -> Sequence[RunSignal]:
        """Runs that need recovering now. May raise: the monitor records the error and goes
        on polling."""


class ReadModelsPort(Protocol):
    """The read models a tracker queries (``lineage.projections.queries.ReadModels``): every
    query catches the projections up to the head of the log first. Results are plain dicts."""

    runner: Any  # the ProjectionRunner (status, rebuild, follow)

    def catches_up(self) -> bool:
        """Whether queries catch up first (False: current read models of a read-only store,
        read as they are, whose ``runner`` cannot write)."""

    def trace(self, run_id: str, *, shape: str = "lineageir") -> dict[str, Any]: ...

    def trace_stream(self, run_id: str, *,
                     shape: str = "lineageir") -> AbstractContextManager[dict[str, Any]]:
        """``trace`` whose ``spans`` (LineageIR shape) is a one-pass iterator over the rows,
        to be consumed inside the ``with`` block: for output written as it is made."""

    def runs(self, *, status: str | None = None, job_status: str | None = None,
             watched: bool = False, limit: int = 100, offset: int = 0) -> list[dict[str, Any]]: ...

    def run(self, run_id: str) -> dict[str, Any]:
        """RunNotFoundError when there is no such run."""

    def run_count(self, *, status: str | None = None, job_status: str | None = None) -> int: ...

    def ids_with_prefix(self, prefix: str, *, kind: str = "any", limit: int = 4) -> list[str]: ...

    def artifacts(self, **filters: Any) -> list[dict[str, Any]]: ...

    def artifact(self, artifact_id: str) -> dict[str, Any]: ...

    def lineage(self, node_id: str, *, direction: str = "up", depth: int = 20) -> dict[str, Any]: ...

    def audit(self, **filters: Any) -> list[dict[str, Any]]: ...

    def alias_history(self, name: str, *, scope: str | None = None) -> list[dict[str, Any]]: ...

    def metric_history(self, run_id: str, name: str) -> MetricHistory:
        """Every point of metric ``name`` over the run, in the order logged."""

    def metric_buckets(self, run_id: str, name: str, buckets: int) -> list[dict[str, Any]]:
        """Metric ``name`` downsampled to at most ``buckets`` buckets of consecutive points
        (dicts of ``metric_history.BUCKET_FIELDS``); ValidationError for a bad ``buckets``."""

    def quarantined(self, read_model: str | None = None) -> list[dict[str, Any]]:
        """Events the read models could not apply and skipped (position, reason...)."""

    def close(self) -> None: ...


class BackgroundExport(Protocol):
    """A follower that exports the log from a background thread (the OTLP exporter)."""

    def close(self, *, drain: bool) -> None:
        """Stop; with ``drain``, first try to send what was written (bounded by its settings)."""

    def raise_if_strict(self) -> None:
        """In strict mode, raise the export failures seen; otherwise do nothing."""


class LogRow(NamedTuple):
    """One row of the log as ``LogRewriter.scan`` reads it: its position (notification id),
    stream, version, topic and stored state (None unless its topic was asked for)."""

    position: int
    originator_id: UUID
    originator_version: int
    topic: str
    state: bytes | None


class LogRewriter(Protocol):
    """Rewrites stored rows of the log in place, for migrations (``lineage migrate``).

    Adapter: ``lineage.adapters.log_rewriter.SqlAlchemyLogRewriter`` (SQLite and PostgreSQL);
    ``tests/contract/test_log_rewriter.py`` holds both to this contract. One thread; the caller
    makes sure no other process projects from the log meanwhile (the projection lock).
    """

    @property
    def location(self) -> str: ...

    def scan(self, after: int, limit: int, topic: str) -> Sequence[LogRow]:
        """Up to ``limit`` rows with positions after ``after``, in log order; ``state`` is read
        only for rows of ``topic`` (the others cost no more than their ids)."""

    def head(self) -> int:
        """The highest position stored, 0 when empty."""

    def positions(self) -> dict[str, int]:
        """The tracked positions of the log's followers (``lineage_positions``), by name."""

    def replace(self, rows: Sequence[LogRow], new: Any, drop_ids: Sequence[str],
                positions: dict[str, int]) -> None:
        """In ONE transaction: delete ``rows`` (consecutive in the log: no other row between
        the first and the last), store ``new`` (StoredEvent's attributes) at the position of
        the last of them, delete ``drop_ids`` (hex) from the event-id index, and write
        ``positions`` (name -> value) as tracked positions. Other rows keep their positions.
        Raises StoreError, having changed nothing, when the rows between the first and the
        last are not exactly ``rows``."""

    def size_bytes(self) -> int:
        """What the store takes on disk: the SQLite file (and its WAL), or the PostgreSQL
        schema's tables and indexes."""

    def vacuum(self) -> None:
        """Give the space of deleted rows back (SQLite ``VACUUM``; PostgreSQL ``VACUUM FULL``
        of the events and event ids): rewrites them, holding them exclusively meanwhile."""

    def close(self) -> None: ...
