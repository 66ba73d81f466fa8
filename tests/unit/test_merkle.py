"""The Merkle tree and its proofs (lineage.proof): RFC 6962 by value, then by property."""

from __future__ import annotations

import hashlib

from hypothesis import given, settings
from hypothesis import strategies as st

from lineage.proof.merkle import Frontier, consistency_proof, inclusion_proof, root
from lineage.proof.verifier import (
    EMPTY_ROOT,
    canonical_event,
    leaf_hash,
    node_hash,
    verify_consistency,
    verify_inclusion,
)


def _mth(leaves: list[bytes]) -> bytes:
    """RFC 6962's definition, recursively, as the reference."""
    if not leaves:
        return EMPTY_ROOT
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return node_hash(_mth(leaves[:k]), _mth(leaves[k:]))


def _leaves(n: int, salt: bytes = b"") -> list[bytes]:
    return [leaf_hash(salt + i.to_bytes(4, "big")) for i in range(n)]


def test_domain_separation_and_known_values() -> None:
    assert leaf_hash(b"") == hashlib.sha256(b"\x00").digest()
    assert node_hash(b"a" * 32, b"b" * 32) == hashlib.sha256(b"\x01" + b"a" * 32 + b"b" * 32).digest()
    # a two-leaf tree's root is not the leaf hash of the two leaf hashes concatenated
    a, b = leaf_hash(b"a"), leaf_hash(b"b")
    assert root([a, b]) != leaf_hash(a + b)
    assert root([]) == EMPTY_ROOT == hashlib.sha256(b"").digest()


def test_rfc6962_test_vector() -> None:
    # The empty-leaf tree and the 8-leaf tree of the Certificate Transparency test data
    # (certificate-transparency-go merkle tests): leaves "", 00, 10, 2021, 3031, 40414243, ...
    inputs = [b"", b"\x00", b"\x10", b"\x20\x21", b"\x30\x31", b"\x40\x41\x42\x43",
              b"\x50\x51\x52\x53\x54\x55\x56\x57",
              b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f"]
    leaves = [leaf_hash(data) for data in inputs]
    assert root(leaves[:1]).hex() == "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
    assert root(leaves).hex() == "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"


def test_canonical_event_is_length_prefixed() -> None:
    one = canonical_event("ab", 1, "t:x", b"{}")
    assert one == (b"\x00\x00\x00\x02ab" + (1).to_bytes(8, "big") + b"\x00\x00\x00\x03t:x"
                   + b"\x00\x00\x00\x02{}")
    # moving a byte from the topic to the state changes the encoding
    assert canonical_event("ab", 1, "t:", b"x{}") != one


def test_frontier_matches_the_definition_and_round_trips() -> None:
    leaves = _leaves(70)
    frontier = Frontier()
    for size, leaf in enumerate(leaves, start=1):
        frontier.append(leaf)
        assert frontier.root() == _mth(leaves[:size])
        again = Frontier(frontier.size, frontier.nodes)
        assert again.root() == frontier.root()


def test_frontier_extends_in_bulk_as_it_appends_one_by_one() -> None:
    leaves = _leaves(300)
    for first, second in [(0, 300), (1, 299), (3, 64), (64, 100), (37, 200), (255, 45)]:
        bulk, single = Frontier(), Frontier()
        bulk.extend(leaves[:first])
        bulk.extend(iter(leaves[first:first + second]))
        for leaf in leaves[:first + second]:
            single.append(leaf)
        assert (bulk.size, bulk.nodes) == (single.size, single.nodes)
        assert bulk.root() == _mth(leaves[:first + second])


def test_frontier_refuses_nodes_that_do_not_fit_its_size() -> None:
    import pytest

    with pytest.raises(ValueError, match="a frontier of 3 leaves has 2 nodes"):
        Frontier(3, [b"x" * 32])


sizes = st.integers(min_value=1, max_value=70)


@settings(max_examples=150, deadline=None)
@given(sizes, st.data())
def test_inclusion_proofs_verify_and_altered_ones_do_not(n: int, data: st.DataObject) -> None:
    leaves = _leaves(n)
    index = data.draw(st.integers(0, n - 1))
    proof = inclusion_proof(leaves, index)
    top = root(leaves)
    assert verify_inclusion(index, n, leaves[index], proof, top)
    # another leaf, another index, another size, another root, a changed path: all refused
    other = data.draw(st.integers(0, n - 1).filter(lambda i: i != index)) if n > 1 else None
    if other is not None:
        assert not verify_inclusion(index, n, leaves[other], proof, top)
        assert not verify_inclusion(other, n, leaves[index], proof, top)
    # (a wrong size alone can pass the path: the signed head binds size and root together)
    assert not verify_inclusion(index, n + 1, leaves[index], proof, root(_leaves(n + 1)))
    assert not verify_inclusion(index, n, leaves[index], proof, leaf_hash(top))
    if proof:
        at = data.draw(st.integers(0, len(proof) - 1))
        bent = [*proof[:at], leaf_hash(proof[at]), *proof[at + 1:]]
        assert not verify_inclusion(index, n, leaves[index], bent, top)
        assert not verify_inclusion(index, n, leaves[index], proof[:-1], top)
    # a tree with one leaf altered has another root: the old proof fails against it
    altered = [*leaves]
    altered[index] = leaf_hash(b"tampered")
    assert not verify_inclusion(index, n, leaves[index], proof, root(altered))


@settings(max_examples=150, deadline=None)
@given(sizes, st.data())
def test_consistency_proofs_verify_and_altered_ones_do_not(n: int, data: st.DataObject) -> None:
    leaves = _leaves(n)
    m = data.draw(st.integers(1, n))
    proof = consistency_proof(leaves, m)
    first, second = root(leaves[:m]), root(leaves)
    assert verify_consistency(m, n, first, second, proof)
    # a history whose prefix was changed (one leaf of the first m) is not consistent
    at = data.draw(st.integers(0, m - 1))
    rewritten = [*leaves]
    rewritten[at] = leaf_hash(b"rewritten")
    assert not verify_consistency(m, n, first, root(rewritten), consistency_proof(rewritten, m))
    assert not verify_consistency(m, n, root(rewritten[:m]), second, proof)
    if proof:
        k = data.draw(st.integers(0, len(proof) - 1))
        bent = [*proof[:k], leaf_hash(proof[k]), *proof[k + 1:]]
        assert not verify_consistency(m, n, first, second, bent)
    if m < n:  # a longer log with the same prefix has another root than the one proved
        assert not verify_consistency(m, n + 1, first, root(_leaves(n + 1)), proof)


def test_consistency_edges() -> None:
    leaves = _leaves(5)
    assert verify_consistency(0, 5, EMPTY_ROOT, root(leaves), [])
    assert verify_consistency(5, 5, root(leaves), root(leaves), [])
    assert not verify_consistency(6, 5, root(leaves), root(leaves), [])
    assert not verify_inclusion(5, 5, leaves[0], [], root(leaves))
