"""Settings: each declared once, with its environment variable, default and meaning.

Precedence: explicit argument > ``LINEAGE_*`` environment variable > default, resolved by the one
loader (``lineage.config.loader``) that the OTLP settings (``lineage.config.otlp``) use too. No
I/O at import; ``Settings.load`` reads the environment when called and fails with a message that
says what to set when a value is invalid.
"""

from __future__ import annotations

import getpass
import os
import socket
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from lineage.config.loader import Setting, resolve
from lineage.domain.recovery_rules import DEFAULT_RECOVERY_LEASE_S


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise ValueError("must be a positive integer")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise ValueError("must be a positive number")
    return value


def _default_actor() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _default_source() -> str:
    program = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "python"
    return f"{socket.gethostname()}/{program}"


def _setting(name: str, env: str, default: Callable[[], Any], parse: Callable[[str], Any],
             meaning: str) -> Setting:
    return Setting(name, ((env, parse),), default, meaning, parse)


SETTINGS = (
    _setting("database_url", "LINEAGE_DATABASE_URL", lambda: "sqlite:///lineage.db", str,
             "SQLAlchemy URL of the event store: sqlite:///path.db (default ./lineage.db; "
            "?mode=ro to open it read-only) or postgresql+psycopg://user@host:5432/db[?schema=name]"),
    _setting("tenant_id", "LINEAGE_TENANT", lambda: "default", str,
             "tenant recorded on every event"),
    _setting("actor", "LINEAGE_ACTOR", _default_actor, str,
             "who writes the events (default: the OS user)"),
    _setting("source", "LINEAGE_SOURCE", _default_source, str,
             "where the events come from (default: host/program)"),
    _setting("queue_size", "LINEAGE_QUEUE_SIZE", lambda: 20_000, _positive_int,
             "bounded write queue; a full queue blocks the caller"),
    _setting("batch_size", "LINEAGE_BATCH_SIZE", lambda: 5000, _positive_int,
             "most items (steps, commands) the writer commits in one transaction; a run's "
             "steps in one transaction are stored as one block"),
    _setting("batch_interval_s", "LINEAGE_BATCH_INTERVAL_S", lambda: 1.0, _positive_float,
             "longest the writer waits to fill a batch, in seconds: how stale another process's "
             "view of a run may be, and what a crash may lose of what nobody waited for "
             "(flush, wait and finish commit at once)"),
    _setting("retry_for_s", "LINEAGE_RETRY_FOR_S", lambda: 30.0, _positive_float,
             "how long the store may fail without a break before the writer gives up on what is "
             "queued and the next call reports the loss (also bounds a caller's wait)"),
    _setting("lock_timeout_s", "LINEAGE_LOCK_TIMEOUT_S", lambda: 30.0, _positive_float,
             "how long a SQLite reader or writer waits for another process's lock before "
             "failing with \"database is locked\", in seconds"),
    _setting("heartbeat_interval_s", "LINEAGE_HEARTBEAT_INTERVAL_S", lambda: 30.0, _positive_float,
             "how often an idle open run writes a heartbeat, in seconds (a monitor treats a run "
            "with no event for several intervals as crashed)"),
    _setting("recovery_lease_s", "LINEAGE_RECOVERY_LEASE_S", lambda: DEFAULT_RECOVERY_LEASE_S,
             _positive_float, "how long a recovery attempt is held without a renewal, in "
             "seconds; the executor renews it every third of that, and another executor may "
             "take over a recovery whose executor died once it expired"),
)


@dataclass(frozen=True)
class Settings:
    database_url: str
    tenant_id: str
    actor: str
    source: str
    queue_size: int
    batch_size: int
    batch_interval_s: float
    retry_for_s: float
    lock_timeout_s: float
    heartbeat_interval_s: float
    recovery_lease_s: float

    @classmethod
    def load(cls, environ: Mapping[str, str] | None = None, **explicit: Any) -> Settings:
        """Resolve every setting: explicit (not None) > environment > default."""
        values, _ = resolve(SETTINGS, explicit, os.environ if environ is None else environ)
        return cls(**values)
