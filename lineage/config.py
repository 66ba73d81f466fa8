"""Settings: each declared once, with its environment variable, default and meaning.

Precedence: explicit argument > ``LINEAGE_*`` environment variable > default. No I/O at import;
``Settings.load`` reads the environment when called and fails with a message that says what to
set when a value is invalid.
"""

from __future__ import annotations

import getpass
import os
import socket
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from lineage.errors import ConfigurationError


@dataclass(frozen=True)
class Setting:
    name: str
    env: str
    default: Callable[[], Any]
    parse: Callable[[str], Any]
    meaning: str


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


SETTINGS = (
    Setting("database_url", "LINEAGE_DATABASE_URL", lambda: "sqlite:///lineage.db", str,
            "SQLAlchemy URL of the event store: sqlite:///path.db (default ./lineage.db) or "
            "postgresql+psycopg://user@host:5432/db[?schema=name]"),
    Setting("tenant_id", "LINEAGE_TENANT", lambda: "default", str,
            "tenant recorded on every event"),
    Setting("actor", "LINEAGE_ACTOR", _default_actor, str,
            "who writes the events (default: the OS user)"),
    Setting("source", "LINEAGE_SOURCE", _default_source, str,
            "where the events come from (default: host/program)"),
    Setting("queue_size", "LINEAGE_QUEUE_SIZE", lambda: 20_000, _positive_int,
            "bounded write queue; a full queue blocks the caller"),
    Setting("batch_size", "LINEAGE_BATCH_SIZE", lambda: 1000, _positive_int,
            "most events the writer commits in one transaction"),
    Setting("batch_interval_s", "LINEAGE_BATCH_INTERVAL_S", lambda: 0.05, _positive_float,
            "longest the writer waits to fill a batch, in seconds"),
    Setting("retry_for_s", "LINEAGE_RETRY_FOR_S", lambda: 30.0, _positive_float,
            "how long the writer retries an unavailable store before reporting the loss"),
    Setting("heartbeat_interval_s", "LINEAGE_HEARTBEAT_INTERVAL_S", lambda: 30.0, _positive_float,
            "how often an idle open run writes a heartbeat, in seconds (a monitor treats a run "
            "with no event for several intervals as crashed)"),
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
    heartbeat_interval_s: float

    @classmethod
    def load(cls, environ: Mapping[str, str] | None = None, **explicit: Any) -> Settings:
        """Resolve every setting: explicit (not None) > environment > default."""
        env = os.environ if environ is None else environ
        unknown = set(explicit) - {f.name for f in fields(cls)}
        if unknown:
            raise ConfigurationError(f"unknown setting(s): {', '.join(sorted(unknown))}")
        values: dict[str, Any] = {}
        for setting in SETTINGS:
            given = explicit.get(setting.name)
            if given is not None:
                values[setting.name] = given
            elif env.get(setting.env, "").strip():
                values[setting.name] = _parse(setting, env[setting.env].strip())
            else:
                values[setting.name] = setting.default()
        return cls(**values)


def _parse(setting: Setting, text: str) -> Any:
    try:
        return setting.parse(text)
    except ValueError as error:
        raise ConfigurationError(
            f"{setting.env}={text!r} is invalid ({error}); set it to {setting.meaning}"
        ) from None
