"""Rules of the command line that a tester found broken (issue 9, item 10): how ``--as-of`` and
``--checksum`` read their values, one time for ``registered_at``, JSON from an idle monitor,
hints in CLI terms, ``--format`` without ``--json``, a demo that writes nothing when its
database is bad, OTLP settings that only matter to export, and PostgreSQL connection errors
that say what is wrong."""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

import lineage
from lineage.cli.main import main
from tests.conftest import POSTGRES_ENV


@pytest.fixture(autouse=True)
def plain_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.delenv("LINEAGE_DATABASE_URL", raising=False)
    for name in list(os.environ):
        if name.startswith(("OTEL_", "LINEAGE_OTLP_")):
            monkeypatch.delenv(name)


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def two_artifacts(tmp_path: Path) -> dict[str, Any]:
    """A store with two artifacts, registered now at log positions 1 and 2, with digests
    that share their first 8 hex digits."""
    db = str(tmp_path / "a.db")
    digests = ["abcdef01" + "0" * 56, "abcdef02" + "1" * 56]
    with lineage.Tracker(db) as tracker:
        refs = [tracker.register_artifact(f"s3://bucket/model-{i}", type="model",
                                          checksum=f"sha256:{digest}")
                for i, digest in enumerate(digests)]
    return {"db": db, "ids": [str(ref.id) for ref in refs], "digests": digests}


# -- --as-of: one rule ---------------------------------------------------------------------------

AN_HOUR_AHEAD = str(int(time.time()) + 3600)


@pytest.mark.parametrize("as_of, expected", [
    ("@1", [0]),                      # @N: log position N
    ("1", [0]),                       # a whole number below 10^9: a log position
    ("999999999", [0, 1]),
    ("@1577836800", [0, 1]),          # @ makes even a large number a position
    ("1577836800", []),               # from 10^9 up: epoch seconds (2020-01-01)
    ("1577836800000", []),            # ... in milliseconds, told apart by size
    ("1577836800.5", []),
    (AN_HOUR_AHEAD, [0, 1]),
    ("2000-01-01T00:00Z", []),        # anything else: an ISO 8601 time
    ("2999-01-01", [0, 1]),
])
def test_as_of_reads_positions_epoch_seconds_and_iso_times_by_one_rule(
        two_artifacts: dict[str, Any], capsys: pytest.CaptureFixture[str], as_of: str,
        expected: list[int]) -> None:
    code, out, err = cli(capsys, "--db", two_artifacts["db"], "artifacts", "--as-of", as_of,
                         "--json")
    assert (code, err) == (0, "")
    assert [a["id"] for a in json.loads(out)] == [two_artifacts["ids"][i] for i in expected]


@pytest.mark.parametrize("as_of, says", [("12.5", "epoch seconds (at least 1000000000)"),
                                         ("@x", "@ must be followed by a log position"),
                                         ("someday", "as_of: is not an ISO 8601 time")])
def test_an_as_of_that_fits_no_rule_is_one_error_line(
        two_artifacts: dict[str, Any], capsys: pytest.CaptureFixture[str], as_of: str,
        says: str) -> None:
    code, out, err = cli(capsys, "--db", two_artifacts["db"], "artifacts", "--as-of", as_of)
    assert (code, out) == (1, "")
    assert err.startswith("lineage: error: ") and says in err and err.count("\n") == 1


def test_the_as_of_rule_is_in_the_help(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "artifacts", "--help")
    help_text = " ".join(out.split())
    assert code == 0
    assert "epoch seconds: a number from 1000000000 up" in help_text
    assert "a log position (@N, or a whole number below 1000000000)" in help_text


# -- --checksum: a unique prefix -------------------------------------------------------------------


@pytest.mark.parametrize("given, expected", [
    ("abcdef01" + "0" * 56, [0]),           # the full digest
    ("sha256:abcdef01" + "0" * 56, [0]),
    ("abcdef02111", [1]),                   # a prefix, as tables show it
    ("sha256:ABCDEF01", [0]),               # algorithm and case do not matter
    ("abcdef03", []),                       # nothing starts so: nothing listed
])
def test_checksum_takes_the_digest_or_a_unique_prefix(
        two_artifacts: dict[str, Any], capsys: pytest.CaptureFixture[str], given: str,
        expected: list[int]) -> None:
    code, out, _ = cli(capsys, "--db", two_artifacts["db"], "artifacts", "--checksum", given,
                       "--json")
    assert code == 0
    assert [a["id"] for a in json.loads(out)] == [two_artifacts["ids"][i] for i in expected]


@pytest.mark.parametrize("given, says", [
    ("abcdef", "'abcdef' is the start of more than one digest (abcdef0100000000..., "
               "abcdef0211111111...); give more digits"),
    ("abcde", "give at least 6 hex digits of the digest"),
    ("sha256:", "give at least 6 hex digits of the digest"),
    ("xyz123", "must be hex digits (sha256:... or a prefix of the digest)"),
])
def test_a_checksum_prefix_that_is_ambiguous_or_too_short_is_an_error(
        two_artifacts: dict[str, Any], capsys: pytest.CaptureFixture[str], given: str,
        says: str) -> None:
    code, out, err = cli(capsys, "--db", two_artifacts["db"], "artifacts", "--checksum", given)
    assert (code, out) == (1, "")
    assert err == f"lineage: error: checksum: {says}\n"


def test_the_python_api_takes_a_checksum_prefix_too(two_artifacts: dict[str, Any]) -> None:
    with lineage.Tracker(two_artifacts["db"]) as tracker:
        assert [str(a.id) for a in tracker.artifacts(checksum="abcdef02")] == two_artifacts["ids"][1:]
        with pytest.raises(lineage.ValidationError, match="more than one digest"):
            tracker.artifacts(checksum="abcdef0")


