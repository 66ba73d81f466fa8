"""Stored rows of the event log as Merkle leaves.

A leaf covers one stored row (a step block of up to 1,000 steps is one row, so one leaf): its
stream, version, topic and state bytes, encoded by ``lineage.proof.verifier.canonical_event``.
The notification id is left out: it is where the row stands in one database (PostgreSQL's have
gaps), not what the row says, so a log copied to another store in the same order gives the same
tree. The leaf index is the row's rank in the log (0, 1, 2, ...), whatever its id.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from lineage.proof.verifier import canonical_event, leaf_hash

DIGEST_BYTES = 8  # what a seal keeps of each leaf hash, to say where damage is


def stream_text(originator_id: Any) -> str:
    """A stream id as the canonical encoding holds it: 32 lowercase hex digits for a UUID
    (SQLite stores the hex, PostgreSQL a uuid), else its text."""
    if isinstance(originator_id, UUID):
        return originator_id.hex
    text = str(originator_id)
    try:
        return UUID(text).hex
    except ValueError:
        return text


def encode_row(row: Any) -> bytes:
    """The canonical bytes of a stored row (anything with StoredEvent's attributes). A state
    some hand stored as text (SQLite lets any column hold any type) is taken as UTF-8, so a
    tampered row is hashed (and found changed) instead of stopping the verification."""
    state = row.state
    if not isinstance(state, bytes):
        state = state.encode("utf-8", "surrogatepass") if isinstance(state, str) else bytes(state or b"")
    return canonical_event(stream_text(row.originator_id), int(row.originator_version),
                           str(row.topic), state)


def row_leaf(row: Any) -> bytes:
    return leaf_hash(encode_row(row))
