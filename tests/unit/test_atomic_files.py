"""The temporary files of killed writes: ``write_atomic``'s first write into a folder removes
those a dead process of this machine left, and nothing else (a live process's write in
flight, another machine's, a file that only looks alike)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lineage.integrations import files
from lineage.integrations.files import sweep_temporary_files, write_atomic

pytestmark = pytest.mark.skipif(os.name != "posix", reason="the sweep asks POSIX about pids")


def dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    return int(done.stdout)


def test_the_first_write_into_a_folder_removes_what_dead_writers_left(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    dead, other_host = dead_pid(), "0" * 8 if files._HOST != "0" * 8 else "1" * 8
    left = {
        "dead": tmp_path / f".ckpt-1.safetensors.{files._HOST}-{dead}.k3j_x9a0.tmp",
        "live": tmp_path / f".ckpt-2.safetensors.{files._HOST}-{os.getpid()}.abcdefgh.tmp",
        "other machine": tmp_path / f".ckpt-3.safetensors.{other_host}-{dead}.abcdefgh.tmp",
        "not ours": tmp_path / ".notes.tmp",
        "plain": tmp_path / f"ckpt-4.safetensors.{files._HOST}-{dead}.abcdefgh.tmp",
    }
    for path in left.values():
        path.write_bytes(b"half a checkpoint")
    with caplog.at_level(logging.INFO, logger="lineage.integrations.files"):
        write_atomic(tmp_path / "ckpt-5.safetensors", [b"whole"])
    assert not left["dead"].exists()
    assert all(path.exists() for key, path in left.items() if key != "dead")
    assert left["dead"].name in caplog.text
    assert (tmp_path / "ckpt-5.safetensors").read_bytes() == b"whole"
    # once a folder a process: a later dead writer's file waits for the next process
    later = tmp_path / f".ckpt-6.safetensors.{files._HOST}-{dead}.zzzzzzzz.tmp"
    later.write_bytes(b"half")
    write_atomic(tmp_path / "ckpt-7.safetensors", [b"whole"])
    assert later.exists()
    assert sweep_temporary_files(tmp_path) == [later] and not later.exists()


def test_a_write_in_flight_carries_its_machine_and_process(tmp_path: Path) -> None:
    def chunks():
        (temporary,) = tmp_path.glob(".*.tmp")
        assert files._TEMPORARY.match(temporary.name)["pid"] == str(os.getpid())
        assert sweep_temporary_files(tmp_path) == []  # alive: kept
        yield b"bytes"

    write_atomic(tmp_path / "target", chunks())
    assert not list(tmp_path.glob(".*.tmp")) and (tmp_path / "target").read_bytes() == b"bytes"


def test_a_folder_that_cannot_be_listed_is_left_alone(tmp_path: Path) -> None:
    assert sweep_temporary_files(tmp_path / "missing") == []


def test_a_file_that_cannot_be_removed_is_logged_and_the_write_goes_on(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """A read-only or foreign folder (as root, permissions never refuse: the refusal is made
    here): the sweep warns and the write itself still happens."""
    stale = tmp_path / f".ckpt.safetensors.{files._HOST}-{dead_pid()}.abcdefgh.tmp"
    stale.write_bytes(b"half")
    unlink = os.unlink

    def refuse(path: str, *args: object, **kwargs: object) -> None:
        if str(path) == str(stale):
            raise PermissionError(13, "Permission denied", str(path))
        unlink(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "unlink", refuse)
    with caplog.at_level(logging.WARNING, logger="lineage.integrations.files"):
        write_atomic(tmp_path / "target", [b"bytes"])
    assert stale.exists() and "cannot remove the temporary file" in caplog.text
    assert (tmp_path / "target").read_bytes() == b"bytes"
