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

from lineage.application.log_scan import scan
from lineage.application.verification import Verifier, VerifyReport
from lineage.codec.step_block import STEPS_TOPIC
from lineage.codec.step_decode import StepBlock, decode_block
from lineage.errors import ProofError, ValidationError
from lineage.proof.canonical import Row, is_migrated, state_bytes, stream_text
from lineage.proof.merkle import consistency_proof, inclusion_proof
from lineage.proof.verifier import check_consistency, check_inclusion


def inclusion(verifier: Verifier, target: str) -> dict[str, Any]:
    """The proof that the row holding ``target`` (a position ``@N`` or ``N``, or the id of an
    event stored in the row) is in the first good seal that covers it. A step stored in a
    block: its own leaf when ``lineage migrate`` wrote the block (a leaf per step), else the
    block's leaf, with ``step`` saying where in the block it is (see ``_step_note``)."""
    position, wanted = _target(target)
    seals = [seal for seal in verifier.seals(VerifyReport()) if seal.good]
    hasher = verifier.hasher()
    found: list[tuple[int, Row, int | None]] = []

    def visit(index: int, row: Row) -> None:
        if not found:
            hit, step = _match(row, position, wanted)
            if hit:
                found.append((index, row, step))

    log = scan(verifier.store, set(), keep_leaves=True, visit=visit, hasher=hasher)
    if not found:
        raise ProofError(f"no stored event {target}")
    index, row, step = found[0]
    data = hasher.canonical(row)
    if step is None and len(data) != 1:
        raise ProofError(_many_leaves(target, row, len(data)))
    # a block lineage migrate wrote is a leaf per step: the step's own
    own = step is not None and is_migrated(row[4]) and step < len(data)
    if own:
        index += step or 0
    covering = [seal for seal in seals if seal.head.size > index]
    if not covering:
        raise ProofError(f"the event {target} (position {row[0]}) is not sealed yet")
    head = covering[0].head
    leaves = log.leaves or []
    canonical = data[step or 0] if own else data[0]
    document = {
        "type": "inclusion", "leaf_index": index, "tree_size": head.size, "root": head.root.hex(),
        "leaf_hash": leaves[index].hex(),
        "event": {"position": row[0], "stream": stream_text(row[1]),
                  "version": _version(canonical), "topic": _topic(canonical),
                  "canonical": canonical.hex()},
        "proof": [p.hex() for p in inclusion_proof(leaves[:head.size], index)],
        "seal": json.loads(head.anchor_line())}
    if step is not None:
        document["step"] = _step_note(row, step, own)
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
    log = scan(verifier.store, {a.size, b.size}, keep_leaves=True, hasher=verifier.hasher())
    leaves = (log.leaves or [])[:b.size]
    document = {"type": "consistency", "first": json.loads(a.anchor_line()),
                "second": json.loads(b.anchor_line()),
                "proof": [p.hex() for p in consistency_proof(leaves, a.size)]}
    if len(leaves) < b.size or not check_consistency(document) or log.roots.get(b.size) != b.root:
        raise ProofError(f"the stored rows no longer match seal {second}: run lineage verify")
    return document


def _target(target: str) -> tuple[int | None, UUID | None]:
    text = target.strip()
    digits = text[1:] if text.startswith("@") else text
    if digits.isdigit():
        return int(digits), None
    try:
        return None, UUID(text)
    except ValueError:
        raise ValidationError("--event", f"must be a log position (@N) or an event id, got {target!r}",
                              target) from None


def _match(row: Row, position: int | None, wanted: UUID | None) -> tuple[bool, int | None]:
    """Whether ``row`` is the target, and the index of the step in it when the target is a
    step of a block (None: the row itself)."""
    if position is not None:
        return row[0] == position, None
    if wanted is None:
        return False, None
    if row[3] == STEPS_TOPIC:
        try:
            block = decode_block(state_bytes(row[4]))
        except ValueError:
            return False, None
        if block.block_id == wanted.bytes:
            return True, None
        step = step_index(block, wanted)
        return step is not None, step
    return wanted.hex.encode() in state_bytes(row[4]), None


def step_index(block: StepBlock, wanted: UUID) -> int | None:
    """The index of the step whose id is ``wanted`` in ``block`` (None: not in it)."""
    for index, explicit in block.ids.items():
        if explicit == wanted.bytes:
            return index
    high, low = divmod(int.from_bytes(block.block_id, "big"), 1 << 32)
    wanted_high, wanted_low = divmod(wanted.int, 1 << 32)
    index = (wanted_low - low) & 0xFFFF_FFFF
    if wanted_high == high and index < block.count and index not in block.ids:
        return index
    return None


def _many_leaves(target: str, row: Row, leaves: int) -> str:
    """Why ``target`` (a position) has no one proof: its row is a block ``lineage migrate``
    wrote, a leaf per step."""
    first = decode_block(state_bytes(row[4])).decoded(0).event_id if leaves else None
    return (f"position {row[0]} ({target}) holds a block of {leaves} steps that lineage migrate "
            "wrote, each a leaf of its own: prove one step by its event id"
            + (f" (the first: lineage verify --event {first})" if first else ""))


def _step_note(row: Row, step: int, own: bool) -> dict[str, Any]:
    """What the proof of a step in a block proves. ``own``: the step's own leaf (its
    canonical JSON is in ``event.canonical``). Else the block's leaf: the proof shows the
    block row, and the step is inside that row's state (decode it with
    ``lineage.codec.step_decode.decode_block``, layout in ``lineage.codec.step_block``)."""
    block = decode_block(state_bytes(row[4]))
    decoded = block.decoded(step)
    return {"index_in_block": step, "seq": decoded.seq, "step": decoded.step,
            "event_id": decoded.event_id, "proven": "step" if own else "block",
            "block_steps": block.count}


def _version(canonical: bytes) -> int:
    size = int.from_bytes(canonical[:4], "big")
    return int.from_bytes(canonical[4 + size:12 + size], "big", signed=True)


def _topic(canonical: bytes) -> str:
    size = int.from_bytes(canonical[:4], "big")
    at = 12 + size
    length = int.from_bytes(canonical[at:at + 4], "big")
    return canonical[at + 4:at + 4 + length].decode()
