"""The README runs: every fenced ``python``, ``sh``/``bash``/``shell`` and ``console`` block, in
document order, in one temporary directory (so ``./lineage.db`` is the store the examples share),
with this environment's ``lineage`` first on PATH.

Python blocks run in one namespace, like a session that follows the README top to bottom;
shell blocks run with ``bash -e -o pipefail``; in a ``console`` block the lines after ``$ `` are
the commands. HTML comments right before a block (blank lines between are fine) direct the test:

    <!-- not-tested: REASON -->        skip the block (needs Docker, installs packages...);
                                       every skip is counted and listed with its reason
    <!-- test-setup: what it stands for
    code                               run first, hidden from readers: stand-ins for the user's
    -->                                own things (a trainer, a loss), in the block's language

Anything else (``sql``, ``text``, unlabelled blocks) is not code to run here.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"
PYTHON = ("python", "py")
SHELL = ("sh", "bash", "shell", "console")
_FENCE = re.compile(r"^```\s*([\w+-]*)\s*$")
_DIRECTIVE = re.compile(r"^<!--\s*(not-tested|test-setup)\s*:?(.*?)(?:-->)?\s*$")


@dataclass
class Block:
    language: str
    line: int  # of the first code line in README.md
    code: str
    skip: str | None = None  # the reason given by a not-tested comment
    setup: list[str] = field(default_factory=list)

    @property
    def runs(self) -> bool:
        return self.language in PYTHON + SHELL and self.skip is None


def blocks(text: str) -> list[Block]:
    """The fenced blocks of ``text`` with the directives in the comments right before them.
    A directive that no block follows is an error (a typo must not skip silently)."""
    lines = text.splitlines()
    found: list[Block] = []
    pending: list[tuple[str, str, int]] = []  # (kind, text, line)
    i = 0
    while i < len(lines):
        line = lines[i]
        fence = _FENCE.match(line)
        directive = _DIRECTIVE.match(line)
        if fence:
            end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
            block = Block(fence[1].lower(), i + 2, "\n".join(lines[i + 1:end]) + "\n")
            for kind, said, _ in pending:
                if kind == "not-tested":
                    block.skip = said
                else:
                    block.setup.append(said)
            found.append(block)
            pending, i = [], end + 1
            continue
        if directive:
            kind, first = directive[1], directive[2].strip()
            if line.rstrip().endswith("-->"):
                pending.append((kind, first, i + 1))
                i += 1
                continue
            end = next(j for j in range(i + 1, len(lines)) if lines[j].strip() == "-->")
            body = "\n".join(lines[i + 1:end]) + "\n"
            pending.append((kind, first if kind == "not-tested" else body, i + 1))
            i = end + 1
            continue
        if line.strip() and pending:
            raise AssertionError(f"README.md:{pending[0][2]}: a {pending[0][0]} comment is not "
                                 "right before a fenced block")
        i += 1
    return found


def console_commands(code: str) -> str:
    """The commands of a console transcript: the lines after ``$ `` (and their ``\\``
    continuations); the rest is output."""
    commands, continuing = [], False
    for line in code.splitlines():
        if continuing or line.startswith("$ "):
            command = line if continuing else line[2:]
            commands.append(command)
            continuing = command.rstrip().endswith("\\")
    return "\n".join(commands) + "\n"


def run_python(block: Block, namespace: dict[str, Any]) -> None:
    for setup in block.setup:
        exec(compile(textwrap.dedent(setup), f"{README} (test-setup before line {block.line})",
                     "exec"), namespace)
    # Padded so that a traceback names the README's own line numbers.
    exec(compile("\n" * (block.line - 1) + block.code, str(README), "exec"), namespace)


def run_shell(block: Block, cwd: Path) -> None:
    code = console_commands(block.code) if block.language == "console" else block.code
    script = "".join(textwrap.dedent(setup) for setup in block.setup) + code
    done = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", script], cwd=cwd, text=True,
                          capture_output=True, timeout=300)
    if done.returncode != 0:
        pytest.fail(f"README.md:{block.line}: the {block.language} block exited with "
                    f"{done.returncode}\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}")


@pytest.fixture
def readme_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty directory as the working directory, ``lineage`` on PATH, and no settings
    from the environment this test runs in."""
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith(("LINEAGE_", "OTEL_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("COLUMNS", "200")
    return tmp_path


def test_every_python_and_shell_example_in_the_readme_runs(
        readme_directory: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import lineage

    found = blocks(README.read_text())
    namespace: dict[str, Any] = {"__name__": "__readme__"}
    ran = 0
    try:
        for block in found:
            if not block.runs:
                continue
            if block.language in PYTHON:
                run_python(block, namespace)
            else:
                run_shell(block, readme_directory)
            ran += 1
    finally:
        for value in namespace.values():
            if isinstance(value, lineage.Tracker):
                value.close()
    skipped = [block for block in found if block.skip is not None]
    assert ran >= 5 and all(block.skip for block in skipped)  # a skip always says why
    with capsys.disabled():
        sys.stdout.write(f"\nREADME.md: {ran} examples ran, {len(skipped)} not tested: "
                         + "; ".join(f"line {b.line} ({b.skip})" for b in skipped) + "\n")


def test_the_quick_start_runs_as_written_and_records_its_run(readme_directory: Path) -> None:
    """The quick start alone, as a new user pastes it into an empty directory."""
    import lineage

    [quick_start] = [block for block in blocks(README.read_text().split("## Python quick start", 1)[1])
                     if block.language == "python"][:1]
    assert not quick_start.setup and quick_start.skip is None  # nothing hidden, nothing skipped
    exec(compile(quick_start.code, str(README), "exec"), {"__name__": "__readme__"})
    with lineage.Tracker() as tracker:
        [run] = tracker.runs()
        assert (run.name, run.job_status, run.steps) == ("sft-demo", "completed", 1000)
        assert [a.type for a in tracker.artifacts()] == ["dataset", "checkpoint"]


def test_directives_attach_to_the_block_that_follows() -> None:
    text = textwrap.dedent("""\
        intro
        <!-- not-tested: needs docker -->

        ```sh
        docker compose up
        ```
        <!-- test-setup: a trainer
        trainer = object()
        -->
        ```python
        print(trainer)
        ```
        ```console
        $ lineage runs \\
            --json
        [ ]
        ```
        ```sql
        SELECT 1;
        ```
        """)
    docker, python, console, sql = blocks(text)
    assert (docker.language, docker.skip, docker.line, docker.runs) == ("sh", "needs docker", 5, False)
    assert (python.setup, python.skip, python.code, python.runs) == (
        ["trainer = object()\n"], None, "print(trainer)\n", True)
    assert console_commands(console.code) == "lineage runs \\\n    --json\n"
    assert not sql.runs
    with pytest.raises(AssertionError, match="not right before a fenced block"):
        blocks("<!-- not-tested: typo -->\nsome prose\n```sh\nrm -rf /\n```\n")
