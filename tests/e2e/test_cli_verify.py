"""``lineage seal`` and ``lineage verify`` end to end, in-process (issue 14): keys, seals to an
anchor file and stdout, a clean and a damaged log, proofs a third party checks with the
stdlib verifier alone, and ``--artifacts``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import lineage
from lineage.proof.seals import TreeHead
from lineage.proof.verifier import check_consistency, check_inclusion, head_message
from tests.e2e.test_cli_usage import run_cli as cli
from tests.tamper import Tamper


@pytest.fixture(autouse=True)
def plain_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    unset = ("FORCE_COLOR", "LINEAGE_DATABASE_URL", *(f"LINEAGE_SEAL_{name}" for name in
                                                      ("KEY", "PUBLIC_KEY", "ANCHOR")))
    for name in unset:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("COLUMNS", "200")


@pytest.fixture
def store(tmp_path: Path) -> tuple[str, Path]:
    db = str(tmp_path / "lineage.db")
    data = tmp_path / "data.bin"
    data.write_bytes(b"training data")
    with lineage.Tracker(db, export_otlp=False) as tracker:
        tracker.register_artifact(data, type="dataset")
        with tracker.start_run("run-a") as run:
            for step in range(50):
                run.log_step(step, {"loss": 1.0})
    return db, data


def test_seal_then_verify_then_prove(store: tuple[str, Path], tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    db, _ = store
    key, anchor = str(tmp_path / "k.pem"), str(tmp_path / "anchors.jsonl")
    code, out, _ = cli(capsys, "seal", "--new-key", key, "--db", db)
    public = out.split()[-1]
    assert code == 0 and len(public) == 64
    code, out, _ = cli(capsys, "seal", "--key", key, "--anchor", anchor, "--stdout", "--db", db)
    line = out.strip()
    assert code == 0 and Path(anchor).read_text().strip() == line
    head = TreeHead.of_anchor(line)
    assert (head.number, head.size) == (1, 4)  # registered, started, a block, finished
    code, out, _ = cli(capsys, "seal", "--key", key, "--db", db)
    assert (code, out.strip()) == (0, "nothing new to seal")

    code, out, _ = cli(capsys, "verify", "--public-key", public, "--anchor", anchor, "--db", db)
    assert code == 0 and "ok: every seal matches the log" in out and "trusted key" in out
    code, out, _ = cli(capsys, "verify", "--json", "--db", db)
    report = json.loads(out)
    assert code == 0 and report["ok"] and not report["key_trusted"] and report["sealed"] == 4

    code, out, _ = cli(capsys, "verify", "--event", "@2", "--db", db)
    proof = json.loads(out)
    assert code == 0 and check_inclusion(proof) and proof["leaf_index"] == 1
    signed = head_message(proof["seal"])
    assert lineage_signature_ok(public, signed, proof["seal"]["signature"])
    code, out, _ = cli(capsys, "verify", "--event", "@5", "--db", db)
    assert code == 1  # the seal's own row: sealed by the next seal only

    with lineage.Tracker(db, export_otlp=False) as tracker:
        with tracker.start_run("run-b") as run:
            run.log_step(0, {"loss": 2.0})
        event_id = tracker.audit(kind="run.started")[-1]["event_id"]
    assert cli(capsys, "seal", "--key", key, "--anchor", anchor, "--db", db)[0] == 0
    code, out, _ = cli(capsys, "verify", "--from", "1", "--to", "2", "--db", db)
    assert code == 0 and check_consistency(json.loads(out))
    code, out, _ = cli(capsys, "verify", "--event", event_id, "--db", db)
    assert code == 0 and json.loads(out)["event"]["topic"] == "lineage.domain.run:Run.Started"
    with lineage.Tracker(db, export_otlp=False) as tracker:  # a step in a block the writer stored
        step = tracker.steps(tracker.runs()[0].id)[-1]
    code, out, _ = cli(capsys, "verify", "--event", str(step.event_id), "--db", db)
    proof = json.loads(out)
    assert code == 0 and check_inclusion(proof)
    assert proof["step"] == {"index_in_block": step.originator_version - 1,
                             "seq": step.originator_version, "step": step.step,
                             "event_id": str(step.event_id), "proven": "block",
                             "block_steps": step.originator_version}  # one block of its run
    assert proof["event"]["topic"] == "lineage.domain.steps:StepsRecorded"
    code, _, err = cli(capsys, "verify", "--from", "1", "--db", db)
    assert code == 1 and "--from and --to go together" in err
    code, out, _ = cli(capsys, "verify", "--public-key", public, "--db", f"sqlite:///{db}?mode=ro")
    assert code == 0 and "ok: every seal matches the log" in out  # an archive read-only


def lineage_signature_ok(public: str, message: bytes, signature: str) -> bool:
    from lineage.adapters.signing import check_signature

    return check_signature(bytes.fromhex(public), message, bytes.fromhex(signature))


def test_verify_reports_damage_with_exit_code_1(store: tuple[str, Path], tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    db, _ = store
    key = str(tmp_path / "k.pem")
    cli(capsys, "seal", "--new-key", key)
    assert cli(capsys, "seal", "--key", key, "--db", db)[0] == 0
    tamper = Tamper(db)
    try:
        tamper.modify(2, b"run-a", b"run-x")
    finally:
        tamper.close()
    code, out, _ = cli(capsys, "verify", "--public-key", key, "--db", db)
    assert code == 1 and "DAMAGE modified at position 2 (row 1)" in out
    code, out, _ = cli(capsys, "verify", "--event", "@2", "--db", db)
    assert code == 1
    code, _, err = cli(capsys, "seal", "--db", db)
    assert code == 1 and "sealing needs a private key" in err
    code, _, err = cli(capsys, "seal", "--key", key, "--every-s", "0", "--db", db)
    assert code == 1 and "--every-s: must be more than 0 seconds" in err


def test_verify_artifacts_records_each_outcome(store: tuple[str, Path], tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    db, data = store
    code, out, _ = cli(capsys, "verify", "--artifacts", "--db", db)
    assert code == 0 and out.startswith("verified")
    data.write_bytes(b"changed")
    code, out, _ = cli(capsys, "verify", "--artifacts", "--json", "--db", db)
    assert code == 1 and json.loads(out)["outcome"] == "mismatch"
    data.unlink()
    code, out, _ = cli(capsys, "verify", "--artifacts", "--db", db)
    assert code == 1 and out.startswith("missing")
    with lineage.Tracker(db, export_otlp=False) as tracker:
        kinds = [row["summary"] for row in tracker.audit(kind="artifact.verified")]
        assert tracker.artifacts()[0].last_verified_ok is False
    assert len(kinds) == 3 and kinds[0].startswith("verified: ok") and "MISMATCH" in kinds[1]


def test_seal_sends_each_seal_to_an_otlp_collector(store: tuple[str, Path], tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.otlp_receiver import HttpReceiver

    db, _ = store
    key = str(tmp_path / "k.pem")
    cli(capsys, "seal", "--new-key", key)
    receiver = HttpReceiver().start()
    try:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.base)
        code, out, _ = cli(capsys, "seal", "--key", key, "--otlp", "--stdout", "--db", db)
        span = receiver.wait_for_spans(1)[0]
    finally:
        receiver.stop()
    attributes = {a.key: a.value.string_value or a.value.int_value for a in span.attributes}
    assert code == 0 and span.name == "seal log"
    assert attributes["lineage.seal.anchor"] == out.strip()
    assert TreeHead.of_anchor(out).root.hex() == attributes["lineage.seal.root"]
