"""``lineage.Tracker``: the public entry point, a TrackerService built by the composition root.

    tracker = lineage.Tracker()                      # LINEAGE_DATABASE_URL, else ./lineage.db
    tracker = lineage.Tracker("postgresql+psycopg://postgres@127.0.0.1:5432/test")
    tracker = lineage.Tracker(store=my_store)        # read models on my_store's own database

This module is an entry point, like the CLI: it turns the caller's arguments into parts with
``lineage.bootstrap.build`` and pushes them into the application service; nothing inside the
service calls back into the composition root.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from lineage.application.tracker import TrackerService
from lineage.bootstrap import build
from lineage.bootstrap_proof import anchors_from, open_sealer, open_verifier
from lineage.config.remote import remote_setting
from lineage.ports import ArtifactStorage, EventStore


class Tracker(TrackerService):
    """Records runs, steps and artifacts into an event store, and answers questions about them.

    ``Tracker()`` uses ``LINEAGE_DATABASE_URL``, else ``./lineage.db`` (SQLite). Pass a URL or
    an EventStore to choose (a store's read models live in its own database; an in-memory store
    gets in-memory read models); ``create=False`` refuses to create a new SQLite file;
    ``storage`` is where checkpoint bytes are checked and deleted (local files by default);
    ``clock`` and ``id_source`` make times and ids deterministic (see ``lineage.testing``);
    other keywords are settings (``lineage.config``). ``export_otlp=True`` (or an OTLP endpoint
    in the environment, see ``lineage.config.otlp``) also sends spans to a collector from a
    background thread that never blocks or breaks training; ``export_otlp=exporter`` (any
    OpenTelemetry SDK ``SpanExporter``) sends them to that exporter instead.
    """

    def __new__(cls, database_url: str | None = None, **options: Any) -> Any:
        """``http(s)://`` (the argument, else ``LINEAGE_URL``): a remote tracker of
        ``lineage serve`` (``lineage.bootstrap_remote``), with ``token=`` or LINEAGE_TOKEN."""
        url = database_url if database_url is not None or options.get("store") is not None \
            else remote_setting("url")
        if isinstance(url, str) and url.lower().startswith(("http://", "https://")):
            from lineage.bootstrap_remote import remote_tracker  # only then: no cost for others

            return remote_tracker(str(url), **options)
        return super().__new__(cls)

    def __init__(self, database_url: str | None = None, *, store: EventStore | None = None,
                 clock: Callable[[], datetime] | None = None,
                 id_source: Callable[[], UUID] | None = None, create: bool = True,
                 export_otlp: Any = None, storage: ArtifactStorage | None = None,
                 **settings: Any) -> None:
        super().__init__(build(database_url, store=store, clock=clock, id_source=id_source,
                               create=create, export_otlp=export_otlp, storage=storage,
                               **settings))

    def __enter__(self) -> Tracker:
        return self

    # -- tamper evidence (issue 14): ``lineage.application.verification`` ---------------------

    def verify(self, *, public_key: str | bytes | Sequence[str | bytes] | None = None,
               anchors: Sequence[str | os.PathLike[str]] = ()) -> Any:
        """Recompute the Merkle tree of the whole log and check every seal and its signature
        (with ``public_key``: 64 hex digits, raw bytes or a key file, or a list of them after
        a key rotation; else
        ``LINEAGE_SEAL_PUBLIC_KEY``; else the key the seals name, not trusted), the seals in
        the anchor files ``anchors`` and the followers' positions. Waits for what is queued
        first. Returns a ``VerifyReport``: ``ok``, and ``problems`` in log order (the first
        is the first bad position, with its kind). Raises ConfigurationError for a bad key
        or anchor file, StoreError when the store fails."""
        self.flush()
        verifier = open_verifier(self.store, public_key=public_key)
        return verifier.verify(anchors_from(anchors))

    def seal(self, *, key: str | os.PathLike[str] | None = None) -> Any:
        """Seal everything stored so far now with the private key file ``key`` (else
        ``LINEAGE_SEAL_KEY``); returns the last ``TreeHead`` written (None: nothing new).
        ``lineage seal --follow`` is the worker that seals as events arrive."""
        self.flush()
        return open_sealer(self.store, key=None if key is None else os.fspath(key)).seal()

    def start_sealing(self, *, key: str | os.PathLike[str] | None = None,
                      every_events: int | None = None, every_s: float | None = None,
                      poll_s: float = 1.0) -> Any:
        """Seal this store from a daemon thread of this process (a ``BackgroundSealer``) until
        ``close``, which seals what was written last. Off the training path: the thread reads
        the log and appends seals on its own, and a failure is logged, never raised here.
        ``lineage seal --follow`` in its own process does the same without sharing this
        process's CPU. ConfigurationError at once for a missing or bad key."""
        from lineage.application.sealing import BackgroundSealer

        if getattr(self, "_sealing", None) is not None:
            return self._sealing
        sealer = open_sealer(self.store, key=None if key is None else os.fspath(key),
                             every_events=every_events, every_s=every_s)
        self._sealing: Any = BackgroundSealer(sealer, poll_s=poll_s).start()
        return self._sealing

    def close(self, timeout: float | None = None) -> None:
        sealing = getattr(self, "_sealing", None)
        if sealing is not None and not self._closed:
            self._sealing = None
            try:
                self.flush(timeout)
            finally:
                sealing.close(final=True)
        super().close(timeout)

