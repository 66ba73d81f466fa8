"""Tracked positions in the notification log, one row per follower (projection or exporter).

A projection writes its position in the same transaction as its rows (``set`` with the
projection's connection); an exporter advances its own only after a successful export.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import BigInteger, Column, Connection, DateTime, Engine, MetaData, String, Table, select

from lineage.adapters.database import schema_change

metadata = MetaData()

positions = Table(
    "lineage_positions", metadata,
    Column("name", String(128), primary_key=True),
    Column("position", BigInteger, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)


class SqlAlchemyPositionStore:
    """``PositionStore`` on a SQLAlchemy engine (SQLite or PostgreSQL)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        with schema_change(engine) as conn:
            metadata.create_all(conn)

    def get(self, name: str) -> int:
        with self.engine.connect() as conn:
            return read_position(conn, name)

    def set(self, name: str, position: int) -> None:
        with self.engine.begin() as conn:
            write_position(conn, name, position)

    def all(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            return {row.name: row.position for row in conn.execute(select(positions))}


def read_position(conn: Connection, name: str) -> int:
    """The last notification id ``name`` has processed (0 when it has processed nothing)."""
    value = conn.execute(select(positions.c.position).where(positions.c.name == name)).scalar()
    return int(value or 0)


def write_position(conn: Connection, name: str, position: int) -> None:
    """Record ``position`` for ``name`` inside the caller's transaction."""
    now = datetime.now(UTC)
    updated = conn.execute(positions.update().where(positions.c.name == name)
                           .values(position=position, updated_at=now))
    if updated.rowcount == 0:
        conn.execute(positions.insert().values(name=name, position=position, updated_at=now))
