"""The composition root: builds the store, read models, writer, workers and exporter, and pushes
them into the objects that use them (DESIGN §10). Nothing it builds calls back into it.

The only module of ``lineage`` (with the public ``lineage.api`` and the CLI) that imports
adapters and SQLAlchemy. One database per tracker: the read models, the positions and the
exporter live in the database of the event store they follow (an in-memory store gets in-memory
read models), whatever the working directory or the environment say.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

from lineage.application.heartbeat import Heartbeats
from lineage.application.recording import WriterRecorder, utc_now
from lineage.application.retention import RetentionWorker
from lineage.application.retention_reads import ByteHolders, overfull_runs, unfinished_deletions
from lineage.application.tracker import TrackerParts
from lineage.application.writer import Writer
from lineage.bootstrap_exports import (
    exports,
    open_positions,
    otlp_runner,
    otlp_transport,
    start_openlineage_export,
    start_otlp_export,
)
from lineage.codec.mapper import make_mapper
from lineage.config import Settings
from lineage.domain.envelope import Origin
from lineage.errors import ReadOnlyStoreError, StoreError, ValidationError
from lineage.ports import (
    ArtifactStorage,
    EventStore,
    ReadModelsPort,
)

STORE_METHODS = ("append", "read_stream", "read_log", "max_position", "database", "location")
MIGRATION_REBUILD_BATCH = 100  # log rows per transaction when lineage migrate rebuilds


def build(database_url: str | None = None, *, store: EventStore | None = None,
          clock: Callable[[], datetime] | None = None,
          id_source: Callable[[], UUID] | None = None, create: bool = True,
          export_otlp: Any = None, storage: ArtifactStorage | None = None,
          read_models: ReadModelsPort | None = None,
          recorder_type: type[WriterRecorder] = WriterRecorder, **settings: Any) -> TrackerParts:
    """Everything a tracker needs, from settings (explicit > ``LINEAGE_*`` > default) or from
    what the caller injects. A given ``store`` wins over any URL: its own database holds the
    read models (or ``read_models``, shared with other trackers on that store: the server's
    sessions, one per tenant and actor, with a ``recorder_type`` of their own). Raises
    ConfigurationError for a bad setting, StoreError when the store cannot be opened
    (``create=False``: a SQLite file that does not exist)."""
    resolved = Settings.load(database_url=_url_argument(database_url), **settings)
    if store is not None and not all(hasattr(store, name) for name in STORE_METHODS):
        raise ValidationError("store", "must be an EventStore (lineage.ports.EventStore), got "
                              f"{type(store).__name__}", store)
    store = store if store is not None else open_store(
        resolved.database_url, create=create, lock_timeout_s=resolved.lock_timeout_s,
        connect_timeout_s=connect_timeout_for(resolved.retry_for_s))
    mapper = make_mapper()
    # one engine per tracker: read models and positions
    engine = store.database.engine() if read_models is None or export_otlp is not False else None
    storage = storage if storage is not None else open_artifact_storage()
    origin = Origin(resolved.source, resolved.tenant_id, resolved.actor)
    writer = Writer(store, mapper, origin=origin, clock=clock or utc_now,
                    id_source=id_source or uuid4, max_queue=resolved.queue_size,
                    batch_size=resolved.batch_size, batch_interval_s=resolved.batch_interval_s,
                    retry_for_s=resolved.retry_for_s)
    recorder = recorder_type(writer, origin, clock=clock, new_id=id_source or uuid4)
    if read_models is None:
        read_models = read_models_on(engine, store, mapper)
    return TrackerParts(
        settings=resolved, store=store, mapper=mapper,
        read_models=read_models, storage=storage, recorder=recorder,
        retention=RetentionWorker(recorder, storage,
                                  partial(unfinished_deletions, recorder, store, mapper),
                                  ByteHolders(store, mapper),
                                  partial(overfull_runs, recorder, store, mapper)),
        heartbeats=Heartbeats(recorder, resolved.heartbeat_interval_s),
        exporter=exports(start_otlp_export(store, engine, export_otlp),
                          start_openlineage_export(store, engine)),
    )


def _url_argument(url: Any) -> Any:
    """``database_url`` as given: a path object becomes its string; anything else but a
    string or None is refused here, naming the argument, before anything is opened."""
    if url is None or isinstance(url, str):
        return url
    if isinstance(url, os.PathLike):
        return os.fspath(url)
    raise ValidationError("database_url", "must be a URL or a file path (a string), got "
                          f"{type(url).__name__}", url)


def connect_timeout_for(retry_for_s: float) -> float:
    """How long one connection attempt to a server may wait: a quarter of the writer's retry
    window (1 to 10 s), so a call blocked on an unreachable server fails soon after the window
    ends (the store tries twice per call) rather than tens of seconds later."""
    return min(10.0, max(1.0, retry_for_s / 4))


def open_store(url: str, *, create: bool = True, lock_timeout_s: float = 30.0,
               connect_timeout_s: float = 10.0) -> EventStore:
    """Open (creating tables if needed) the event store a URL names (see
    ``lineage.adapters.database.Database.parse``). With ``create=False`` a SQLite file that does
    not exist is an error (read-only commands must not leave an empty database behind a
    mistyped path). A store this process cannot write is opened read-only (see
    ``lineage.adapters.eventstore``). Raises StoreError naming the file or URL."""
    from lineage.adapters.database import MEMORY, SQLITE, Database

    database = Database.parse(url)
    if database.kind == MEMORY:
        from lineage.adapters.memory import MemoryEventStore

        return MemoryEventStore()
    if database.kind == SQLITE:
        from lineage.adapters.eventstore import SQLiteEventStore

        file = Path(str(database.path))
        if file.is_dir():
            raise StoreError(f"not a lineage database: {file} is a directory")
        if (not create or database.read_only) and not file.exists():
            raise StoreError(f"no lineage database at {file} (set --db or LINEAGE_DATABASE_URL)")
        if not file.parent.exists():
            raise StoreError(f"cannot create {file}: directory {file.parent} does not exist")
        if not file.exists() and not os.access(file.parent, os.W_OK):
            raise ReadOnlyStoreError(str(file), f"cannot create it: directory {file.parent} "
                                     "is read-only")
        return SQLiteEventStore(str(file), lock_timeout_s=lock_timeout_s,
                                read_only=database.read_only)
    from lineage.adapters.postgres_store import PostgresEventStore

    parsed: Any = database.url
    return PostgresEventStore(dbname=str(parsed.database), host=parsed.host or "127.0.0.1",
                              port=parsed.port or 5432, user=parsed.username or "postgres",
                              password=parsed.password or "", schema=database.schema,
                              connect_timeout_s=connect_timeout_s)


def read_models_on(engine: Any, store: EventStore, mapper: Any, *, catch_up: bool = True) -> Any:
    """The read models (``lineage.projections.queries.ReadModels``) in ``engine``'s database,
    fed from ``store``; their tables are created on the first query. A read-only store gets
    ``lineage.projections.read_only``'s: its own if current, else built in memory."""
    from lineage.projections import ProjectionRunner, all_projections
    from lineage.projections.queries import ReadModels

    if store.read_only:
        from lineage.projections.read_only import ReadOnlyReadModels

        return ReadOnlyReadModels(store, engine, mapper, all_projections())

    return ReadModels(lambda: ProjectionRunner(store, engine, mapper, all_projections()), engine,
                      catch_up=catch_up)


