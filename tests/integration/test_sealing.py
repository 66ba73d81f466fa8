"""The sealer as a worker (issue 14): exactly once under racing sealers, resumable, due by
events or seconds, harmless to the read models and the span builder, on every store; the
canonical encoding gives the same tree when the log is copied to another kind of store."""

from __future__ import annotations

import io
import itertools
import json
import threading
import uuid
from pathlib import Path
from typing import Any

from eventsourcing.persistence import StoredEvent

from lineage.adapters.anchors import OtlpAnchor, StreamAnchor
from lineage.adapters.otlp.encoder import OtlpEncoder
from lineage.adapters.otlp.transport import OtlpJsonWriter
from lineage.adapters.signing import generate_key
from lineage.application.sealing import BackgroundSealer, last_seal
from lineage.bootstrap import open_store
from lineage.bootstrap_exports import open_positions, otlp_runner
from lineage.bootstrap_proof import open_sealer
from lineage.codec.mapper import make_mapper
from lineage.config.otlp import OtlpSettings
from lineage.domain.seals import SEAL_STREAM
from lineage.proof.seals import TreeHead
from lineage.spans.builder import SpanBuilder
from lineage.spans.seal_span import seal_span


def _train(tracker: Any, name: str, steps: int = 1200) -> None:
    with tracker.start_run(name) as run:
        for step in range(steps):
            run.log_step(step, {"loss": 1.0})
    tracker.flush()


def _key(tmp_path: Path) -> tuple[str, bytes]:
    path = tmp_path / f"key-{uuid.uuid4().hex[:6]}.pem"
    return str(path), generate_key(path)


def test_racing_sealers_write_each_seal_once(any_url: str, tmp_path: Path, make_tracker: Any) -> None:
    tracker = make_tracker(any_url, export_otlp=False)
    key, public = _key(tmp_path)
    sealers = [open_sealer(tracker.store, key=key) for _ in range(3)]
    stop = threading.Event()
    errors: list[BaseException] = []

    def seal_forever(sealer: Any) -> None:
        try:
            while not stop.is_set():
                sealer.seal()
        except BaseException as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=seal_forever, args=(s,)) for s in sealers]
    for thread in threads:
        thread.start()
    for index in range(4):
        _train(tracker, f"run-{index}", 600)
    stop.set()
    for thread in threads:
        thread.join(30)
    assert errors == []
    seals = [TreeHead.of_event(make_mapper().to_domain_event(s))
             for s in tracker.store.read_stream(SEAL_STREAM)]
    assert [s.number for s in seals] == list(range(1, len(seals) + 1))
    assert all(a.size < b.size for a, b in itertools.pairwise(seals))
    assert sum(s.sealed for s in sealers) == len(seals) > 1
    assert tracker.verify(public_key=public).ok


def test_a_seal_is_due_by_events_or_seconds_and_never_for_seals_alone(
        sqlite_url: str, tmp_path: Path, make_tracker: Any) -> None:
    tracker = make_tracker(sqlite_url, export_otlp=False)
    key, _ = _key(tmp_path)
    now = [1000.0]
    sealer = open_sealer(tracker.store, key=key, every_events=5, every_s=30.0)
    sealer.clock = lambda: now[0]
    assert not sealer.due()  # nothing stored
    _train(tracker, "a", 10)  # 3 rows: started, one block, finished
    assert sealer.due()  # never sealed: the first seal is due at once
    head = sealer.seal_if_due()
    assert head is not None and head.size == 3
    assert last_seal(tracker.store, tracker.mapper).number == 1
    assert sealer.seal() is None  # only the seal itself waits
    now[0] += 10
    _train(tracker, "b", 10)
    assert not sealer.due()  # 4 rows wait (5 needed), 10 s passed (30 needed)
    now[0] += 21
    assert sealer.due()
    assert sealer.seal_if_due() is not None
    now[0] += 31
    assert sealer.seal_if_due() is None  # time is up, but only the last seal waits
    for index in range(2):
        _train(tracker, f"c{index}", 10)
    now[0] += 0.5
    assert sealer.due()  # 7 rows wait, with no time passed
    assert sealer.seal_if_due() is not None


