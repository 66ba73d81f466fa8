"""What someone with write access to the database can do to the event log, in plain SQL on
SQLite and PostgreSQL (the tamper suite of issue 14). Rows are named by notification id."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, text

from lineage.adapters.database import engine_for

TABLE = "stored_events"
SHIFT = 1_000_000_000


class Tamper:
    def __init__(self, url: str) -> None:
        self.engine: Engine = engine_for(url)
        self.id = "notification_id" if self.engine.dialect.name == "postgresql" else "rowid"

    def close(self) -> None:
        self.engine.dispose()

    def rows(self) -> list[Any]:
        with self.engine.connect() as conn:
            return list(conn.execute(text(
                f"SELECT {self.id} AS id, topic, state FROM {TABLE} ORDER BY {self.id}")))

    def _run(self, *statements: tuple[str, dict[str, Any]]) -> None:
        with self.engine.begin() as conn:
            for statement, params in statements:
                conn.execute(text(statement), params)

    def set_state(self, row: int, state: bytes) -> None:
        self._run((f"UPDATE {TABLE} SET state = :s WHERE {self.id} = :r", {"s": state, "r": row}))

    def modify(self, row: int, old: bytes, new: bytes) -> None:
        state = bytes(next(r.state for r in self.rows() if r.id == row))
        assert old in state, (old, state[:200])
        self.set_state(row, state.replace(old, new, 1))

    def delete(self, row: int) -> None:
        self._run((f"DELETE FROM {TABLE} WHERE {self.id} = :r", {"r": row}))

    def truncate(self, first: int) -> None:
        self._run((f"DELETE FROM {TABLE} WHERE {self.id} >= :r", {"r": first}))

    def swap(self, a: int, b: int) -> None:
        """Rows ``a`` and ``b`` change places in the log (each keeps its content)."""
        self._run((f"UPDATE {TABLE} SET {self.id} = :t WHERE {self.id} = :a", {"t": SHIFT, "a": a}),
                  (f"UPDATE {TABLE} SET {self.id} = :a WHERE {self.id} = :b", {"a": a, "b": b}),
                  (f"UPDATE {TABLE} SET {self.id} = :b WHERE {self.id} = :t", {"b": b, "t": SHIFT}))

    def insert_copy(self, source: int, after: int, version: int = 10_000) -> int:
        """A copy of row ``source`` (under another version of its stream) stored right after
        row ``after``; the rows behind move up by one. Returns the new row's id."""
        self._run(
            (f"UPDATE {TABLE} SET {self.id} = {self.id} + {SHIFT} WHERE {self.id} > :a", {"a": after}),
            (f"INSERT INTO {TABLE} (originator_id, originator_version, topic, state, {self.id}) "
             f"SELECT originator_id, :v, topic, state, :n FROM {TABLE} WHERE {self.id} = :s",
             {"v": version, "n": after + 1, "s": source}),
            (f"UPDATE {TABLE} SET {self.id} = {self.id} - {SHIFT} + 1 WHERE {self.id} > {SHIFT}", {}))
        return after + 1

    def reset_positions(self, at_most: int) -> None:
        """What a careful attacker does after cutting the log: move the followers back."""
        self._run(("UPDATE lineage_positions SET position = :p WHERE position > :p", {"p": at_most}))

    def gap(self, count: int = 3) -> None:
        """PostgreSQL: burn notification ids, as rolled-back inserts do."""
        if self.engine.dialect.name == "postgresql":
            self._run(*[(f"SELECT nextval(pg_get_serial_sequence('{TABLE}', 'notification_id'))", {})
                        for _ in range(count)])