def open_read_models(url: str, store: EventStore, mapper: Any, *, catch_up: bool = True) -> Any:
    """The read models in the database ``url`` names, fed from ``store`` (tools and benchmarks
    that open the two separately)."""
    from lineage.adapters.database import engine_for

    return read_models_on(engine_for(url), store, mapper, catch_up=catch_up)


def exporter_positions(url: Any) -> dict[str, int]:
    """The tracked positions of the exporters in the database ``url`` names (or an engine's:
    the server's); the read models' own positions, which share the table, left out:
    ``lineage project status`` shows those."""
    from lineage.projections import all_projections
    from lineage.projections.runner import SCHEMA_KEY

    projections = {projection.name for projection in all_projections()} | {SCHEMA_KEY}
    return {name: at for name, at in open_positions(url).all().items() if name not in projections}


def open_step_migration(database_url: str | None = None) -> Any:
    """A ``lineage.application.migration.StepMigration`` of the store ``database_url`` names
    (default: ``LINEAGE_DATABASE_URL``, else ``./lineage.db``), holding it: the projection lock
    (read models are rebuilt under it at the end) and, on SQLite, the file alone. Raises
    StoreError when there is no store there (or only ``memory://``) or another process has the
    SQLite file open, ReadOnlyStoreError for a store that cannot be written,
    ProjectionBusyError while another process projects."""
    from lineage.adapters.database import MEMORY, Database
    from lineage.adapters.log_rewriter import SqlAlchemyLogRewriter
    from lineage.application.migration import StepMigration
    from lineage.application.sealing import seal_positions
    from lineage.codec.step_read import BlockCodec
    from lineage.errors import ProjectionBusyError
    from lineage.projections import all_projections
    from lineage.projections.runner import SCHEMA_KEY, ProjectionLock

    settings = Settings.load(database_url=_url_argument(database_url))
    url = settings.database_url
    if Database.parse(url).kind == MEMORY:
        raise StoreError("memory:// keeps nothing between processes: there is nothing to migrate")
    store = open_store(url, create=False, lock_timeout_s=settings.lock_timeout_s)
    try:
        sealed = seal_positions(store, make_mapper())  # no group may straddle a seal
    finally:
        store.close()
    if store.read_only:
        reason = getattr(store, "read_only_reason", "read-only")
        raise ReadOnlyStoreError(store.location, f"{reason}; lineage migrate rewrites the "
                                 "store, so it must be writable")
    engine = store.database.engine()
    lock = ProjectionLock.for_engine(engine)
    if not lock.acquire():
        engine.dispose()
        raise ProjectionBusyError(f"another process is projecting into {store.location} (a "
                                  "tracker, lineage project follow...); stop it, then run "
                                  "lineage migrate again")
    followers = {projection.name for projection in all_projections()} | {SCHEMA_KEY}
    rewriter = None
    try:
        rewriter = SqlAlchemyLogRewriter(store.database, lock_timeout_s=settings.lock_timeout_s)
        exporters = [at for name, at in rewriter.positions().items() if name not in followers]
    except BaseException:
        if rewriter is not None:
            rewriter.close()
        lock.release()
        engine.dispose()
        raise

    def release() -> None:
        rewriter.close()
        lock.release()
        engine.dispose()

    return StepMigration(rewriter, BlockCodec(make_mapper()), boundaries=[*exporters, *sealed],
                         refresh=partial(_refresh_read_models, url, engine), release=release,
                         reset_positions={SCHEMA_KEY: 0})


