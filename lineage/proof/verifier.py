"""Checking lineage proofs with nothing but the Python standard library.

This module is the whole of what a third party needs to check a proof printed by
``lineage verify --event`` or ``--from/--to`` without a database, and it is written to be
copied (it imports only ``hashlib``). The tree is RFC 6962's (Certificate Transparency; RFC 9162
section 2.1): SHA-256, a leaf hashed as ``H(0x00 || data)``, an inner node as
``H(0x01 || left || right)``, so no leaf can pose as a node.

The data of a leaf is the canonical encoding of one stored row of the event log
(``canonical_event``): the stream id, the version in that stream, the topic and the stored
state bytes, each length-prefixed, so the encoding is the same whichever database holds the row
and whatever notification id it got there.

A seal (signed tree head) signs ``tree_head_message``: Ed25519 over those bytes, with the
operator's key; check it with any Ed25519 library (``cryptography``, PyNaCl, libsodium, Go's
``crypto/ed25519``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

LEAF, NODE = b"\x00", b"\x01"
EMPTY_ROOT = hashlib.sha256(b"").digest()
HEAD_LABEL = b"lineage tree head v1\n"


def canonical_event(stream: str, version: int, topic: str, state: bytes) -> bytes:
    """The bytes a leaf hashes for one stored row: ``stream`` as 32 lowercase hex digits (a
    UUID stream) or its text, then the version (8 bytes, big-endian, two's complement), then
    the topic (UTF-8) and the state, each preceded by its length (4 bytes, big-endian)."""
    name, label = stream.encode(), topic.encode()
    return b"".join((len(name).to_bytes(4, "big"), name, version.to_bytes(8, "big", signed=True),
                     len(label).to_bytes(4, "big"), label, len(state).to_bytes(4, "big"), state))


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(LEAF + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(NODE + left + right).digest()


def tree_head_message(number: int, size: int, root: bytes, previous: bytes, sealed_at_us: int,
                      digests_sha256: bytes) -> bytes:
    """The bytes a seal's signature covers: a label, the seal's number (1, 2, ...), the tree
    size, the root, the SHA-256 of the previous seal's message (32 zero bytes for the first),
    the time it was sealed (microseconds since the epoch, UTC) and the SHA-256 of the seal's
    leaf digests (``digests_sha256``; the digests are the first 8 bytes of each leaf hash the
    seal added, which locate damage). Every integer is 8 bytes, big-endian."""
    return b"".join((HEAD_LABEL, number.to_bytes(8, "big"), size.to_bytes(8, "big"), root,
                     previous, sealed_at_us.to_bytes(8, "big", signed=True), digests_sha256))


def verify_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes) -> bool:
    """Whether ``proof`` shows the leaf hash ``leaf`` at ``index`` in the tree of ``size``
    leaves whose root is ``root`` (RFC 9162 section 2.1.3.2)."""
    if index < 0 or index >= size:
        return False
    sides = path_sides(index, size - 1, len(proof))
    if sides is None:
        return False
    r = leaf
    for p, left in zip(proof, sides, strict=True):
        r = node_hash(p, r) if left else node_hash(r, p)
    return r == root


def verify_consistency(first_size: int, second_size: int, first_root: bytes, second_root: bytes,
                       proof: Sequence[bytes]) -> bool:
    """Whether ``proof`` shows the tree of ``second_size`` leaves (root ``second_root``)
    extends the tree of its first ``first_size`` leaves (root ``first_root``): nothing of the
    first was changed, dropped or reordered (RFC 9162 section 2.1.4.2)."""
    if first_size < 0 or first_size > second_size:
        return False
    if first_size == second_size:
        return not proof and first_root == second_root
    if first_size == 0:
        return not proof and first_root == EMPTY_ROOT
    path = list(proof)
    if first_size & (first_size - 1) == 0:  # a power of two: the first root is a node here
        path.insert(0, first_root)
    if not path:
        return False
    fn, sn = first_size - 1, second_size - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    sides = path_sides(fn, sn, len(path) - 1)
    if sides is None:
        return False
    fr = sr = path[0]
    for c, left in zip(path[1:], sides, strict=True):
        if left:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
        else:
            sr = node_hash(sr, c)
    return fr == first_root and sr == second_root


def path_sides(fn: int, sn: int, count: int) -> list[bool] | None:
    """RFC 9162's walk up a path of ``count`` nodes from node ``fn`` of a level whose last
    node is ``sn``: for each path node, whether it is on the left of the hash so far. None
    when the path is too long or too short for the tree (the proof fails)."""
    sides = []
    for _ in range(count):
        if sn == 0:
            return None
        left = bool(fn & 1) or fn == sn
        sides.append(left)
        if left:
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        fn, sn = fn >> 1, sn >> 1
    return sides if sn == 0 else None


# -- the proof documents ``lineage verify --event / --from --to`` print (JSON) -------------------


def head_message(seal: dict) -> bytes:
    """The signed bytes of a seal as a proof document (or an anchor line) holds it: check
    ``bytes.fromhex(seal["signature"])`` over these with the Ed25519 public key you trust."""
    return tree_head_message(seal["number"], seal["size"], bytes.fromhex(seal["root"]),
                             bytes.fromhex(seal["previous"]), seal["sealed_at_us"],
                             bytes.fromhex(seal["digests_sha256"]))


def check_inclusion(document: dict) -> bool:
    """Whether an inclusion proof document holds: the event's canonical bytes hash to the
    leaf, and the path leads from that leaf at ``leaf_index`` to the sealed root. Check the
    seal's signature too (``head_message``)."""
    try:
        seal = document["seal"]
        leaf = bytes.fromhex(document["leaf_hash"])
        return (leaf_hash(bytes.fromhex(document["event"]["canonical"])) == leaf
                and document["tree_size"] == seal["size"] and document["root"] == seal["root"]
                and verify_inclusion(document["leaf_index"], seal["size"], leaf,
                                     [bytes.fromhex(p) for p in document["proof"]],
                                     bytes.fromhex(seal["root"])))
    except (KeyError, TypeError, ValueError):
        return False


def check_consistency(document: dict) -> bool:
    """Whether a consistency proof document holds: the second seal's tree extends the first's.
    Check both seals' signatures too (``head_message``)."""
    try:
        first, second = document["first"], document["second"]
        return verify_consistency(first["size"], second["size"], bytes.fromhex(first["root"]),
                                  bytes.fromhex(second["root"]),
                                  [bytes.fromhex(p) for p in document["proof"]])
    except (KeyError, TypeError, ValueError):
        return False
