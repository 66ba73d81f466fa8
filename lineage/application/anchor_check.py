"""Where a store parts from its anchors (``lineage verify --anchor FILE``).

An anchor is a seal kept outside the database: its size, root and the SHA-256 of its leaf
digests, signed. A store whose first ``size`` rows are those of the anchored seal has that root
at that size, and a changed row changes the root of every size from its leaf on: so the first
anchor (by size) whose root the store no longer has, after the last one it still has, brackets
the first bad row. Inside that bracket the store's own seals may still help: a stored seal whose
digests hash to what its anchor signed holds the digests of the rows as they were sealed
(whoever wrote the database since), so ``classify`` finds the row and the kind of damage. When
none does (the seals were replaced too), the report names the bracket: the rows from its first
leaf may differ, the rows before it are as anchored.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from lineage.application.damage import REWRITTEN, Damage, damage_at, first_difference
from lineage.proof.canonical import DIGEST_BYTES
from lineage.proof.seals import TreeHead


def anchor_damage(anchored: Sequence[TreeHead], seals: Sequence[Any], digests: bytearray,
                  positions: Sequence[int], roots: dict[int, bytes]) -> Damage | None:
    """The first place the store parts from ``anchored`` (heads with good signatures, none
    beyond the store's end), or None when every anchored root matches. ``seals``: the stored
    seals (``head`` and ``digests``); ``digests``, ``positions``, ``roots``: the store's leaf
    digests, notification ids, and roots at the anchored sizes (``verification.Scan``)."""
    ordered = sorted(anchored, key=lambda head: head.size)
    good = 0
    for head in ordered:
        if roots.get(head.size) == head.root:
            good = head.size
            continue
        recorded = _authentic(ordered, seals, good, head.size, digests)
        covered = min(len(recorded), len(digests)) // DIGEST_BYTES
        index = first_difference(digests, recorded, good, covered)
        if index is None:
            return _bracket(head, good, positions)
        return damage_at(digests, recorded, positions, index, head.number)
    return None


def _authentic(ordered: Sequence[TreeHead], seals: Sequence[Any], start: int, end: int,
               digests: bytearray) -> bytearray:
    """The store's digests of leaves before ``start`` (they match an anchor), then the
    digests of stored seals that their anchors vouch for, as far as they run on from
    ``start`` without a gap (at most to ``end``)."""
    by_number = {seal.head.number: seal for seal in seals}
    vouched = {}
    for head in ordered:
        seal = by_number.get(head.number)
        if seal is not None and seal.head.size == head.size and \
                hashlib.sha256(seal.digests).digest() == head.digests_sha256:
            vouched[head.size - len(seal.digests) // DIGEST_BYTES] = seal.digests
    recorded = bytearray(digests[:start * DIGEST_BYTES])
    at = start
    while at < end and at in vouched:
        recorded += vouched[at]
        at += len(vouched[at]) // DIGEST_BYTES or end
    return recorded


def _bracket(head: TreeHead, good: int, positions: Sequence[int]) -> Damage:
    where = positions[good] if good < len(positions) else None
    last = positions[head.size - 1] if 0 < head.size <= len(positions) else None
    return Damage(REWRITTEN, good, where, head.number,
                  f"the first {good} rows are as anchored; rows {good}-{head.size - 1} (positions "
                  f"{where}-{last}) are not those of the anchored seal {head.number} (root "
                  f"{head.root.hex()[:16]}...): the first bad row is among them")
