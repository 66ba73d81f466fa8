"""Sessions end: tokens with an expiry are refused after it and listed as expired; a client
address that fails authentication too fast is throttled before any token is looked up; the
spool is fsynced on every append."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from lineage.adapters.server.tokens import TokenStore, expiry
from lineage.adapters.spool import SqliteSpool
from tests.server.conftest import InProcessServer
from tests.server.test_cli_and_limits import run_cli


def test_expires_takes_a_duration_or_a_zoned_time_and_names_the_field(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    now = datetime(2026, 12, 1, tzinfo=UTC)
    assert expiry("90m", now) == now + timedelta(minutes=90)
    assert expiry("2w", now) == now + timedelta(weeks=2)
    assert expiry("2027-01-31T00:00:00+01:00", now) == datetime(2027, 1, 30, 23, tzinfo=UTC)
    db = str(tmp_path / "tokens.db")
    for bad in ("soon", "0d", "2027-01-31T00:00:00", "2020-01-01T00:00:00+00:00"):
        code, _, err = run_cli(capsys, "--db", db, "tokens", "create", "--tenant", "a",
                               "--actor", "x", "--expires", bad)
        assert code == 1 and "expires" in err, bad
    code, out, _ = run_cli(capsys, "--db", db, "tokens", "create", "--tenant", "a", "--actor",
                           "x", "--expires", "12h", "--json")
    assert code == 0 and json.loads(out)["expires_at"]
    code, out, _ = run_cli(capsys, "--db", db, "tokens", "list")
    assert "live until" in out


def test_a_token_is_refused_once_it_expired_and_listed_as_expired(tmp_path: Path) -> None:
    server = InProcessServer(str(tmp_path / "expiry.db"))
    try:
        soon = datetime.now(UTC) + timedelta(seconds=3)
        token = server.core.tokens.create("team-a", "alice", ["read"], soon)
        forever = server.token("team-a", "bob", ("read",))
        auth = {"Authorization": f"Bearer {token}"}
        assert server.http.get("/v1/whoami", headers=auth).status_code == 200  # now cached
        while datetime.now(UTC) < soon:
            time.sleep(0.1)
        refused = server.http.get("/v1/whoami", headers=auth)
        assert refused.status_code == 401 and "expired" in refused.json()["detail"]
        assert server.http.get("/v1/whoami", headers={
            "Authorization": f"Bearer {forever}"}).status_code == 200
        states = {row["actor"]: row["state"] for row in server.core.tokens.list("team-a")}
        assert states == {"alice": "expired", "bob": "live"}
        admin = server.token("team-a", "root", ("admin",))
        made = server.http.post("/v1/tokens", json={"actor": "ci", "scopes": ["read"],
                                                    "expires": "1d"},
                                headers={"Authorization": f"Bearer {admin}"})
        assert made.status_code == 201
        bad = server.http.post("/v1/tokens", json={"actor": "ci", "scopes": ["read"],
                                                   "expires": "yesterday"},
                               headers={"Authorization": f"Bearer {admin}"})
        assert bad.status_code == 400 and bad.json()["error"]["field"] == "expires"
    finally:
        server.stop()


def test_a_token_table_from_before_expiry_gains_the_column(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'old.db'}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE lineage_tokens (id VARCHAR(16) PRIMARY KEY, tenant_id "
                          "VARCHAR(64) NOT NULL, actor TEXT NOT NULL, scopes TEXT NOT NULL, "
                          "secret_sha256 VARCHAR(64) NOT NULL, created_at VARCHAR(32) NOT NULL, "
                          "revoked_at VARCHAR(32))"))
    store = TokenStore(engine)
    token = store.create("team-a", "alice", ["read"])
    assert store.authenticate(token) is not None
    assert [row["state"] for row in store.list()] == ["live"]
    engine.dispose()


def test_an_address_guessing_tokens_is_throttled_before_any_lookup(tmp_path: Path) -> None:
    server = InProcessServer(str(tmp_path / "guess.db"), failed_auth_per_s=0.05,
                             failed_auth_burst=3)
    try:
        working, fresh = server.token("team-a", "alice"), server.token("team-a", "bob")
        assert _whoami(server, working).status_code == 200
        guesses = [_whoami(server, f"lnt.team-a.{n:016x}.guess") for n in range(5)]
        assert [g.status_code for g in guesses] == [401, 401, 401, 429, 429]
        assert int(guesses[-1].headers["retry-after"]) >= 1
        assert "failed authentications" in guesses[-1].json()["detail"]
        assert _whoami(server, None).status_code == 429  # no token: throttled as well
        assert _whoami(server, fresh).status_code == 429  # not looked up from this address
        assert _whoami(server, working).status_code == 200  # already working: goes on
    finally:
        server.stop()


def _whoami(server: InProcessServer, token: str | None) -> object:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    return server.http.get("/v1/whoami", headers=headers)


def test_the_spool_is_fsynced_on_every_append(tmp_path: Path) -> None:
    """synchronous=FULL: an acknowledged append survives a power loss, not only a kill."""
    spool = SqliteSpool.new(tmp_path, server="http://127.0.0.1:1", tenant="a")
    try:
        assert spool._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert spool._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        spool.close()
    with pytest.raises(ValueError, match="synchronous"):
        SqliteSpool.new(tmp_path, server="x", tenant="a", synchronous="OFF")
