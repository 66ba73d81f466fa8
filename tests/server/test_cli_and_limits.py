"""``lineage tokens``, the query commands against a server URL, and the request limits (a
client that sends too fast gets 429 with Retry-After, and the remote tracker waits it out)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

import lineage
from lineage.cli.main import main
from tests.server.conftest import InProcessServer


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_tokens_are_created_listed_and_revoked(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    db = str(tmp_path / "tokens.db")
    code, out, _ = run_cli(capsys, "--db", db, "tokens", "create", "--tenant", "team-a",
                           "--actor", "ci-bot", "--scope", "write", "--json")
    assert code == 0
    token = json.loads(out)["token"]
    assert token.startswith("lnt.team-a.")
    token_id = token.split(".")[2]
    code, out, _ = run_cli(capsys, "--db", db, "tokens", "list", "--json")
    assert [(r["id"], r["actor"], r["scopes"], r["revoked_at"]) for r in json.loads(out)] == [
        (token_id, "ci-bot", ["write"], None)]
    assert token.split(".")[3] not in (tmp_path / "tokens.db").read_bytes().decode("latin-1")
    assert run_cli(capsys, "--db", db, "tokens", "revoke", token_id)[0] == 0
    code, _, err = run_cli(capsys, "--db", db, "tokens", "revoke", token_id)
    assert code == 1 and "no live token" in err
    code, _, err = run_cli(capsys, "--db", db, "tokens", "create", "--tenant", "bad tenant!",
                           "--actor", "x")
    assert code == 1 and "tenant" in err


def test_query_commands_work_against_a_server_url(
        shared_server: InProcessServer, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    token = shared_server.token(f"cli-{uuid.uuid4().hex[:8]}")
    monkeypatch.setenv("LINEAGE_TOKEN", token)
    monkeypatch.setenv("LINEAGE_SPOOL_DIR", str(tmp_path / "spool"))
    tracker = lineage.Tracker(shared_server.url)  # the token from LINEAGE_TOKEN
    with tracker.start_run("from-the-cli") as run:
        for step in range(1, 11):
            run.log_step(step, {"loss": step / 10})
    tracker.close()
    code, out, err = run_cli(capsys, "--db", shared_server.url, "runs", "--json")
    assert code == 0, err
    assert [(r["name"], r["steps"]) for r in json.loads(out)] == [("from-the-cli", 10)]
    code, out, err = run_cli(capsys, "--db", shared_server.url, "trace", str(run.id)[:8], "--json")
    assert code == 0, err
    assert str(run.id) in out and json.loads(out)["spans"]
    code, out, err = run_cli(capsys, "--db", shared_server.url, "metrics", str(run.id), "loss")
    assert code == 0, err
    assert out.splitlines()[-1].split("\t") == ["10", "1.0"]


def test_a_token_past_its_rate_gets_429_and_the_tracker_waits_it_out(tmp_path: Path) -> None:
    server = InProcessServer(str(tmp_path / "rate.db"), rate_per_s=2.0, burst=2)
    try:
        token = server.token("slow", "alice")
        answers = [server.http.get("/v1/whoami", headers={"Authorization": f"Bearer {token}"})
                   for _ in range(4)]
        limited = [a for a in answers if a.status_code == 429]
        assert limited and int(limited[0].headers["retry-after"]) >= 1
        assert "too many requests" in limited[0].json()["detail"]
        tracker = lineage.Tracker(server.url, token=token, spool=tmp_path / "spool")
        run = tracker.start_run("limited")
        for batch in range(3):
            run.log_step(batch, {"loss": 0.5})
            tracker.flush()
        run.finish()
        tracker.close()
        assert [(r.name, r.steps) for r in _local(server).runs()] == [("limited", 3)]
    finally:
        server.stop()


def _local(server: InProcessServer) -> lineage.Tracker:
    return lineage.Tracker(server.database, create=False, export_otlp=False)
