"""Appending many rows fast, inside the caller's transaction.

SQLAlchemy's ``insert()`` with a list of dicts costs ~10 µs a row in parameter handling; the
audit log, step metrics and step spans get many rows per batch, so they go through the driver
directly: ``executemany`` on SQLite, ``COPY ... FROM STDIN`` in the binary format on
PostgreSQL (a step block's bytes cross as they are, not as hex text: 3-4x faster).
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
        statement = f"COPY {table.name} ({', '.join(columns)}) FROM STDIN (FORMAT BINARY)"
        with raw.cursor() as cursor, cursor.copy(statement) as copy:
            copy.set_types(_types(table, conn))
            for row in rows:
                copy.write_row(row)
        return
    marks = ", ".join("?" * len(columns))
    conn.exec_driver_sql(f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({marks})",
                         list(rows))


def _types(table: Table, conn: Connection) -> list[str]:
    """PostgreSQL's names of the column types, in order: binary COPY sends values in them."""
    return [column.type.compile(dialect=conn.dialect).split("(")[0].lower()
            for column in table.columns]
