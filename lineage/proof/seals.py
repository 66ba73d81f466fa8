"""Seals as plain values: the signed message, its hash, and the JSON line an anchor keeps.

An anchor line (``lineage seal --anchor FILE``, stdout, the OTLP span) is one JSON object:
``number``, ``size``, ``root``, ``previous``, ``sealed_at_us``, ``digests_sha256``,
``public_key`` and ``signature`` (hex), enough to check the signature and to compare a store
against it (``lineage verify --anchor FILE``) without the seal event.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from lineage.proof.verifier import tree_head_message

ZERO = bytes(32)


@dataclass(frozen=True)
class TreeHead:
    number: int
    size: int
    root: bytes
    previous: bytes
    sealed_at_us: int
    digests_sha256: bytes
    public_key: bytes
    signature: bytes

    def message(self) -> bytes:
        return tree_head_message(self.number, self.size, self.root, self.previous, self.sealed_at_us,
                        self.digests_sha256)

    def hash(self) -> bytes:
        """What the next seal's ``previous`` holds."""
        return hashlib.sha256(self.message()).digest()

    def anchor_line(self) -> str:
        return json.dumps({
            "number": self.number, "size": self.size, "root": self.root.hex(),
            "previous": self.previous.hex(), "sealed_at_us": self.sealed_at_us,
            "digests_sha256": self.digests_sha256.hex(), "public_key": self.public_key.hex(),
            "signature": self.signature.hex()}, sort_keys=True)

    @classmethod
    def of_event(cls, event: Any) -> TreeHead:
        """The head a ``Log.Sealed`` event holds (ValueError when a field is malformed)."""
        return cls(int(event.originator_version), int(event.size), bytes.fromhex(event.root),
                   bytes.fromhex(event.previous), int(event.sealed_at_us),
                   hashlib.sha256(bytes.fromhex(event.digests)).digest(),
                   bytes.fromhex(event.public_key), bytes.fromhex(event.signature))

    @classmethod
    def of_anchor(cls, line: str) -> TreeHead:
        """The head an anchor line holds; ValueError naming what is wrong."""
        try:
            data = json.loads(line)
            return cls(int(data["number"]), int(data["size"]), bytes.fromhex(data["root"]),
                       bytes.fromhex(data["previous"]), int(data["sealed_at_us"]),
                       bytes.fromhex(data["digests_sha256"]), bytes.fromhex(data["public_key"]),
                       bytes.fromhex(data["signature"]))
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise ValueError(f"not an anchor line ({type(error).__name__}: {error})") from None

