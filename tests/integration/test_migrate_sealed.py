"""A sealed store survives ``lineage migrate`` (issue 14), on SQLite and PostgreSQL.

The legacy store of ``test_migrate`` (steps one to a row, with every optional field, NaN and
infinities, ints and floats, caller-chosen ids, actor changes), sealed twice, the second seal
falling inside what would otherwise be one block: after the migration every seal still
verifies (steps are leaves by what they say, and a migrated block is a leaf per step), the
sealer carries on from its last seal, a step in a migrated block has a proof of its own, and
changing a migrated block is still found, at the step it changed.
"""

from __future__ import annotations

from datetime import timedelta
from itertools import pairwise
from pathlib import Path

import pytest

import lineage
from lineage.adapters.signing import generate_key
from lineage.application.damage import MODIFIED
from lineage.application.log_scan import scan
from lineage.application.proofs import inclusion
from lineage.application.verification import VerifyReport
from lineage.bootstrap_proof import open_sealer, open_verifier
from lineage.codec.step_block import STEPS_TOPIC
from lineage.codec.step_decode import decode_block
from lineage.codec.steps import STEP_TOPIC
from lineage.errors import ProofError
from lineage.proof.canonical import is_migrated
from lineage.proof.verifier import check_inclusion
from tests.integration.test_migrate import T0, legacy_scenario, migrate
from tests.legacy_steps import LegacySteps, Step
from tests.tamper import Tamper


def test_seals_verify_after_migrate_and_damage_is_still_found(durable_url: str,
                                                              tmp_path: Path) -> None:
    key = tmp_path / "seal.pem"
    public = generate_key(key)
    with lineage.Tracker(durable_url, export_otlp=False) as tracker:
        made = legacy_scenario(tracker, tmp_path)
        d = made["runs"][3]
        legacy, at = LegacySteps(tracker), T0 + timedelta(seconds=8)
        legacy.append([Step(d, n, {"loss": 0.5}) for n in range(7, 12)], at)
        tracker.seal(key=key)
        legacy.append([Step(d, n, {"loss": 0.25}) for n in range(12, 20)], at)  # same origin
        second = tracker.seal(key=key)
        before = tracker.verify(public_key=public)
        assert before.ok and before.sealed == second.size

    done, _, _ = migrate(durable_url, vacuum=False)
    assert done.steps > 1000 and done.rows_left == 0

    tamper = Tamper(durable_url)
    try:
        rows = tamper.rows()
        assert STEP_TOPIC not in {row.topic for row in rows}
        blocks = [row for row in rows if row.topic == STEPS_TOPIC and is_migrated(bytes(row.state))]
        assert len(blocks) == done.blocks
        with lineage.Tracker(durable_url, export_otlp=False) as tracker:
            after = tracker.verify(public_key=public)
            assert after.ok, after.problems
            assert (after.rows, after.seals, after.sealed) == (before.rows, 2, before.sealed)
            d_steps = [block for block in blocks if decode_block(bytes(block.state)).run_id == d]
            # the seal split d's steps 7-19: two blocks, the first ending at the seal
            assert [decode_block(bytes(b.state)).steps for b in d_steps][-2:] == [
                list(range(7, 12)), list(range(12, 20))]

            # a step of a migrated block has its own leaf and proof
            step = tracker.steps(d)[-1]
            proof = inclusion(open_verifier(tracker.store, public_key=public), str(step.event_id))
            assert check_inclusion(proof) and proof["step"]["proven"] == "step"
            assert proof["leaf_index"] == before.sealed - 1  # seal 2 ends with d's last step
            assert proof["event"]["topic"] == "lineage.proof:Step"

            # the sealer carries on after the migration
            run = tracker.run_handle(d)
            run.log_step(20, {"loss": 0.01})
            run.flush()
            third = tracker.seal(key=key)
            assert third.number == 3
            assert tracker.verify(public_key=public).ok

            first_leaf = list(scan(tracker.store, set()).positions).index(blocks[0].id)

        # a changed value in a migrated block is found at that step
        target = blocks[0]
        block = decode_block(bytes(target.state))
        state = bytes(target.state)
        value = block.column("loss").values[2]  # type: ignore[union-attr]
        packed = _float_bytes(value)
        assert state.count(packed) >= 1
        tamper.set_state(target.id, state.replace(packed, _float_bytes(value + 1.0), 1))
        with lineage.Tracker(durable_url, export_otlp=False) as tracker:
            report = tracker.verify(public_key=public)
        first = report.problems[0]
        assert (first.kind, first.position, first.leaf) == (MODIFIED, target.id, first_leaf + 2)
    finally:
        tamper.close()


def _float_bytes(value: float) -> bytes:
    import struct

    return struct.pack("<d", value)


def test_seals_keep_their_leaf_limit_over_migrated_blocks(tmp_path: Path) -> None:
    """Sealing a migrated store (a leaf per step) with a limit of 25 leaves a seal: a seal
    ends at a row, before the row that would pass the limit; a block of more steps than the
    limit is sealed alone. The sealer reads the last seal once, then follows its own. ``@N``
    of a migrated block names no one leaf: the error says to name a step."""
    url, key = str(tmp_path / "lineage.db"), tmp_path / "seal.pem"
    public = generate_key(key)
    with lineage.Tracker(url, export_otlp=False) as tracker:
        legacy_scenario(tracker, tmp_path)
    migrate(url, vacuum=False)
    with lineage.Tracker(url, export_otlp=False) as tracker:
        store, reads = tracker.store, []
        read_stream = store.read_stream
        store.read_stream = lambda *args, **kwargs: reads.append(args) or read_stream(*args, **kwargs)
        sealer = open_sealer(store, key=str(key))
        sealer.max_leaves = 25
        assert sealer.seal_if_due() is not None
        assert len(reads) == 1  # the last seal, read once for many seals
        verifier = open_verifier(store, public_key=public)
        assert verifier.verify().ok
        positions = list(scan(store, set()).positions)
        seals = verifier.seals(VerifyReport())
        sizes = [0, *[seal.head.size for seal in seals]]
        alone = 0
        for start, end in pairwise(sizes):
            rows = len(set(positions[start:end]))
            assert end - start <= 25 or rows == 1, (start, end, rows)
            alone += end - start > 25
        assert alone >= 1 and len(seals) > alone + 3

        tamper = Tamper(url)
        blocks = [row for row in tamper.rows() if row.topic == STEPS_TOPIC
                  and is_migrated(bytes(row.state)) and decode_block(bytes(row.state)).count > 1]
        tamper.close()
        first_step = decode_block(bytes(blocks[0].state)).decoded(0).event_id
        with pytest.raises(ProofError, match=f"prove one step by its event id.*{first_step}"):
            inclusion(verifier, f"@{blocks[0].id}")