# -- registered_at: one value ----------------------------------------------------------------------


def test_artifacts_show_prints_registered_at_as_the_json_does(
        two_artifacts: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    db, artifact = two_artifacts["db"], two_artifacts["ids"][1]
    listed = {a["id"]: a["registered_at"] for a in json.loads(cli(capsys, "--db", db, "artifacts",
                                                                 "--json")[1])}
    shown = json.loads(cli(capsys, "--db", db, "artifacts", "show", artifact, "--json")[1])
    code, text, _ = cli(capsys, "--db", db, "artifacts", "show", artifact)
    assert code == 0 and shown["registered_at"] == listed[artifact]
    [line] = [line for line in text.splitlines() if line.startswith("registered")]
    assert line.split() == ["registered", listed[artifact]]
    # what `show` prints can be pasted into --until and finds the artifact itself
    code, out, _ = cli(capsys, "--db", db, "artifacts", "--until", listed[artifact], "--json")
    assert [a["id"] for a in json.loads(out)] == two_artifacts["ids"]


# -- monitor --once --json when idle ---------------------------------------------------------------


def test_an_idle_monitor_poll_prints_json_of_the_same_shape(
        two_artifacts: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "--db", two_artifacts["db"], "monitor", "--once", "--json")
    assert code == 0 and json.loads(out) == {"actions": [], "errors": []}
    code, out, _ = cli(capsys, "--db", two_artifacts["db"], "monitor", "--polls", "2",
                       "--interval", "0", "--json")
    assert [json.loads(line) for line in out.splitlines()] == [{"actions": [], "errors": []}] * 2


# -- hints name CLI options ------------------------------------------------------------------------


def test_the_recover_hint_names_the_reason_option(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    db = str(tmp_path / "r.db")
    with lineage.Tracker(db) as tracker:
        run = tracker.start_run("sft")
        run.log_step(1, {"loss": 1.0})
    code, out, _ = cli(capsys, "--db", db, "recover", str(run.id))
    assert code == 1 and out.startswith("no_failure: ")
    assert "--reason TEXT" in out and "record_failure" not in out
    code, out, _ = cli(capsys, "--db", db, "recover", str(run.id), "--json")
    result = json.loads(out)
    assert result["hint"] == "record one first: lineage recover RUN --reason TEXT"
    assert "record_failure" not in result["message"]
    with lineage.Tracker(db) as tracker:  # Python callers get a hint in Python terms
        assert "run.record_failure" in tracker.recover(run.id).hint


# -- trace --format needs --json -------------------------------------------------------------------


@pytest.mark.parametrize("shape", ["nested", "lineageir"])
def test_trace_format_without_json_is_a_usage_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], shape: str) -> None:
    db = str(tmp_path / "t.db")
    with lineage.Tracker(db) as tracker:
        run = tracker.start_run("sft")
    code, out, err = cli(capsys, "--db", db, "trace", str(run.id), "--format", shape)
    assert (code, out) == (2, "")
    assert err.endswith(f"lineage: error: --format {shape} needs --json\n")


# -- the demo writes nothing when its database is bad ----------------------------------------------


def test_the_demo_checks_its_database_before_writing_a_file(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    directory = tmp_path / "demo"
    directory.mkdir()
    code, _, err = cli(capsys, "demo", "--dir", str(directory), "--db",
                       str(tmp_path / "missing" / "x.db"))
    assert code == 1 and "directory" in err and "does not exist" in err
    assert list(directory.iterdir()) == []


# -- OTLP settings matter to export only -----------------------------------------------------------


def test_a_malformed_otlp_endpoint_only_stops_export(
        two_artifacts: dict[str, Any], capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "localhost:4318")  # no scheme
    db = two_artifacts["db"]
    for command in (["runs"], ["artifacts", "--json"], ["audit"], ["project", "status"]):
        code, _, err = cli(capsys, "--db", db, *command)
        assert (code, err) == (0, ""), command
    code, out, err = cli(capsys, "--db", db, "export", "otlp")
    assert (code, out) == (1, "") and err.count("\n") == 1
    assert err.startswith("lineage: error: OTEL_EXPORTER_OTLP_ENDPOINT='localhost:4318' is invalid")


# -- PostgreSQL connection errors say what is wrong ------------------------------------------------


def _server(base: str) -> tuple[str, str]:
    """(URL up to the database name, host:port) of the test server."""
    head = base.split("?")[0].rsplit("/", 1)[0]
    return head, head.rsplit("@", 1)[-1]


@pytest.mark.postgres
def test_a_missing_postgres_database_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    base = os.environ.get(POSTGRES_ENV)
    if not base:
        pytest.skip(f"{POSTGRES_ENV} is not set")
    head, at = _server(base)
    name = f"lineage_missing_{uuid.uuid4().hex[:12]}"  # never created
    code, out, err = cli(capsys, "--db", f"{head}/{name}", "runs")
    assert (code, out) == (1, "")
    assert err == f'lineage: error: database "{name}" does not exist on {at}\n'
    user = f"lineage_nobody_{uuid.uuid4().hex[:8]}"
    code, _, err = cli(capsys, "--db", f"postgresql+psycopg://{user}@{at}/test", "runs")
    assert err == f'lineage: error: user "{user}" does not exist on {at}\n'


def test_a_refused_postgres_connection_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as probe:  # a port nothing listens on (bound, then released)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    code, _, err = cli(capsys, "--db", f"postgresql+psycopg://postgres@127.0.0.1:{port}/test", "runs")
    assert code == 1
    assert err == (f"lineage: error: connection refused by 127.0.0.1:{port} (is PostgreSQL "
                   "running and listening there?)\n")
