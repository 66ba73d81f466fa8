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
from collections.abc import Callable
from datetime import datetime
from typing import Any
from uuid import UUID

from lineage.application.tracker import TrackerService
from lineage.bootstrap import build
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
    background thread that never blocks or breaks training.
    """

    def __new__(cls, database_url: str | None = None, **options: Any) -> Any:
        """``http(s)://`` (the argument, else ``LINEAGE_URL``): a remote tracker of
        ``lineage serve`` (``lineage.bootstrap_remote``), with ``token=`` or LINEAGE_TOKEN."""
        url = database_url if database_url is not None or options.get("store") is not None \
            else os.environ.get("LINEAGE_URL", "").strip() or None
        if isinstance(url, str) and url.lower().startswith(("http://", "https://")):
            from lineage.bootstrap_remote import remote_tracker  # only then: no cost for others

            return remote_tracker(str(url), **options)
        return super().__new__(cls)

    def __init__(self, database_url: str | None = None, *, store: EventStore | None = None,
                 clock: Callable[[], datetime] | None = None,
                 id_source: Callable[[], UUID] | None = None, create: bool = True,
                 export_otlp: bool | None = None, storage: ArtifactStorage | None = None,
                 **settings: Any) -> None:
        super().__init__(build(database_url, store=store, clock=clock, id_source=id_source,
                               create=create, export_otlp=export_otlp, storage=storage,
                               **settings))

    def __enter__(self) -> Tracker:
        return self
