"""The server's composition: one store, its read models (followed by a projection thread), the
token table, and one session per (tenant, actor): a ``TrackerService`` on a ``ForcedRecorder``
with its own writer, sharing the store and the read models (``lineage.bootstrap.build``).

A session's tracker never opens a file a client named: its artifact storage manages no uri
(retention retires checkpoints by event; the bytes stay where the client keeps them) and its
locations are declared by the client (``lineage.remote.apply``).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any
from uuid import UUID

from lineage.application.read_api import ReadAPI
from lineage.application.tracker import TrackerService
from lineage.bootstrap import (
    build,
    exporter_positions,
    open_store,
    read_models_on,
    start_otlp_export,
)
from lineage.codec.mapper import make_mapper
from lineage.config import Settings
from lineage.ports import Deletion
from lineage.remote.apply import BatchApplier, ForcedRecorder

from .tokens import Principal, TokenStore

log = logging.getLogger(__name__)
SOURCE = "lineage serve"
NO_HEARTBEATS_S = 1e9  # a server session is not a training process: it sends no heartbeats
BUSY_FOLLOW_S = 5.0  # while batches keep arriving, the read models catch up this often


class NoBytesStorage:
    """``ArtifactStorage`` that manages no uri: the server never reads or deletes bytes."""

    def manages(self, uri: str) -> bool:
        return False

    def digest(self, uri: str, algorithm: str = "sha256") -> str | None:
        raise ValueError(f"the server does not open artifact uris ({uri})")

    def delete(self, uri: str, expected: tuple[str, str] | None = None) -> Deletion:
        raise ValueError(f"the server does not delete artifact bytes ({uri})")


class StoreReads(ReadAPI):
    """The queries of the read API that read the store itself (a run's steps and history)
    and the quarantine: what is committed, with no writer of its own to flush."""

    def __init__(self, store: Any, mapper: Any, views: Any) -> None:
        self.store, self.mapper, self.views = store, mapper, views

    def flush(self, timeout: float | None = None) -> None:
        return None


class ServerCore:
    """What the routes use. Thread-safe; ``close`` drains every session's writer."""

    def __init__(self, database_url: str | None = None, *, export_otlp: bool | None = None,
                 follow_s: float = 0.5, **settings: Any) -> None:
        self.settings = Settings.load(database_url=database_url, **settings)
        self.store = open_store(self.settings.database_url,
                                lock_timeout_s=self.settings.lock_timeout_s)
        self.mapper = make_mapper()
        self.engine = self.store.database.engine()
        self.views = read_models_on(self.engine, self.store, self.mapper)
        self.tokens = TokenStore(self.engine)
        self.reads = StoreReads(self.store, self.mapper, self.views)
        self.exporter = start_otlp_export(self.store, self.engine, export_otlp)
        self._overrides = settings
        self._sessions: dict[tuple[str, str], BatchApplier] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._last_batch = 0.0
        self._follower = threading.Thread(target=self._follow, args=(follow_s,),
                                          name="lineage-server-projections", daemon=True)
        self._follower.start()

    def session(self, principal: Principal) -> BatchApplier:
        """The applier of a principal's batches (one per tenant and actor)."""
        self._last_batch = time.monotonic()
        key = (principal.tenant_id, principal.actor)
        with self._lock:
            found = self._sessions.get(key)
            if found is None:
                found = self._sessions[key] = self._new_session(*key)
            return found

    def _new_session(self, tenant: str, actor: str) -> BatchApplier:
        overrides = {**self._overrides, "tenant_id": tenant, "actor": actor, "source": SOURCE,
                     "heartbeat_interval_s": NO_HEARTBEATS_S}
        parts = build(store=self.store, export_otlp=False, storage=NoBytesStorage(),
                      read_models=self.views, recorder_type=ForcedRecorder, **overrides)
        recorder = parts.recorder
        if not isinstance(recorder, ForcedRecorder):
            raise TypeError("build() did not use the recorder type given")
        return BatchApplier(TrackerService(parts), recorder, self.owner)

    def owner(self, node_id: str) -> tuple[str, str] | None:
        """What ``node_id`` is (``run``, else ``artifact``: any other stream) and its tenant
        (None: no such stream), from the first event of its stream: what is committed,
        whatever the read models have caught up. Raises when that event does not decode."""
        try:
            first = self.store.read_stream(UUID(node_id), limit=1)
        except ValueError:
            return None
        if not first:
            return None
        event = self.mapper.to_domain_event(first[0])
        kind = "run" if type(event).__qualname__.startswith("Run.") else "artifact"
        return kind, str(getattr(event, "tenant_id", ""))

    def export_status(self) -> list[dict[str, Any]]:
        """Each exporter's position, the head and the lag (``lineage export status``)."""
        head = self.store.max_position()
        return [{"name": name, "position": at, "head": head, "lag": max(head - at, 0)}
                for name, at in sorted(exporter_positions(self.engine).items())]

    def ready(self) -> bool:
        """Whether the store answers (readiness)."""
        try:
            self.store.max_position()
        except Exception:  # any failure means not ready; the probe reports it, never raises
            return False
        return True

    def _follow(self, poll_s: float) -> None:
        """Keep the read models near the head, so queries rarely wait for a catch-up: every
        ``poll_s`` while no batch arrives, every BUSY_FOLLOW_S while batches keep arriving (the
        CPU goes to committing them first; a query still catches up before it answers)."""
        caught_up = time.monotonic()
        while not self._stop.wait(poll_s):
            now = time.monotonic()
            if now - self._last_batch < poll_s and now - caught_up < BUSY_FOLLOW_S:
                continue
            caught_up = now
            try:
                self.views.runner.catch_up()
            except Exception:  # a failing catch-up is retried next poll; queries catch up too
                log.debug("lineage server: projection catch-up failed", exc_info=True)

    def close(self, timeout: float | None = 60.0) -> None:
        """Drain every session's writer (graceful shutdown), then close the store."""
        self._stop.set()
        self._follower.join(timeout)
        with self._lock:
            sessions = list(self._sessions.values())
            self._sessions.clear()
        for session in sessions:
            service = session.service
            service.heartbeats.close()
            try:
                service.writer.flush(timeout)
            except Exception:  # reported in the log; shutdown goes on for the other sessions
                log.exception("lineage server: a session's writer could not drain")
            service.retention.close(timeout)
            service.writer.close(timeout)
        if self.exporter is not None:
            self.exporter.close(drain=True)
        self.views.close()
        self.store.close()
        self.engine.dispose()