def test_sealing_resumes_from_the_last_seal(durable_url: str, tmp_path: Path,
                                            make_tracker: Any) -> None:
    tracker = make_tracker(durable_url, export_otlp=False)
    key, public = _key(tmp_path)
    _train(tracker, "a")
    first = open_sealer(tracker.store, key=key).seal()
    _train(tracker, "b")
    again = open_sealer(tracker.store, key=key)  # a new process: nothing but the store
    second = again.seal()
    assert first is not None and second is not None
    assert (second.number, second.previous) == (2, first.hash())
    report = tracker.verify(public_key=public)
    assert report.ok and report.sealed == second.size and report.unsealed == 1


def test_seals_are_events_the_read_models_and_spans_take_in_stride(
        any_url: str, tmp_path: Path, make_tracker: Any) -> None:
    """A seal's audit row says what it seals; the span builder (the background OTLP export)
    turns it into the same ``seal log`` span that ``lineage seal --otlp`` sends."""
    tracker = make_tracker(any_url, export_otlp=False)
    key, public = _key(tmp_path)
    _train(tracker, "a", 10)
    head = tracker.seal(key=key)
    rows = tracker.audit(kind="log.sealed")
    assert len(rows) == 1 and rows[0]["subject_id"] == str(SEAL_STREAM)
    assert rows[0]["summary"] == (f"seal 1: tree of {head.size} rows, root {head.root.hex()[:16]}..., "
                                  f"key {public.hex()[:16]}...")
    assert tracker.views.quarantined() == []
    stored = tracker.store.read_stream(SEAL_STREAM)
    assert SpanBuilder(tracker.store, make_mapper()).build(stored) == [[seal_span(head)]]


def test_a_background_sealer_seals_what_was_written(sqlite_url: str, tmp_path: Path,
                                                    make_tracker: Any) -> None:
    tracker = make_tracker(sqlite_url, export_otlp=False)
    key, public = _key(tmp_path)
    out = io.StringIO()
    background = BackgroundSealer(open_sealer(tracker.store, key=key, every_s=0.05,
                                              anchors=[StreamAnchor(out)]), poll_s=0.02).start()
    _train(tracker, "a", 100)
    background.close()
    heads = [TreeHead.of_anchor(line) for line in out.getvalue().splitlines()]
    assert heads and heads[-1].size == tracker.store.max_position() - 1
    assert tracker.verify(public_key=public, anchors=()).ok and background.failures == 0


