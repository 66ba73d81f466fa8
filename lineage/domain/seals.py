"""Seals: signed tree heads over the event log, kept in the log as events (issue 14).

One stream, ``SEAL_STREAM``, whose version is the seal's number (1, 2, ...): a second sealer
that tries to write a number already taken gets a version conflict, so each seal is written
exactly once. A seal covers the first ``size`` rows of the log (its Merkle tree,
``lineage.proof``); it is itself a row, covered by the next seal. Its topic
(``lineage.domain.seals:Log.Sealed``) is in every stored seal: keep the class here.
"""

from __future__ import annotations

from uuid import UUID, uuid5

from lineage.domain.envelope import LogEvent
from lineage.domain.ids import NAMESPACE

SEAL_STREAM: UUID = uuid5(NAMESPACE, "lineage:seals")


class Log:
    """The event log as a whole: not an aggregate, only the namespace of its own events."""

    class Sealed(LogEvent):
        """Seal ``originator_version`` (its number): the tree over the first ``size`` rows has
        root ``root`` (hex). ``previous`` is the SHA-256 of the previous seal's signed message
        (hex; zeros for the first), ``sealed_at_us`` the time signed (µs since the epoch),
        ``digests`` the first 8 bytes of each leaf hash added since the previous seal (hex:
        they say where damage is), ``frontier`` the tree's right edge (hex; the sealer resumes
        from it), ``position`` the notification id of the last row covered (where this store
        holds it; not signed), ``public_key`` and ``signature`` the Ed25519 key (raw, hex) and
        signature over ``lineage.proof.verifier.tree_head_message``."""

        size: int
        root: str
        previous: str
        sealed_at_us: int
        digests: str
        frontier: list[str]
        position: int
        public_key: str
        signature: str
