"""Stored rows of the event log as Merkle leaves.

A row is read as a plain tuple ``(notification id, stream id, version, topic, state)``
(``EventStore.read_rows``: no objects built). Most rows are one leaf: their stream, version,
topic and state bytes, encoded by ``lineage.proof.verifier.canonical_event``. The notification
id is left out: it is where the row stands in one database (PostgreSQL's have gaps), not what
the row says, so a log copied to another store in the same order gives the same tree. The leaf
index is the leaf's rank in the log (0, 1, 2, ...), whatever the ids.

Steps are leaves by what they say, not by how they are stored, so that ``lineage migrate``
(legacy rows of one step each -> step blocks) keeps every leaf:

- a legacy step row (``STEP_TOPIC``) is one leaf, ``step_data`` of the step it decodes to;
- a block ``lineage migrate`` wrote (flag ``MIGRATED`` in its header) is one leaf per step,
  ``step_data`` of each: the same leaves, in the same order, as the rows it replaced;
- a block the writer stored is one leaf of its bytes (a block is one commit of up to
  thousands of steps: one leaf is what makes sealing and verify keep up with ingest).

``step_data`` is ``canonical_event(stream, seq, STEP_LEAF_TOPIC, JSON)``, the JSON holding every
field of the step with sorted keys and no spaces (numbers as Python's ``json`` writes them: an
int stays an int, a float keeps its ``repr``, NaN and infinities as ``NaN``/``Infinity``). A
row that does not decode is one leaf of its bytes, so a damaged row is found, never skipped.
"""

from __future__ import annotations

import hashlib
import json
import struct
import zlib
from collections.abc import Callable, Sequence
from typing import Any
from uuid import UUID

from eventsourcing.persistence import Mapper, StoredEvent

from lineage.codec.step_block import HEADER, MIGRATED, STEPS_TOPIC
from lineage.codec.step_decode import decode_block, split
from lineage.codec.steps import STEP_TOPIC, DecodedStep, StepCodec, decode_step
from lineage.proof.verifier import canonical_event, leaf_hash

DIGEST_BYTES = 8
STEP_LEAF_TOPIC = "lineage.proof:Step"
_sha256 = hashlib.sha256  # what a seal keeps of each leaf hash, to say where damage is
_VERSION = struct.Struct(">q").pack
_LENGTH = struct.Struct(">I").pack
_dumps = json.JSONEncoder(sort_keys=True, separators=(",", ":")).encode

Row = tuple[int, Any, int, str, Any]  # (notification id, stream id, version, topic, state)
_SPECIAL = frozenset((STEP_TOPIC, STEPS_TOPIC))  # rows whose leaves are not their bytes
LegacyDecoder = Callable[[Row], DecodedStep | None]


def leaf_digests(leaves: list[bytes]) -> bytes:
    """The first ``DIGEST_BYTES`` (8) of each leaf hash (32 bytes), joined: what a seal
    keeps of its leaves to say where damage is (sliced in C, 8 bytes as one machine word)."""
    return memoryview(b"".join(leaves)).cast("Q")[::4].tobytes()


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


def state_bytes(state: Any) -> bytes:
    """A stored state as bytes. A state some hand stored as text (SQLite lets any column hold
    any type) is taken as UTF-8, so a tampered row is hashed (and found changed) instead of
    stopping the verification."""
    if isinstance(state, bytes):
        return state
    if isinstance(state, str):
        return state.encode("utf-8", "surrogatepass")
    return bytes(state or b"")


def step_data(stream: str, step: DecodedStep) -> bytes:
    """The canonical bytes of one step's leaf (see the module doc)."""
    fields = {"run_id": step.run_id, "step": step.step, "epoch": step.epoch,
              "metrics": step.metrics, "durations": step.durations, "tokens": step.tokens,
              "resources": step.resources, "occurred_at": step.occurred_at,
              "occurred_at_raw": step.occurred_at_raw, "recorded_at": step.recorded_at,
              "event_id": step.event_id, "source": step.source, "tenant_id": step.tenant_id,
              "actor": step.actor}
    return canonical_event(stream, step.seq, STEP_LEAF_TOPIC, _dumps(fields).encode())


def plain_legacy(row: Row) -> DecodedStep | None:
    """A legacy step row's step from its plain JSON (a store without cipher or compressor)."""
    return decode_step(state_bytes(row[4]), row[2])


