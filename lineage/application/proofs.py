"""Proofs from a store: an event's inclusion under a seal, and one seal's consistency with a
later one. Both are JSON documents that ``lineage.proof.verifier.check_inclusion`` /
``check_consistency`` check without a database (and so can anyone who reads that module).

Only good seals are used (checked as ``lineage verify`` checks them); a proof is checked before
it is returned, so a store whose rows no longer match its seals gives an error, not a proof.
"""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID

from lineage.application.verification import Verifier, VerifyReport, scan
from lineage.errors import ProofError, ValidationError
from lineage.proof.canonical import encode_row, stream_text
from lineage.proof.merkle import consistency_proof, inclusion_proof
from lineage.proof.verifier import check_consistency, check_inclusion


def inclusion(verifier: Verifier, target: str) -> dict[str, Any]:
    """The proof that the row holding ``target`` (a position ``@N`` or ``N``, or an event id
    stored in the row: any event but a step inside a block, whose block id works) is in the
    first good seal that covers it."""
    position, needle = _target(target)
    seals = [seal for seal in verifier.seals(VerifyReport()) if seal.good]
    found: list[tuple[int, Any]] = []

    def visit(index: int, row: Any) -> None:
        if not found and (row.id == position or (needle and _holds(row.state, needle))):
            found.append((index, row))

    log = scan(verifier.store, set(), keep_leaves=True, visit=visit)
    if not found:
        raise ProofError(f"no stored event {target}")
    index, row = found[0]
    covering = [seal for seal in seals if seal.head.size > index]
    if not covering:
        raise ProofError(f"the event {target} (position {row.id}) is not sealed yet")
    head = covering[0].head
    leaves = log.leaves or []
    document = {
        "type": "inclusion", "leaf_index": index, "tree_size": head.size, "root": head.root.hex(),
        "leaf_hash": leaves[index].hex(),
        "event": {"position": row.id, "stream": stream_text(row.originator_id),
                  "version": row.originator_version, "topic": row.topic,
                  "canonical": encode_row(row).hex()},
        "proof": [p.hex() for p in inclusion_proof(leaves[:head.size], index)],
        "seal": json.loads(head.anchor_line())}
    if not check_inclusion(document):
        raise ProofError(f"the stored rows no longer match seal {head.number}: run lineage verify")
    return document


def consistency(verifier: Verifier, first: int, second: int) -> dict[str, Any]:
    """The proof that seal ``second``'s tree extends seal ``first``'s."""
    if not 1 <= first <= second:
        raise ValidationError("--from", f"must be a seal number from 1 to --to ({second}), got {first}",
                              first)
    seals = {seal.head.number: seal for seal in verifier.seals(VerifyReport()) if seal.good}
    missing = [number for number in (first, second) if number not in seals]
    if missing:
        raise ProofError(f"no good seal {missing[0]} in the store (lineage verify says why)")
    a, b = seals[first].head, seals[second].head
    log = scan(verifier.store, {a.size, b.size}, keep_leaves=True)
    leaves = (log.leaves or [])[:b.size]
    document = {"type": "consistency", "first": json.loads(a.anchor_line()),
                "second": json.loads(b.anchor_line()),
                "proof": [p.hex() for p in consistency_proof(leaves, a.size)]}
    if len(leaves) < b.size or not check_consistency(document) or log.roots.get(b.size) != b.root:
        raise ProofError(f"the stored rows no longer match seal {second}: run lineage verify")
    return document


def _target(target: str) -> tuple[int | None, bytes | None]:
    text = target.strip()
    digits = text[1:] if text.startswith("@") else text
    if digits.isdigit():
        return int(digits), None
    try:
        return None, UUID(text).hex.encode()
    except ValueError:
        raise ValidationError("--event", f"must be a log position (@N) or an event id, got {target!r}",
                              target) from None


def _holds(state: Any, needle: bytes) -> bool:
    data = state if isinstance(state, bytes) else bytes(state or b"")
    return needle in data
