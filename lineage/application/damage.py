"""What verification found wrong, and which kind of damage it is.

``classify`` compares the leaf digests the seals recorded with those of the rows stored now, at
the first place they differ: a row that is there but changed (``modified``), a sealed row that
is gone (``deleted``), a row no seal knows (``inserted``), two rows swapped (``reordered``), or
rows missing at the end (``truncated``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from lineage.proof.canonical import DIGEST_BYTES

MODIFIED, DELETED, INSERTED, REORDERED = "modified", "deleted", "inserted", "reordered"
TRUNCATED, ROLLED_BACK, REWRITTEN = "truncated", "rolled back", "rewritten"
BAD_SEAL, BAD_ANCHOR = "bad seal", "bad anchor"


@dataclass(frozen=True)
class Damage:
    """One problem: its ``kind`` (the constants above), the leaf index (rank of the row in
    the log) and notification id (``position``) where it is, when known, the seal that shows
    it, and a sentence saying what is wrong."""

    kind: str
    leaf: int | None
    position: int | None
    seal: int | None
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def order(self) -> tuple[int, int]:
        return (self.leaf if self.leaf is not None else 1 << 62, self.seal or 0)


def _digest(data: bytes | bytearray, index: int) -> bytes | None:
    start = index * DIGEST_BYTES
    piece = bytes(data[start:start + DIGEST_BYTES])
    return piece if len(piece) == DIGEST_BYTES else None


def first_difference(actual: bytes | bytearray, recorded: bytes | bytearray, start: int,
                     end: int) -> int | None:
    """The first leaf index in ``[start, end)`` whose digests differ (None: none does)."""
    lo, hi = start, end
    if actual[lo * DIGEST_BYTES:hi * DIGEST_BYTES] == recorded[lo * DIGEST_BYTES:hi * DIGEST_BYTES]:
        return None
    while hi - lo > 1:  # the digests before the first difference are equal: bisect on that
        mid = (lo + hi) // 2
        if actual[lo * DIGEST_BYTES:mid * DIGEST_BYTES] == recorded[lo * DIGEST_BYTES:mid * DIGEST_BYTES]:
            lo = mid
        else:
            hi = mid
    return lo


def classify(actual: bytearray, recorded: bytearray, positions: Sequence[int], start: int,
             end: int, seal: int | None) -> Damage:
    """The damage between leaves ``start`` and ``end`` (a seal whose root no longer matches):
    ``actual`` the digests of the rows stored, ``recorded`` those the seals hold,
    ``positions`` the stored rows' notification ids."""
    stored = len(actual) // DIGEST_BYTES
    index = first_difference(actual, recorded, start, min(end, stored))
    if index is not None:
        return damage_at(actual, recorded, positions, index, seal)
    if stored < end:
        return Damage(TRUNCATED, stored, positions[-1] if positions else None, seal,
                      f"the log ends after {stored} rows; seal {seal} covers {end}")
    return Damage(MODIFIED, start, _at(positions, start), seal,
                  "the rows match the seal's digests but not its root")


def damage_at(actual: bytearray, recorded: bytearray, positions: Sequence[int], index: int,
              seal: int | None) -> Damage:
    """The kind of damage at leaf ``index``, the first whose digests differ."""
    a0, a1 = _digest(actual, index), _digest(actual, index + 1)
    r0, r1 = _digest(recorded, index), _digest(recorded, index + 1)
    where = _at(positions, index)
    if a1 is not None and a0 == r1 and a1 == r0:
        kind, detail = REORDERED, f"the rows at positions {where} and {_at(positions, index + 1)} are swapped"
    elif r1 is not None and a0 == r1:
        kind, detail = DELETED, f"the row sealed as row {index} is gone (position {where} holds the next one)"
    elif a1 is not None and a1 == r0:
        kind, detail = INSERTED, f"the row at position {where} was never sealed"
    else:
        kind, detail = MODIFIED, f"the row at position {where} is not the row that was sealed"
    return Damage(kind, index, where, seal, detail)


def _at(positions: Sequence[int], index: int) -> int | None:
    return positions[index] if 0 <= index < len(positions) else None