def mapped_legacy(mapper: Mapper) -> LegacyDecoder:
    """``LeafHasher``'s legacy decoder through ``mapper`` (any cipher, compressor or upcast)."""
    codec = StepCodec(mapper)

    def decode(row: Row) -> DecodedStep | None:
        _, stream_id, version, topic, state = row
        stream = stream_id if isinstance(stream_id, UUID) else UUID(str(stream_id))
        return codec.decode(StoredEvent(stream, version, topic, state_bytes(state)))

    return decode


def is_migrated(state: Any) -> bool:
    """Whether ``state`` is a step block that ``lineage migrate`` wrote (reads its header only)."""
    try:
        packed, _ = split(state_bytes(state))
        header = zlib.decompressobj().decompress(packed, HEADER.size)
        return bool(HEADER.unpack_from(header)[2] & MIGRATED)
    except (ValueError, zlib.error, TypeError):
        return False


class LeafHasher:
    """The leaves of many rows, fast: the encoded stream id and topic of each row are cached
    (a log has few streams and topics, and millions of rows). ``legacy`` decodes a legacy step
    row (default: ``plain_legacy``; the composition root passes the mapper's path for a store
    with a cipher). Not thread-safe."""

    def __init__(self, legacy: LegacyDecoder = plain_legacy) -> None:
        self.legacy = legacy
        self._streams: dict[Any, bytes] = {}
        self._topics: dict[str, bytes] = {}

    @classmethod
    def for_mapper(cls, mapper: Mapper) -> LeafHasher:
        """The hasher for a store read through ``mapper`` (its cipher and compressor decode
        legacy step rows): what sealing, verify and proofs use."""
        return cls(mapped_legacy(mapper))

    def leaves(self, rows: Sequence[Row]) -> tuple[list[bytes], list[int]]:
        """The leaf hashes of ``rows`` in order, and the notification id each leaf is in (a
        migrated block gives one leaf per step, all at the block's id)."""
        streams, topics = self._streams, self._topics
        out: list[Any] = []
        sha, join, version_of, length_of, special = _sha256, b"".join, _VERSION, _LENGTH, _SPECIAL
        for _, stream_id, version, topic, state in rows:
            stream = streams.get(stream_id)
            if stream is None:
                stream = self._stream(stream_id)
            label = topics.get(topic)
            if label is None:
                text = str(topic).encode()
                label = topics[topic] = len(text).to_bytes(4, "big") + text
            if topic in special or type(state) is not bytes:
                out.append(None)  # hashed by ``canonical`` in ``_expand``
                continue
            out.append(sha(join((stream, version_of(version), label, length_of(len(state)),
                                 state))).digest())
        if None not in out:
            return out, [row[0] for row in rows]
        return self._expand(rows, out)

    def _stream(self, stream_id: Any) -> bytes:
        if len(self._streams) > 100_000:
            self._streams.clear()
        name = stream_text(stream_id).encode()
        prefix = self._streams[stream_id] = b"\x00" + len(name).to_bytes(4, "big") + name
        return prefix

    def _expand(self, rows: Sequence[Row], out: list[Any]) -> tuple[list[bytes], list[int]]:
        leaves: list[bytes] = []
        ids: list[int] = []
        for row, leaf in zip(rows, out, strict=True):
            hashed = [leaf] if leaf is not None else [leaf_hash(data) for data in self.canonical(row)]
            leaves.extend(hashed)
            ids.extend([row[0]] * len(hashed))
        return leaves, ids

    def canonical(self, row: Row) -> list[bytes]:
        """The canonical bytes of each leaf of ``row`` (see the module doc)."""
        _, stream_id, version, topic, state = row
        stream = stream_text(stream_id)
        if topic == STEP_TOPIC:
            step = self._legacy(row)
            if step is not None:
                return [step_data(stream, step)]
        elif topic == STEPS_TOPIC and is_migrated(state):
            try:
                return [step_data(stream, step) for step in decode_block(state_bytes(state)).decoded_steps()]
            except ValueError:
                pass
        return [canonical_event(stream, int(version), str(topic), state_bytes(state))]

    def _legacy(self, row: Row) -> DecodedStep | None:
        try:
            return self.legacy(row)
        except Exception:  # a row that does not decode is a leaf of its bytes (module doc)
            return None
