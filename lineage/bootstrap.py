"""The composition root: turns a database URL into an EventStore adapter.

The only module of ``lineage`` (with the CLI) that imports adapters and SQLAlchemy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from lineage.errors import ConfigurationError, StoreError
from lineage.ports import ArtifactStorage, EventStore, PositionStore

SQLITE_DRIVERS = ("sqlite", "sqlite+pysqlite")
POSTGRES_DRIVERS = ("postgresql", "postgresql+psycopg", "postgres", "postgresql+psycopg2")


def open_store(url: str, *, create: bool = True) -> EventStore:
    """Open (creating tables if needed) the event store a URL names.

    Accepted: ``sqlite:///relative.db``, ``sqlite:////abs/path.db``, a bare file path (SQLite),
    ``postgresql+psycopg://user[:password]@host[:port]/db[?schema=name]``, ``memory://``.
    With ``create=False`` a SQLite file that does not exist is an error (read-only commands
    must not leave an empty database behind a mistyped path).
    """
    if url == "memory://":
        from lineage.adapters.memory import MemoryEventStore

        return MemoryEventStore()
    if "://" not in url:
        return _sqlite(url, create)
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as error:
        raise ConfigurationError(
            f"LINEAGE_DATABASE_URL {url!r} is not a database URL ({error}); "
            "use sqlite:///path.db or postgresql+psycopg://user@host:5432/db"
        ) from None
    if parsed.drivername in SQLITE_DRIVERS:
        if not parsed.database or parsed.database == ":memory:":
            raise ConfigurationError(
                "SQLite needs a file (sqlite:///path.db); use memory:// for a throwaway store"
            )
        return _sqlite(parsed.database, create)
    if parsed.drivername in POSTGRES_DRIVERS:
        from lineage.adapters.eventstore import PostgresEventStore

        if not parsed.database:
            raise ConfigurationError(f"{url!r} names no database; add /dbname to the URL")
        schema = parsed.query.get("schema", "public")
        return PostgresEventStore(
            dbname=parsed.database,
            host=parsed.host or "127.0.0.1",
            port=parsed.port or 5432,
            user=parsed.username or "postgres",
            password=parsed.password or "",
            schema=schema if isinstance(schema, str) else schema[0],
            display=parsed.render_as_string(hide_password=True),
        )
    raise ConfigurationError(
        f"unsupported database {parsed.drivername!r} in {url!r}; use sqlite or postgresql+psycopg"
    )


def _sqlite(path: str, create: bool) -> EventStore:
    from lineage.adapters.eventstore import SQLiteEventStore

    file = Path(path).expanduser()
    if not create and not file.exists():
        raise StoreError(f"no lineage database at {file} (set --db or LINEAGE_DATABASE_URL)")
    if not file.parent.exists():
        raise StoreError(f"cannot create {file}: directory {file.parent} does not exist")
    return SQLiteEventStore(str(file.resolve()))


def open_positions(url: str) -> PositionStore:
    """The tracked-position table in the database ``url`` names (see ``open_store``)."""
    from lineage.adapters.positions import SqlAlchemyPositionStore
    from lineage.adapters.sql import engine_for

    return SqlAlchemyPositionStore(engine_for(url))


def open_read_models(url: str, store: EventStore, mapper: Any, *, catch_up: bool = True) -> Any:
    """The read models (tables created if needed) in the database ``url`` names, fed from
    ``store``: a ``lineage.projections.queries.ReadModels``."""
    from lineage.adapters.sql import engine_for
    from lineage.projections import ProjectionRunner, all_projections
    from lineage.projections.queries import ReadModels

    engine = engine_for(url)
    runner = ProjectionRunner(store, engine, mapper, all_projections())
    return ReadModels(runner, engine, catch_up=catch_up)


def open_artifact_storage() -> ArtifactStorage:
    """Where retention deletes and recovery checks checkpoint bytes: local ``file://`` files
    (remote uris are only ever marked retired)."""
    from lineage.adapters.storage import LocalArtifactStorage

    return LocalArtifactStorage()


# -- OTLP export (DESIGN §6) ---------------------------------------------------------------------


def otlp_transport(settings: Any, *, retry_for_s: float | None = None, client: Any = None) -> Any:
    """The transport ``settings.protocol`` names (``lineage.otlp_config.OtlpSettings``);
    ``client`` is an httpx.Client (HTTP) or a grpc.Channel (gRPC) to use instead of a new one."""
    from lineage.adapters.otlp.transport import OtlpGrpcTransport, OtlpHttpTransport, RetryWindow
    from lineage.otlp_config import GRPC

    retry = RetryWindow(settings.retry_for_s if retry_for_s is None else retry_for_s)
    if settings.protocol == GRPC:
        return OtlpGrpcTransport(settings.endpoint, headers=settings.headers,
                                 timeout_s=settings.timeout_s, retry=retry, channel=client)
    return OtlpHttpTransport(settings.endpoint, headers=settings.headers,
                             timeout_s=settings.timeout_s, retry=retry, client=client)


def otlp_runner(store: EventStore, positions: PositionStore, settings: Any, transport: Any, *,
                name: str = "otlp", track: bool = True, start: int | None = None) -> Any:
    """An ``OtlpExportRunner`` following ``store``'s log from ``positions[name]`` (or
    ``start``), sending through ``transport``."""
    from lineage.adapters.otlp.encoder import OtlpEncoder
    from lineage.adapters.otlp.runner import OtlpExportRunner
    from lineage.codec.mapper import make_mapper
    from lineage.spans.builder import SpanBuilder

    builder = SpanBuilder(store, make_mapper(), steps_per_span=settings.steps_per_span)
    return OtlpExportRunner(store, positions, builder, OtlpEncoder(settings.service_name),
                            transport, name=name, batch_spans=settings.batch_spans,
                            batch_bytes=settings.batch_bytes, track=track, start=start)


def start_otlp_export(store: EventStore, database_url: str | None, export: bool | None,
                      **overrides: Any) -> Any:
    """Start the background exporter for a Tracker when OTLP export is enabled (``export``
    True, or None with LINEAGE_OTLP_EXPORT / an OTLP endpoint in the environment); None when
    it is not. Positions live in ``database_url``'s database (in memory without one).

    Raises ConfigurationError for a malformed endpoint, header or other OTLP setting.
    """
    import os

    from lineage.adapters.otlp.background import BackgroundExporter
    from lineage.otlp_config import OtlpSettings

    if export is False or (export is None
                           and os.environ.get("LINEAGE_OTLP_EXPORT", "").strip().lower() == "off"):
        return None
    settings = OtlpSettings.load(export=export, **overrides)
    if not settings.enabled:
        return None
    positions = open_positions(database_url or "memory://")
    # One attempt per call: the background loop owns the backoff, so it knows at once when
    # the collector is failing (and Tracker.close() does not wait on it).
    runner = otlp_runner(store, positions, settings, otlp_transport(settings, retry_for_s=0))
    return BackgroundExporter(runner, poll_s=settings.poll_s, drain_s=settings.drain_s,
                              strict=settings.strict).start()


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
    positions = open_positions(url)
    transport = OtlpJsonWriter(dry_run) if dry_run is not None else otlp_transport(settings)
    return otlp_runner(store, positions, settings, transport, name=name,
                       track=dry_run is None, start=0 if from_start else None)
