"""The settings of a remote tracker (``lineage.Tracker("http(s)://...")``) and of ``lineage
sync``, resolved by the one loader (``lineage.config.loader``): explicit argument > environment
variable > default."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lineage.config.loader import Setting, resolve


def _text(name: str, env: str, default: Any, meaning: str) -> Setting:
    return Setting(name, ((env, str),), default, meaning, str)


REMOTE_SETTINGS = (
    _text("url", "LINEAGE_URL", None,
          "the server of a remote tracker, http(s)://host[:port] (when no database URL is given)"),
    _text("token", "LINEAGE_TOKEN", "", "a remote tracker's token (lineage tokens create)"),
    _text("spool_dir", "LINEAGE_SPOOL_DIR", lambda: str(Path.home() / ".cache" / "lineage" / "spool"),
          "where a remote tracker spools what the server has not taken yet (a folder per server)"),
)


@dataclass(frozen=True)
class RemoteSettings:
    url: str | None
    token: str
    spool_dir: str

    @classmethod
    def load(cls, environ: Mapping[str, str] | None = None, **explicit: Any) -> RemoteSettings:
        """Resolve every remote setting: explicit (not None) > environment > default."""
        values, _ = resolve(REMOTE_SETTINGS, explicit, os.environ if environ is None else environ)
        return cls(**values)
