"""``lineage migrate``: its output, and the stores it refuses with one error line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine

import lineage
from lineage.cli.main import main
from lineage.projections.runner import ProjectionLock
from tests.e2e.test_cli_errors import assert_one_error_line
from tests.integration.test_migrate import legacy_scenario


@pytest.fixture(autouse=True)
def plain_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.delenv("LINEAGE_DATABASE_URL", raising=False)


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def legacy_store(url: str, folder: Path) -> dict[str, Any]:
    with lineage.Tracker(url) as tracker:
        return legacy_scenario(tracker, folder)


def test_migrate_reports_what_it_did_and_then_nothing_to_do(
        durable_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    legacy_store(durable_url, tmp_path)
    code, out, err = cli(capsys, "--db", durable_url, "migrate", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["steps"] > 1000 and report["blocks"] > 1 and report["rows_left"] == 0
    assert report["size_after"] < report["size_before"] and "vacuum_s" in report
    assert report["projected"] > 0
    code, out, err = cli(capsys, "--db", durable_url, "migrate")
    assert code == 0, err
    assert "no one-row-per-step events left to migrate" in out
    assert "not vacuumed" in out


def test_migrate_says_how_many_steps_per_second(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    db = str(tmp_path / "old.db")
    legacy_store(db, tmp_path)
    code, out, err = cli(capsys, "--db", db, "migrate", "--no-vacuum")
    assert code == 0, err
    assert "steps into" in out and "steps/s" in out and "(not vacuumed" in out


def test_a_read_only_store_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "old.db"
    legacy_store(str(db), tmp_path)
    before = db.read_bytes()
    code, out, err = cli(capsys, "--db", f"sqlite:///{db}?mode=ro", "migrate")
    assert_one_error_line(code, err, "read-only", "lineage migrate rewrites the store")
    assert out == "" and db.read_bytes() == before


def test_a_store_being_projected_is_refused(durable_url: str, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    legacy_store(durable_url, tmp_path)
    with lineage.Tracker(durable_url) as tracker:
        lock = ProjectionLock.for_engine(tracker.views.engine)
        assert lock.acquire()
        try:
            tracker.close()  # on SQLite, the migration would otherwise see its connections
            code, _, err = cli(capsys, "--db", durable_url, "migrate")
        finally:
            lock.release()
    assert_one_error_line(code, err, "another process is projecting", "lineage migrate again")


def test_a_sqlite_file_another_process_has_open_is_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = str(tmp_path / "old.db")
    legacy_store(db, tmp_path)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, sqlite3; c = sqlite3.connect(sys.argv[1]); "
         "c.execute('SELECT count(*) FROM stored_events').fetchall(); print('open', flush=True); "
         "sys.stdin.read()", db], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "open\n"
        code, _, err = cli(capsys, "--db", db, "migrate")
    finally:
        holder.communicate("", timeout=30)
    assert_one_error_line(code, err, "database is locked", "another process has", db)
    code, _, err = cli(capsys, "--db", db, "migrate")  # once it has gone
    assert code == 0, err


def test_memory_and_missing_stores_are_refused(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = cli(capsys, "--db", "memory://", "migrate")
    assert_one_error_line(code, err, "nothing to migrate")
    code, _, err = cli(capsys, "--db", str(tmp_path / "nowhere.db"), "migrate")
    assert_one_error_line(code, err, "no lineage database")
    assert not (tmp_path / "nowhere.db").exists()


def test_the_read_models_answer_after_a_migration(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    db = str(tmp_path / "old.db")
    runs = legacy_store(db, tmp_path)["runs"]
    assert cli(capsys, "--db", db, "migrate")[0] == 0
    code, out, err = cli(capsys, "--db", db, "runs", "show", str(runs[1]), "--json")
    assert code == 0, err
    assert json.loads(out)["steps"]["total"] == 10 + 1250
    engine = create_engine(f"sqlite:///{db}")
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT count(*) FROM stored_events WHERE topic = "
                                        "'lineage.domain.steps:StepRecorded'").scalar() == 0
    finally:
        engine.dispose()


def test_ctrl_c_says_how_to_finish(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from lineage.application.migration import StepMigration

    db = str(tmp_path / "old.db")
    legacy_store(db, tmp_path)

    def interrupted(self: StepMigration, progress: Any = None) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(StepMigration, "compact", interrupted)
    code, _, err = cli(capsys, "--db", db, "migrate")
    assert code == 130
    assert err == ("lineage: error: interrupted: what was done so far is kept; run lineage "
                   "migrate again to finish\n")
    monkeypatch.undo()
    assert cli(capsys, "--db", db, "migrate")[0] == 0  # the lock and the file were let go
