"""The ``lineage`` command's usage surface: ``--help`` everywhere, usage errors (exit 2, naming
the option), shared options given at any level, and click's shell completion.

In-process through ``lineage.cli.main.main``, which returns exit codes and never raises
SystemExit.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import click
import pytest

import lineage
from lineage.cli.main import build_cli, main


@pytest.fixture(autouse=True)
def plain_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE", "LINEAGE_DATABASE_URL", "_LINEAGE_COMPLETE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("COLUMNS", "120")


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def command_paths(command: click.Command, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    yield path
    if isinstance(command, click.Group):
        for name, sub in sorted(command.commands.items()):
            yield from command_paths(sub, (*path, name))


GROUPS = ["runs", "artifacts", "project", "export"]
EVERY_COMMAND = list(command_paths(build_cli()))


def test_every_command_is_reachable() -> None:
    names = {" ".join(path) for path in EVERY_COMMAND}
    assert {"", "demo", "runs", "runs show", "artifacts", "artifacts show", "trace", "lineage",
            "audit", "metrics", "project", "project status", "project rebuild", "project follow",
            "export", "export otlp", "export openlineage", "export status", "recover", "monitor",
            "migrate", "seal", "verify", "serve", "tokens", "tokens create", "tokens list",
            "tokens revoke", "sync", "import", "import tinker-cookbook"} == names


def test_top_level_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "--help")

    assert (code, err) == (0, "")
    assert out.startswith("usage: lineage [OPTIONS] COMMAND")
    for path in EVERY_COMMAND:
        if len(path) == 1:
            assert f"\n  {path[0]} " in out
    assert "--db, --database-url URL" in out and "LINEAGE_DATABASE_URL" in out


@pytest.mark.parametrize("path", EVERY_COMMAND[1:], ids=" ".join)
@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_every_command_has_help(path: tuple[str, ...], flag: str,
                                capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, *path, flag)

    assert (code, err) == (0, "")
    assert out.startswith(f"usage: lineage {' '.join(path)} [OPTIONS]")
    assert "--db, --database-url URL" in out  # the shared option, on every command
    if path[0] in GROUPS and len(path) == 1:
        assert "Commands:" in out


@pytest.mark.parametrize("argv, option", [
    (["runs", "--status", "bogus"], "--status"),
    (["demo", "--steps", "5"], "--steps"),
    (["artifacts", "--limit", "0"], "--limit"),
    (["audit", "--after", "-1"], "--after"),
    (["runs", "show", "abc", "--steps", "many"], "--steps"),
    (["monitor", "--interval", "nan"], "--interval"),
    (["monitor", "--stale-after", "inf"], "--stale-after"),
    (["recover", "abc", "--max-delay", "-1"], "--max-delay"),
    (["recover", "abc", "--backoff", "random"], "--backoff"),
    (["export", "otlp", "--protocol", "udp"], "--protocol"),
    (["lineage", "abc", "--format", "svg"], "--format"),
])
def test_a_bad_option_value_exits_2_naming_the_option(
        argv: list[str], option: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, *argv)

    assert code == 2 and out == ""
    assert err.startswith(f"usage: lineage {argv[0]}")
    assert f"lineage: error: Invalid value for '{option}'" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("argv, first, second", [
    (["lineage", "abc", "--up", "--both"], "--up", "--both"),
    (["monitor", "--once", "--polls", "2"], "--once", "--polls"),
    (["export", "otlp", "--from-start", "--run", "abc"], "--from-start", "--run"),
])
def test_mutually_exclusive_options_are_a_usage_error(
        argv: list[str], first: str, second: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, *argv)

    assert code == 2
    assert f"lineage: error: option {second} is not allowed with {first}" in err


@pytest.mark.parametrize("argv, words", [
    (["runs", "nonsense"], ["No such command", "nonsense"]),
    (["project", "--json"], ["No such option", "--json"]),  # only its subcommands take --json
    (["demo", "--json"], ["No such option", "--json"]),
    (["export", "otlp", "extra"], ["unexpected extra argument", "extra"]),
])
def test_unknown_commands_and_options_exit_2(argv: list[str], words: list[str],
                                             capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, *argv)

    assert code == 2 and all(word in err for word in words)


def test_db_and_json_count_at_any_level(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    db = str(tmp_path / "u.db")
    with lineage.Tracker(db) as tracker, tracker.start_run("levels") as run:
        run.log_step(1, {"loss": 1.0})
    prefix = str(run.id)[:6]

    for argv in (["--db", db, "runs", "--json", "show", prefix],
                 ["runs", "--db", db, "show", prefix, "--json"],
                 ["--db", "/nowhere.db", "runs", "show", prefix, "--db", db, "--json"]):
        code, out, err = run_cli(capsys, *argv)
        assert code == 0, err
        assert json.loads(out)["run"]["id"] == str(run.id)


def test_bash_completion_script_and_completions(monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("_LINEAGE_COMPLETE", "bash_source")
    code, out, _ = run_cli(capsys)
    assert code == 0 and "_lineage_completion()" in out

    monkeypatch.setenv("_LINEAGE_COMPLETE", "bash_complete")
    monkeypatch.setenv("COMP_WORDS", "lineage runs --status c")
    monkeypatch.setenv("COMP_CWORD", "3")
    code, out, _ = run_cli(capsys)
    assert code == 0
    assert out.split() == ["plain,completed", "plain,corrupted", "plain,cancelled"]