def _refresh_read_models(url: str, engine: Any, progress: Any, rebuild: bool) -> int:
    """Rebuild (or catch up) every read model in ``engine``'s database from the store at
    ``url``, under the projection lock the caller holds."""
    from lineage.projections import ProjectionRunner, all_projections
    from lineage.projections.runner import HeldLock

    store = open_store(url, create=False)
    try:
        # A migrated log is mostly blocks of up to 1,000 steps: the runner's default batch
        # (4,000 rows, sized for a step a row) would hold millions of steps at once.
        runner = ProjectionRunner(store, engine, make_mapper(), all_projections(),
                                  batch_size=MIGRATION_REBUILD_BATCH, lock=HeldLock())
        return runner.rebuild(progress=progress) if rebuild else runner.catch_up(progress)
    finally:
        store.close()


def open_artifact_storage() -> ArtifactStorage:
    """Where retention deletes and recovery checks checkpoint bytes: local ``file://`` files
    (remote uris are only ever marked retired)."""
    from lineage.adapters.storage import LocalArtifactStorage

    return LocalArtifactStorage()


# -- the export commands: runners on a store by URL (the rest: bootstrap_exports) -----------------


def open_otlp_exporter(url: str, settings: Any, *, name: str = "otlp", from_start: bool = False,
                       dry_run: Any = None) -> Any:
    """An ``OtlpExportRunner`` on the existing store ``url`` names, for ``lineage export otlp``.

    ``from_start`` begins at position 0 (the tracked position is then rewritten as the export
    goes); ``dry_run`` (a text stream) writes OTLP/JSON lines there instead of sending, and
    leaves the tracked position alone. The caller closes ``runner.transport`` and
    ``runner.store``.
    """
    from lineage.adapters.otlp.transport import OtlpJsonWriter

    store = open_store(url, create=False)
    transport = OtlpJsonWriter(dry_run) if dry_run is not None else otlp_transport(settings)
    return otlp_runner(store, open_positions(store.database.engine()), settings, transport,
                       name=name, track=dry_run is None, start=0 if from_start else None)


def open_openlineage_exporter(url: str, settings: Any, *, name: str = "openlineage",
                              from_start: bool = False, dry_run: Any = None,
                              retry: dict[str, Any] | None = None) -> Any:
    """``lineage export openlineage``'s runner on the store ``url`` names (the caller closes
    ``runner.store``)."""
    from lineage.adapters.openlineage.compose import openlineage_runner

    store = open_store(url, create=False)
    try:
        return openlineage_runner(store, open_positions(store.database.engine()), make_mapper(),
                                  settings, name=name, start=0 if from_start else None,
                                  dry_run=dry_run, retry=retry)
    except BaseException:
        store.close()
        raise


