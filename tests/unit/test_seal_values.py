"""Seals, anchors, keys, settings and damage classification as plain values (issue 14)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from lineage.adapters.anchors import read_anchors
from lineage.adapters.signing import Ed25519Signer, check_signature, generate_key, load_public_key
from lineage.application.damage import DELETED, INSERTED, MODIFIED, REORDERED, TRUNCATED, classify
from lineage.config.sealing import SealSettings
from lineage.errors import ConfigurationError
from lineage.proof.merkle import consistency_proof, inclusion_proof, root
from lineage.proof.seals import ZERO, TreeHead
from lineage.proof.verifier import (
    canonical_event,
    check_consistency,
    check_inclusion,
    head_message,
    leaf_hash,
)


@pytest.fixture
def signer(tmp_path: Path) -> Ed25519Signer:
    generate_key(tmp_path / "k.pem")
    return Ed25519Signer.from_file(tmp_path / "k.pem")


def _head(signer: Ed25519Signer, number: int = 1, size: int = 4) -> TreeHead:
    unsigned = TreeHead(number, size, b"r" * 32, ZERO, 1_700_000_000_000_000,
                        hashlib.sha256(b"digests").digest(), signer.public_key, b"")
    return TreeHead(**{**unsigned.__dict__, "signature": signer.sign(unsigned.message())})


def test_a_head_survives_its_anchor_line_and_the_signature_checks(signer: Ed25519Signer) -> None:
    head = _head(signer)
    line = head.anchor_line()
    assert TreeHead.of_anchor(line) == head
    assert check_signature(head.public_key, head.message(), head.signature)
    assert head_message(json.loads(line)) == head.message()  # what a third party rebuilds
    moved = TreeHead(**{**head.__dict__, "size": 5})
    assert not check_signature(head.public_key, moved.message(), head.signature)
    assert not check_signature(b"short", head.message(), head.signature)


def test_bad_anchor_lines_name_the_file_and_line(tmp_path: Path, signer: Ed25519Signer) -> None:
    path = tmp_path / "anchors.jsonl"
    path.write_text(_head(signer).anchor_line() + "\n\n{\"number\": 2}\n")
    with pytest.raises(ConfigurationError, match=r"anchors.jsonl line 3: not an anchor line"):
        read_anchors(path)
    with pytest.raises(ConfigurationError, match="cannot read"):
        read_anchors(tmp_path / "absent")


def test_keys_from_hex_public_file_or_private_file(tmp_path: Path, signer: Ed25519Signer) -> None:
    from cryptography.hazmat.primitives import serialization

    path = tmp_path / "k.pem"
    assert load_public_key(signer.public_key.hex()) == signer.public_key
    assert load_public_key(str(path)) == signer.public_key
    public_file = tmp_path / "pub.pem"
    public_file.write_bytes(serialization.load_pem_private_key(path.read_bytes(), None)
                            .public_key().public_bytes(serialization.Encoding.PEM,
                                                       serialization.PublicFormat.SubjectPublicKeyInfo))
    assert load_public_key(str(public_file)) == signer.public_key
    with pytest.raises(ConfigurationError, match="neither 64 hex digits nor a readable key file"):
        load_public_key("nope")
    with pytest.raises(ConfigurationError, match="cannot write the key"):
        generate_key(path)  # never overwrites a key
    assert path.stat().st_mode & 0o777 == 0o600
    (tmp_path / "junk.pem").write_text("junk")
    with pytest.raises(ConfigurationError, match="not an unencrypted PEM private key"):
        Ed25519Signer.from_file(tmp_path / "junk.pem")


def test_seal_settings_precedence() -> None:
    env = {"LINEAGE_SEAL_EVERY_EVENTS": "50", "LINEAGE_SEAL_KEY": "/env.pem"}
    assert SealSettings.load(env).every_events == 50
    assert SealSettings.load(env, every_events=7).every_events == 7
    assert SealSettings.load({}).every_events == 10_000 and SealSettings.load({}).key is None
    assert SealSettings.load(env).key == "/env.pem"
    with pytest.raises(ConfigurationError, match="LINEAGE_SEAL_EVERY_S='0' is invalid"):
        SealSettings.load({"LINEAGE_SEAL_EVERY_S": "0"})


def _documents() -> tuple[dict, dict]:
    data = [canonical_event(f"{i:032x}", i, "t:x", b"{}") for i in range(6)]
    leaves = [leaf_hash(d) for d in data]
    seal = {"number": 2, "size": 6, "root": root(leaves).hex()}
    inclusion = {"leaf_index": 3, "tree_size": 6, "root": seal["root"],
                 "leaf_hash": leaves[3].hex(), "event": {"canonical": data[3].hex()},
                 "proof": [p.hex() for p in inclusion_proof(leaves, 3)], "seal": seal}
    consistency = {"first": {"size": 4, "root": root(leaves[:4]).hex()}, "second": seal,
                   "proof": [p.hex() for p in consistency_proof(leaves, 4)]}
    return inclusion, consistency


def test_proof_documents_check_and_altered_ones_do_not() -> None:
    inclusion, consistency = _documents()
    assert check_inclusion(inclusion) and check_consistency(consistency)
    other = canonical_event(f"{3:032x}", 3, "t:x", b'{"x":1}').hex()
    assert not check_inclusion({**inclusion, "event": {"canonical": other}})
    assert not check_inclusion({**inclusion, "leaf_index": 2})
    assert not check_inclusion({**inclusion, "tree_size": 5})
    assert not check_inclusion({**inclusion, "proof": "not hex"})
    assert not check_inclusion({})
    assert not check_consistency({**consistency, "first": {"size": 3, "root": consistency["first"]["root"]}})
    assert not check_consistency({**consistency, "proof": consistency["proof"][:-1]})


def _digests(*names: str) -> bytearray:
    return bytearray(b"".join(hashlib.sha256(n.encode()).digest()[:8] for n in names))


@pytest.mark.parametrize(("actual", "kind", "index"), [
    ("a b X d e f", MODIFIED, 2),
    ("a b d e f g", DELETED, 2),
    ("a b d c e f", REORDERED, 2),
    ("a b X c d e", INSERTED, 2),
    ("a b c", TRUNCATED, 3),
])
def test_classify_names_the_damage(actual: str, kind: str, index: int) -> None:
    recorded = _digests(*["a", "b", "c", "d", "e", "f"])
    rows = actual.split()
    positions = [10 + 2 * i for i in range(len(rows))]  # ids with gaps
    damage = classify(_digests(*rows), recorded, positions, 0, 6, 1)
    assert (damage.kind, damage.leaf) == (kind, index)
    assert damage.position == positions[min(index, len(rows) - 1)]


def test_anchors_locate_damage_to_the_row_or_to_the_bracket_they_allow() -> None:
    from types import SimpleNamespace

    from lineage.application.anchor_check import anchor_damage
    from lineage.application.damage import REWRITTEN

    leaves = [leaf_hash(b"row %d" % i) for i in range(10)]
    digests = b"".join(leaf[:8] for leaf in leaves)
    heads = [TreeHead(1, 4, root(leaves[:4]), ZERO, 1, hashlib.sha256(digests[:32]).digest(), b"", b""),
             TreeHead(2, 10, root(leaves), ZERO, 2, hashlib.sha256(digests[32:]).digest(), b"", b"")]
    positions = [100 + 2 * i for i in range(10)]  # ids with gaps
    stored = [SimpleNamespace(head=heads[0], digests=digests[:32]),
              SimpleNamespace(head=heads[1], digests=digests[32:])]
    assert anchor_damage(heads, stored, bytearray(digests), positions,
                         {4: heads[0].root, 10: heads[1].root}) is None

    changed = [*leaves[:6], leaf_hash(b"changed"), *leaves[7:]]
    now = bytearray(b"".join(leaf[:8] for leaf in changed))
    roots = {4: root(changed[:4]), 10: root(changed)}
    # a stored seal whose digests its anchor vouches for: the row itself, and its kind
    found = anchor_damage(heads, stored, now, positions, roots)
    assert found is not None
    assert (found.kind, found.leaf, found.position, found.seal) == (MODIFIED, 6, 112, 2)
    # the seals were replaced (their digests are not what the anchors signed): the bracket
    forged = [SimpleNamespace(head=heads[1], digests=bytes(now[32:]))]
    found = anchor_damage(heads, forged, now, positions, roots)
    assert found is not None
    assert (found.kind, found.leaf, found.position, found.seal) == (REWRITTEN, 4, 108, 2)
    assert "the first 4 rows are as anchored; rows 4-9 (positions 108-118)" in found.detail
