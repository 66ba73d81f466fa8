"""Appending many rows fast, inside the caller's transaction.

SQLAlchemy's ``insert()`` with a list of dicts costs ~10 µs a row in parameter handling; the
audit log and step metrics get a row per event, so they go through the driver directly:
``COPY ... FROM STDIN`` on PostgreSQL, ``executemany`` on SQLite.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Table


def append_rows(conn: Connection, table: Table, rows: Sequence[tuple[Any, ...]]) -> None:
    """Insert ``rows`` (tuples in the table's column order) in ``conn``'s transaction."""
    if not rows:
        return
    columns = [column.name for column in table.columns]
    if conn.dialect.name == "postgresql":
        raw: Any = conn.connection.driver_connection
        statement = f"COPY {table.name} ({', '.join(columns)}) FROM STDIN"
        with raw.cursor() as cursor, cursor.copy(statement) as copy:
            for row in rows:
                copy.write_row(row)
        return
    marks = ", ".join("?" * len(columns))
    conn.exec_driver_sql(f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({marks})",
                         list(rows))
