"""Every failure of the ``lineage`` command is one ``lineage: error: ...`` line on stderr and
exit 1, never a traceback; a read-only archive answers every query.

Most cases call ``lineage.cli.main.main`` in-process; the read-only mount, the full disk and
the stale read models' warning run the installed console script (a real process, with
logging as a user gets it). Mounting a tmpfs needs root: those cases are skipped without it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import lineage
from lineage.cli.main import main

WARNING = "is read-only and its read models are behind its events"


@pytest.fixture(autouse=True)
def plain_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("LINEAGE_DATABASE_URL", "LINEAGE_DEBUG", "LINEAGE_LOCK_TIMEOUT_S"):
        monkeypatch.delenv(name, raising=False)


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def console(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).with_name("lineage")
    return subprocess.run([str(script), *argv], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})}, check=False)


def assert_one_error_line(code: int, err: str, *expected: str) -> None:
    assert code == 1, err
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("lineage: error: "), err
    for text in expected:
        assert text in lines[0], lines[0]


def record(db: Path, *, steps: int = 3, query: bool = True) -> str:
    """A run with steps and a checkpoint in ``db``; ``query``: catch the read models up."""
    checkpoint = db.parent / f"{db.stem}-ckpt.bin"
    checkpoint.write_bytes(b"weights")
    with lineage.Tracker(str(db)) as tracker:
        run = tracker.start_run("archived")
        for step in range(steps):
            run.log_step(step, {"loss": 1.0 / (step + 1)})
        run.save_checkpoint(checkpoint, step=steps - 1).wait()
        run.finish()
        tracker.flush()
        if query:
            tracker.runs()
        return str(run.id)


# -- files that are not lineage databases ----------------------------------------------------------


def test_a_file_that_is_not_sqlite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    passwd = tmp_path / "passwd"
    passwd.write_text("root:x:0:0:root:/root:/bin/bash\n" * 200)
    code, _, err = run_cli(capsys, "--db", str(passwd), "runs")
    assert_one_error_line(code, err, f"not a lineage database: {passwd} is not a SQLite database")
    assert passwd.read_text().startswith("root:x")  # untouched


@pytest.mark.parametrize("kind", ["directory", "symlink loop"])
def test_paths_that_cannot_be_a_database(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                         kind: str) -> None:
    path = tmp_path / "db"
    if kind == "directory":
        path.mkdir()
    else:
        path.symlink_to(path)
    code, _, err = run_cli(capsys, "--db", str(path), "runs")
    assert_one_error_line(code, err, "is a directory" if kind == "directory" else "database_url")


def test_a_sqlite_file_of_another_program_opened_read_only(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    other = tmp_path / "other.db"
    with contextlib.closing(sqlite3.connect(other)) as conn:
        conn.execute("CREATE TABLE t (x)")
    code, _, err = run_cli(capsys, "--db", f"sqlite:///{other}?mode=ro", "runs")
    assert_one_error_line(code, err, "not a lineage database", "has no lineage events")


# -- locks and full disks --------------------------------------------------------------------------


@pytest.mark.parametrize("database", ["new", "read models behind"])
def test_a_reader_waits_for_a_busy_writer_then_says_database_is_locked(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch, database: str) -> None:
    db = tmp_path / "busy.db"
    if database == "new":  # a writer has just created the file: our tables are still to make
        with contextlib.closing(sqlite3.connect(db)) as conn:
            conn.execute("PRAGMA journal_mode=WAL")
    else:
        record(db, query=False)  # the read models must catch up: that needs the write lock
    monkeypatch.setenv("LINEAGE_LOCK_TIMEOUT_S", "0.2")
    with contextlib.closing(sqlite3.connect(db, isolation_level=None)) as writer:
        writer.execute("BEGIN IMMEDIATE")  # another process writing, for longer than we wait
        code, _, err = run_cli(capsys, "--db", str(db), "runs")
        writer.execute("ROLLBACK")
    assert_one_error_line(code, err, "database is locked", str(db))
    code, out, err = run_cli(capsys, "--db", str(db), "runs")  # the writer is done
    assert code == 0 and err == ""
    assert ("archived" if database != "new" else "no runs") in out


@contextlib.contextmanager
def tmpfs(where: Path, size: int) -> Iterator[Path]:
    """A tmpfs of ``size`` bytes mounted at ``where`` (skips the test when it cannot mount)."""
    where.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                             capture_output=True, check=False)
    if mounted.returncode != 0:
        pytest.skip("mounting a tmpfs needs root")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=True)


def remount_read_only(where: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(where)], check=True)


def test_a_full_disk_while_the_read_models_catch_up(tmp_path: Path) -> None:
    db = tmp_path / "full.db"
    record(db, steps=3000, query=False)
    with tmpfs(tmp_path / "small", db.stat().st_size + 200 * 1024) as small:
        shutil.copy(db, small / "full.db")
        result = console("--db", str(small / "full.db"), "runs")
    assert_one_error_line(result.returncode, result.stderr, "disk full")


# -- read-only archives ----------------------------------------------------------------------------

QUERIES = [("runs",), ("runs", "show", "{run}"), ("artifacts",), ("trace", "{run}"), ("audit",),
           ("audit", "--steps"), ("metrics", "{run}", "loss"),
           ("metrics", "{run}", "loss", "--buckets", "2")]


def query_all(db: str, run_id: str, capsys: pytest.CaptureFixture[str]) -> list[str]:
    """Every query with ``--json``, each required to succeed without a word on stderr."""
    outputs = []
    for query in QUERIES:
        argv = [part.format(run=run_id) for part in query]
        code, out, err = run_cli(capsys, "--db", db, *argv, "--json")
        assert (code, err) == (0, ""), (argv, err)
        outputs.append(out)
    return outputs


@pytest.mark.parametrize("read_models", ["current", "behind"])
def test_a_read_only_url_answers_every_query(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                             read_models: str) -> None:
    db = tmp_path / "archive.db"
    run_id = record(db, query=read_models == "current")
    before = db.read_bytes()
    answers = query_all(f"sqlite:///{db}?mode=ro", run_id, capsys)
    assert db.read_bytes() == before  # SQLite may add empty -wal/-shm files beside it, no more
    assert not Path(f"{db}-wal").exists() or Path(f"{db}-wal").stat().st_size == 0
    assert [run["id"] for run in json.loads(answers[0])] == [run_id]
    assert query_all(str(db), run_id, capsys) == answers  # the same as from the writable file
    code, _, err = run_cli(capsys, "--db", f"sqlite:///{db}?mode=ro", "demo", "--dir",
                           str(tmp_path / "demo"), "--steps", "100")
    assert_one_error_line(code, err, "read-only", str(db))
    code, out, err = run_cli(capsys, "--db", f"sqlite:///{db}?mode=ro", "project", "rebuild")
    assert_one_error_line(code, err, "read-only", "cannot be rebuilt")
    assert out == ""


@pytest.mark.parametrize("read_models", ["current", "behind"])
def test_an_archive_on_a_read_only_mount(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                         read_models: str) -> None:
    db = tmp_path / "archive.db"
    run_id = record(db, query=read_models == "current")
    with tmpfs(tmp_path / "mnt", 20 * 1024 * 1024) as mnt:
        shutil.copy(db, mnt / "archive.db")
        remount_read_only(mnt)
        archive = str(mnt / "archive.db")
        results = [console("--db", archive, *[p.format(run=run_id) for p in q], "--json")
                   for q in QUERIES]
        written = console("--db", archive, "demo", "--dir", str(tmp_path / "demo"))
        with lineage.Tracker(archive) as tracker:
            assert [str(run.id) for run in tracker.runs()] == [run_id]
            with pytest.raises(lineage.ReadOnlyStoreError, match="read-only"):
                tracker.start_run("refused")
    for result in results:
        assert result.returncode == 0, result.stderr
        warned = [line for line in result.stderr.splitlines() if WARNING in line]
        assert len(warned) == (1 if read_models == "behind" else 0), result.stderr
        assert len(result.stderr.splitlines()) == len(warned)
    assert [run["id"] for run in json.loads(results[0].stdout)] == [run_id]
    assert [result.stdout for result in results] == query_all(str(db), run_id, capsys)
    assert_one_error_line(written.returncode, written.stderr, "read-only")


# -- the last resort -------------------------------------------------------------------------------


def test_an_unexpected_error_is_one_line_and_debug_shows_the_traceback(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr("lineage.cli.base.Tracker", broken)
    code, _, err = run_cli(capsys, "--db", str(tmp_path / "x.db"), "runs")
    assert_one_error_line(code, err, "unexpected ZeroDivisionError: a bug",
                          "(run with LINEAGE_DEBUG=1 for the traceback)")
    monkeypatch.setenv("LINEAGE_DEBUG", "1")
    code, _, err = run_cli(capsys, "--db", str(tmp_path / "x.db"), "runs")
    assert code == 1 and "Traceback" in err and err.endswith("(run with LINEAGE_DEBUG=1 for "
                                                             "the traceback)\n")
