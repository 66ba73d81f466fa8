"""Building the RFC 6962 Merkle tree and its proofs (the checking side is
``lineage.proof.verifier``, which a third party can copy).

``Frontier`` adds leaves one at a time and gives the root at any size in O(log n) memory: the
roots of the perfect subtrees the leaves so far make, largest first (a binary counter). The
sealer keeps it in each seal so that sealing resumes without reading the log again.
``root``, ``inclusion_proof`` and ``consistency_proof`` work on a list of leaf hashes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

from lineage.proof.verifier import EMPTY_ROOT, NODE, node_hash


class Frontier:
    """The right edge of a growing tree. Not thread-safe."""

    __slots__ = ("nodes", "size")

    def __init__(self, size: int = 0, nodes: Sequence[bytes] = ()) -> None:
        """``nodes``: the perfect subtree roots of the first ``size`` leaves, largest first
        (one for each bit set in ``size``); ValueError when they do not match ``size``."""
        if size < 0 or bin(size).count("1") != len(nodes):
            raise ValueError(f"a frontier of {size} leaves has {bin(size).count('1')} nodes, "
                             f"got {len(nodes)}")
        self.size = size
        self.nodes = list(nodes)

    def append(self, leaf: bytes) -> None:
        nodes, size, carry = self.nodes, self.size, leaf
        while size & 1:  # merge equal-sized subtrees, as a binary counter carries
            carry = node_hash(nodes.pop(), carry)
            size >>= 1
        nodes.append(carry)
        self.size += 1

    def extend(self, leaves: Iterable[bytes]) -> None:
        """``append`` each leaf, in bulk: the leaves go in as the largest perfect subtrees the
        size allows, each hashed a level at a time (the same tree, a third of the time)."""
        leaves = leaves if isinstance(leaves, list) else list(leaves)
        at, count = 0, len(leaves)
        while at < count:
            aligned = self.size & -self.size or 1 << 62  # subtrees up to this size fit here
            size = min(1 << ((count - at).bit_length() - 1), aligned)
            if size == 1:
                self.append(leaves[at])
            else:
                self._push(perfect_root(leaves[at:at + size]), size)
            at += size

    def _push(self, subtree: bytes, size: int) -> None:
        """Add the root of a perfect subtree of ``size`` leaves (``self.size`` is a multiple)."""
        nodes, level, carry = self.nodes, self.size // size, subtree
        while level & 1:
            carry = node_hash(nodes.pop(), carry)
            level >>= 1
        nodes.append(carry)
        self.size += size

    def root(self) -> bytes:
        if not self.nodes:
            return EMPTY_ROOT
        result = self.nodes[-1]
        for node in reversed(self.nodes[:-1]):
            result = node_hash(node, result)
        return result

    def copy(self) -> Frontier:
        return Frontier(self.size, self.nodes)


def perfect_root(leaves: list[bytes]) -> bytes:
    """The root over ``leaves`` (a power of two of them), a level at a time."""
    sha, level = hashlib.sha256, leaves
    while len(level) > 1:
        level = [sha(NODE + left + right).digest()
                 for left, right in zip(level[::2], level[1::2], strict=True)]
    return level[0]


def _split(n: int) -> int:
    """The largest power of two below ``n`` (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def root(leaves: Sequence[bytes]) -> bytes:
    """The root of the tree over ``leaves`` (leaf hashes)."""
    frontier = Frontier()
    frontier.extend(leaves)
    return frontier.root()


def inclusion_proof(leaves: Sequence[bytes], index: int) -> list[bytes]:
    """The audit path of leaf ``index`` in the tree over ``leaves`` (RFC 6962 PATH)."""
    if not 0 <= index < len(leaves):
        raise ValueError(f"leaf {index} is not in a tree of {len(leaves)} leaves")
    path: list[bytes] = []
    lo, hi = 0, len(leaves)
    while hi - lo > 1:
        k = _split(hi - lo)
        if index - lo < k:
            path.append(root(leaves[lo + k:hi]))
            hi = lo + k
        else:
            path.append(root(leaves[lo:lo + k]))
            lo += k
    return path[::-1]


def consistency_proof(leaves: Sequence[bytes], first_size: int) -> list[bytes]:
    """The proof that the tree over ``leaves`` extends the tree over its first ``first_size``
    (RFC 6962 PROOF); empty when the sizes are equal or ``first_size`` is 0."""
    if not 0 <= first_size <= len(leaves):
        raise ValueError(f"a tree of {len(leaves)} leaves has no prefix of {first_size}")
    if first_size in (0, len(leaves)):
        return []
    path: list[bytes] = []
    lo, hi, m, whole = 0, len(leaves), first_size, True
    while m != hi - lo:
        k = _split(hi - lo)
        if m <= k:
            path.append(root(leaves[lo + k:hi]))
            hi = lo + k
        else:
            path.append(root(leaves[lo:lo + k]))
            lo, m, whole = lo + k, m - k, False
    if not whole:
        path.append(root(leaves[lo:hi]))
    return path[::-1]
