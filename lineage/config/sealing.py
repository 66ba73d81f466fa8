"""Settings of sealing and verification (issue 14), resolved by the one loader
(explicit > ``LINEAGE_*`` environment > default)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lineage.config.loader import Setting, number, resolve


def _text(text: str) -> str:
    return text


SEAL_SETTINGS = (
    Setting("key", (("LINEAGE_SEAL_KEY", _text),), None,
            "the path of the Ed25519 private key (PEM) that signs seals", _text),
    Setting("public_key", (("LINEAGE_SEAL_PUBLIC_KEY", _text),), None,
            "the trusted public keys of seals, separated by commas: 64 hex digits or a key file",
            _text),
    Setting("every_events", (("LINEAGE_SEAL_EVERY_EVENTS", number(int, 1)),), 10_000,
            "seal when this many rows of the log wait (an integer >= 1)", number(int, 1)),
    Setting("every_s", (("LINEAGE_SEAL_EVERY_S", number(float, 0.01)),), 60.0,
            "seal when this many seconds passed since the last seal (a number > 0)",
            number(float, 0.01)),
    Setting("anchor", (("LINEAGE_SEAL_ANCHOR", _text),), None,
            "a file each seal is appended to (an anchor outside the database)", _text),
)


@dataclass(frozen=True)
class SealSettings:
    key: str | None
    public_key: str | None
    every_events: int
    every_s: float
    anchor: str | None

    @classmethod
    def load(cls, environ: Mapping[str, str] | None = None, **explicit: Any) -> SealSettings:
        values, _ = resolve(SEAL_SETTINGS, explicit, os.environ if environ is None else environ)
        return cls(**values)
