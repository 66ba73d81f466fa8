"""The tamper suite (issue 14): every kind of damage someone with write access to the database
can do to a sealed log is found by ``Tracker.verify``, with its kind and position, on SQLite
and PostgreSQL; an untouched log (with PostgreSQL's gaps in notification ids) verifies clean."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from lineage.adapters.anchors import FileAnchor
from lineage.adapters.signing import Ed25519Signer, generate_key
from lineage.application.damage import (
    BAD_SEAL,
    DELETED,
    INSERTED,
    MODIFIED,
    REORDERED,
    REWRITTEN,
    ROLLED_BACK,
    TRUNCATED,
)
from lineage.application.sealing import SEAL_TOPIC
from lineage.bootstrap_proof import open_sealer
from tests.tamper import Tamper


@dataclass
class History:
    url: str
    key: Path
    public: bytes
    anchor: Path
    rows: list[Any]  # (id, topic, state) before any tampering
    seals: list[int]  # ids of the seal rows
    tamper: Tamper

    def run_rows(self, index: int) -> list[int]:
        """The ids of the rows between seal ``index - 1`` and seal ``index`` (run ``index``)."""
        low = self.seals[index - 2] if index > 1 else 0
        return [row.id for row in self.rows if low < row.id < self.seals[index - 1]]

    def verify(self, make_tracker: Callable[..., Any], **kwargs: Any) -> Any:
        tracker = make_tracker(self.url, export_otlp=False)
        kwargs.setdefault("public_key", self.public)
        return tracker.verify(**kwargs)


def build(url: str, tmp_path: Path, make_tracker: Callable[..., Any], runs: int = 3) -> History:
    """Runs a, b, c (1,500 steps each: two step blocks), each followed by a seal published to
    an anchor file; PostgreSQL ids get gaps between them."""
    key, anchor = tmp_path / "seal.pem", tmp_path / "anchors.jsonl"
    public = generate_key(key)
    tamper = Tamper(url)
    tracker = make_tracker(url, export_otlp=False)
    sealer = open_sealer(tracker.store, key=str(key), anchors=[FileAnchor(anchor)])
    for name in "abc"[:runs]:
        with tracker.start_run(f"run-{name}") as run:
            for step in range(1500):
                run.log_step(step, {"loss": 1.0 / (step + 1)})
        tracker.flush()
        tamper.gap()
        assert sealer.seal() is not None
        tracker.runs()  # the read models follow: their positions are evidence too
    rows = tamper.rows()
    return History(url, key, public, anchor, rows,
                   [row.id for row in rows if row.topic == SEAL_TOPIC], tamper)


@pytest.fixture
def history(durable_url: str, tmp_path: Path, make_tracker: Callable[..., Any]) -> Any:
    made = build(durable_url, tmp_path, make_tracker)
    yield made
    made.tamper.close()


def _leaf(history: History, row: int) -> int:
    return [r.id for r in history.rows].index(row)


def test_an_untouched_log_verifies_clean(history: History, make_tracker: Any) -> None:
    report = history.verify(make_tracker, anchors=[history.anchor])
    assert report.ok, report.problems
    assert (report.seals, report.rows, report.unsealed, report.key_trusted) == (
        3, len(history.rows), 1, True)  # the last seal waits for the next one


def test_a_modified_payload_is_found_at_its_position(history: History, make_tracker: Any) -> None:
    started = history.run_rows(2)[0]
    history.tamper.modify(started, b"run-b", b"run-x")
    first = history.verify(make_tracker).problems[0]
    assert (first.kind, first.position, first.leaf, first.seal) == (
        MODIFIED, started, _leaf(history, started), 2)


def test_a_deleted_event_is_found(history: History, make_tracker: Any) -> None:
    block = history.run_rows(2)[1]
    history.tamper.delete(block)
    first = history.verify(make_tracker).problems[0]
    after = history.run_rows(2)[2]
    assert (first.kind, first.leaf, first.position) == (DELETED, _leaf(history, block), after)


def test_two_reordered_events_are_found(history: History, make_tracker: Any) -> None:
    one, two = history.run_rows(2)[1:3]
    history.tamper.swap(one, two)
    first = history.verify(make_tracker).problems[0]
    assert (first.kind, first.position, first.leaf) == (REORDERED, one, _leaf(history, one))


def test_an_inserted_event_is_found(history: History, make_tracker: Any) -> None:
    block = history.run_rows(2)[1]
    new = history.tamper.insert_copy(block, after=block)
    first = history.verify(make_tracker).problems[0]
    assert (first.kind, first.position, first.leaf) == (INSERTED, new, _leaf(history, block) + 1)


def test_a_truncated_tail_is_found_by_the_followers_positions(history: History,
                                                              make_tracker: Any) -> None:
    cut = history.run_rows(3)[1]
    history.tamper.truncate(cut)
    problems = history.verify(make_tracker).problems
    assert [p.kind for p in problems] == [TRUNCATED]
    assert problems[0].leaf == _leaf(history, cut) and "had read up to position" in problems[0].detail


def test_a_truncated_tail_is_found_by_an_anchor_when_positions_were_reset_too(
        history: History, make_tracker: Any) -> None:
    cut = history.run_rows(3)[1]
    history.tamper.truncate(cut)
    history.tamper.reset_positions(cut - 1)
    assert history.verify(make_tracker).ok  # the store alone holds an older, valid log
    first = history.verify(make_tracker, anchors=[history.anchor]).problems[0]
    assert (first.kind, first.seal, first.leaf) == (ROLLED_BACK, 3, _leaf(history, cut))


def rechain_with_another_key(history: History, make_tracker: Any, folder: Path) -> int:
    """The attacker changes run b, removes every seal and seals again with a key of their own;
    returns the position of the row changed."""
    started = history.run_rows(2)[0]
    history.tamper.modify(started, b"run-b", b"run-x")
    for seal in history.seals:
        history.tamper.delete(seal)
    forged = folder / "forged.pem"
    generate_key(forged)
    tracker = make_tracker(history.url, export_otlp=False)
    assert open_sealer(tracker.store, key=str(forged)).seal() is not None
    return started


def test_a_history_rechained_without_the_key_is_found(history: History, make_tracker: Any,
                                                      tmp_path: Path) -> None:
    rechain_with_another_key(history, make_tracker, tmp_path)
    assert history.verify(make_tracker, public_key=None).ok  # self-consistent, untrusted key
    first = history.verify(make_tracker).problems[0]
    assert first.kind == BAD_SEAL and "another key" in first.detail and first.seal == 1


def test_anchors_say_where_a_rechained_history_parts_from_them(history: History,
                                                               make_tracker: Any,
                                                               tmp_path: Path) -> None:
    """No trusted key, the seals replaced: the anchors alone bracket the first bad row."""
    started = rechain_with_another_key(history, make_tracker, tmp_path)
    first = history.verify(make_tracker, public_key=None, anchors=[history.anchor]).problems[0]
    # anchor 1 still matches: the first bad row is the first after it (seal 1's, now gone)
    assert (first.kind, first.seal, first.leaf, first.position) == (
        REWRITTEN, 2, _leaf(history, history.seals[0]), started)
    assert "the first bad row is among them" in first.detail


def test_a_replaced_seal_is_found(history: History, make_tracker: Any) -> None:
    # seal 2's row now holds seal 1 (a valid signature, in the wrong place)
    first_seal = next(r.state for r in history.rows if r.id == history.seals[0])
    history.tamper.set_state(history.seals[1], bytes(first_seal))
    problems = history.verify(make_tracker).problems
    assert problems[0].position == history.seals[1]
    assert {p.kind for p in problems if p.position == history.seals[1]} >= {BAD_SEAL}


def test_a_seal_signed_by_nobody_is_found(history: History, make_tracker: Any) -> None:
    last = history.seals[-1]  # not covered by a later seal: only its signature protects it
    state = bytes(next(r.state for r in history.rows if r.id == last))
    signature = state.split(b'"signature":"')[1][:128]
    history.tamper.set_state(last, state.replace(signature, b"00" * 64))
    first = history.verify(make_tracker).problems[0]
    assert (first.kind, first.position, first.seal) == (BAD_SEAL, last, 3)
    assert "bad signature" in first.detail


def test_the_trusted_key_may_be_given_as_the_key_file(history: History, make_tracker: Any) -> None:
    assert history.verify(make_tracker, public_key=str(history.key)).ok
    assert Ed25519Signer.from_file(history.key).public_key == history.public
