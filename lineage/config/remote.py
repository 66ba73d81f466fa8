"""The settings of a remote tracker (``lineage.Tracker("http(s)://...")``) and of ``lineage
sync``, resolved by the one loader (``lineage.config.loader``): explicit argument > environment
variable > default."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lineage.config.loader import Setting, resolve_one


def _text(name: str, env: str, default: Any, meaning: str) -> Setting:
    return Setting(name, ((env, str),), default, meaning, str)


REMOTE_SETTINGS = (
    _text("url", "LINEAGE_URL", None,
          "the server of a remote tracker, http(s)://host[:port] (when no database URL is given)"),
    _text("token", "LINEAGE_TOKEN", "", "a remote tracker's token (lineage tokens create)"),
    _text("spool_dir", "LINEAGE_SPOOL_DIR", lambda: str(Path.home() / ".cache" / "lineage" / "spool"),
          "where a remote tracker spools what the server has not taken yet (a folder per server)"),
)


_BY_NAME = {setting.name: setting for setting in REMOTE_SETTINGS}


def remote_setting(name: str, given: Any = None, environ: Mapping[str, str] | None = None) -> Any:
    """One remote setting: ``given`` (not None) > its ``LINEAGE_*`` variable > its default."""
    return resolve_one(_BY_NAME[name], {name: given}, os.environ if environ is None else environ)[0]