def test_an_otlp_anchor_sends_the_seal_as_span_attributes(sqlite_url: str, tmp_path: Path,
                                                          make_tracker: Any) -> None:
    tracker = make_tracker(sqlite_url, export_otlp=False)
    key, _ = _key(tmp_path)
    out = io.StringIO()
    _train(tracker, "a", 10)
    head = open_sealer(tracker.store, key=key,
                       anchors=[OtlpAnchor(OtlpEncoder(), OtlpJsonWriter(out))]).seal()
    assert head is not None
    span = json.loads(out.getvalue())["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    attributes = {a["key"]: a["value"] for a in span["attributes"]}
    assert span["name"] == "seal log"
    assert attributes["lineage.seal.root"] == {"stringValue": head.root.hex()}
    assert TreeHead.of_anchor(attributes["lineage.seal.anchor"]["stringValue"]) == head

    # the background export sends the same span when the seal event passes through it
    exported = io.StringIO()
    positions = open_positions(sqlite_url)
    runner = otlp_runner(tracker.store, positions, OtlpSettings.load(), OtlpJsonWriter(exported),
                         track=False, start=0)
    runner.export_to_head()
    positions.engine.dispose()  # type: ignore[attr-defined]
    sent = [span for line in exported.getvalue().splitlines()
            for span in json.loads(line)["resourceSpans"][0]["scopeSpans"][0]["spans"]]
    assert [each for each in sent if each["name"] == "seal log"] == [span]


def test_a_log_copied_to_postgresql_has_the_same_tree(tmp_path: Path, make_tracker: Any,
                                                      postgres_url: str) -> None:
    source = make_tracker(str(tmp_path / "a.db"), export_otlp=False)
    key, public = _key(tmp_path)
    _train(source, "a")
    source.seal(key=key)
    _train(source, "b")
    head = source.seal(key=key)
    rows = list(source.store.read_log(1, 10_000))
    target = open_store(postgres_url)
    try:  # the rows in the same order; new notification ids, gaps and event-id index rows
        for row in rows:
            target.append([StoredEvent(row.originator_id, row.originator_version, row.topic,
                                       bytes(row.state))], [uuid.uuid4().hex])
    finally:
        target.close()
    copy = make_tracker(postgres_url, export_otlp=False)
    report = copy.verify(public_key=public)
    assert report.ok and head is not None and report.sealed == head.size and report.seals == 2


def test_anchors_from_another_history_or_key_are_reported(tmp_path: Path, make_tracker: Any) -> None:
    from lineage.adapters.anchors import FileAnchor
    from lineage.application.damage import BAD_ANCHOR, REWRITTEN

    key, public = _key(tmp_path)
    other_key, _ = _key(tmp_path)
    ours, theirs = (make_tracker(str(tmp_path / f"{n}.db"), export_otlp=False) for n in "ab")
    _train(ours, "a", 10)
    _train(theirs, "b", 10)  # the same shape of log, other contents
    ours.seal(key=key)
    anchors, forged = tmp_path / "theirs.jsonl", tmp_path / "forged.jsonl"
    open_sealer(theirs.store, key=key, anchors=[FileAnchor(anchors)]).seal()
    _train(theirs, "c", 10)
    open_sealer(theirs.store, key=other_key, anchors=[FileAnchor(forged)]).seal()
    problems = ours.verify(public_key=public, anchors=[anchors]).problems
    assert [p.kind for p in problems] == [REWRITTEN]
    assert "not those of the anchored seal 1" in problems[0].detail
    problems = ours.verify(public_key=public, anchors=[forged]).problems
    assert [p.kind for p in problems] == [BAD_ANCHOR]


def test_a_tracker_seals_from_its_own_thread_until_closed(sqlite_url: str, tmp_path: Path,
                                                          make_tracker: Any) -> None:
    import lineage

    key, public = _key(tmp_path)
    with lineage.Tracker(sqlite_url, export_otlp=False) as tracker:
        background = tracker.start_sealing(key=key, every_s=0.05, poll_s=0.02)
        assert tracker.start_sealing(key=key) is background
        _train(tracker, "a", 100)
        _train(tracker, "b", 100)
    report = make_tracker(sqlite_url, export_otlp=False).verify(public_key=public)
    assert report.ok and report.seals >= 1 and report.unsealed == 1  # the last seal alone
    assert background.failures == 0


def test_a_rotated_key_is_trusted_when_both_keys_are_given(sqlite_url: str, tmp_path: Path,
                                                           make_tracker: Any,
                                                           monkeypatch: Any) -> None:
    from lineage.application.damage import BAD_SEAL

    tracker = make_tracker(sqlite_url, export_otlp=False)
    (old, old_public), (new, new_public) = _key(tmp_path), _key(tmp_path)
    _train(tracker, "a", 10)
    tracker.seal(key=old)
    _train(tracker, "b", 10)
    tracker.seal(key=new)  # the operator rotated the key
    problems = tracker.verify(public_key=old_public).problems
    assert [(p.kind, p.seal) for p in problems] == [(BAD_SEAL, 2)]
    assert tracker.verify(public_key=[old_public, new]).ok  # raw bytes and a key file
    monkeypatch.setenv("LINEAGE_SEAL_PUBLIC_KEY", f"{old_public.hex()},{new_public.hex()}")
    report = tracker.verify()
    assert report.ok and report.key_trusted
