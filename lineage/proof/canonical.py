"""Stored rows of the event log as Merkle leaves.

A leaf covers one stored row (a step block of up to 1,000 steps is one row, so one leaf): its
stream, version, topic and state bytes, encoded by ``lineage.proof.verifier.canonical_event``.
The notification id is left out: it is where the row stands in one database (PostgreSQL's have
gaps), not what the row says, so a log copied to another store in the same order gives the same
tree. The leaf index is the row's rank in the log (0, 1, 2, ...), whatever its id.
"""

from __future__ import annotations

import hashlib
from typing import Any
from uuid import UUID

from lineage.proof.verifier import canonical_event, leaf_hash

DIGEST_BYTES = 8
_sha256 = hashlib.sha256  # what a seal keeps of each leaf hash, to say where damage is


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


class LeafHasher:
    """``row_leaf`` for many rows, fast: the encoded stream id and topic of each row are
    cached (a log has few streams and topics, and millions of rows). Not thread-safe."""

    def __init__(self) -> None:
        self._streams: dict[Any, bytes] = {}
        self._topics: dict[str, bytes] = {}

    def leaves(self, rows: Any) -> list[bytes]:
        streams, topics, out = self._streams, self._topics, []
        sha = _sha256
        for row in rows:
            stream = streams.get(row.originator_id)
            if stream is None:
                name = stream_text(row.originator_id).encode()
                stream = streams[row.originator_id] = b"\x00" + len(name).to_bytes(4, "big") + name
                if len(streams) > 100_000:
                    streams.clear()
            topic = topics.get(row.topic)
            if topic is None:
                label = str(row.topic).encode()
                topic = topics[row.topic] = len(label).to_bytes(4, "big") + label
            state = row.state
            if type(state) is not bytes:
                out.append(row_leaf(row))
                continue
            out.append(sha(b"".join((stream, row.originator_version.to_bytes(8, "big", signed=True),
                                     topic, len(state).to_bytes(4, "big"), state))).digest())
        return out
