"""The projection runner's single-instance file lock, with fcntl and without it (Windows).

Without fcntl the runner uses ``msvcrt.locking``; that branch runs here in a subprocess where
``import fcntl`` fails and ``msvcrt`` is a stand-in with msvcrt's interface (on this POSIX
machine it locks with flock, taken before fcntl is blocked)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from lineage.projections.runner import FileLock

CHILD = textwrap.dedent("""
    import json, sys, types
    import fcntl as real

    calls = []

    def locking(fd, mode, nbytes):
        calls.append((mode, nbytes))
        real.flock(fd, real.LOCK_EX | real.LOCK_NB if mode == 1 else real.LOCK_UN)

    sys.modules["fcntl"] = None  # any "import fcntl" now raises ImportError
    from lineage.projections.runner import FileLock  # imports without fcntl (and msvcrt)

    # only now: the standard library takes a present msvcrt to mean Windows
    sys.modules["msvcrt"] = types.SimpleNamespace(LK_UNLCK=0, LK_NBLCK=1, locking=locking)
    first, second = FileLock(sys.argv[1]), FileLock(sys.argv[1])
    held = [first.acquire(), second.acquire()]
    first.release()
    held += [second.acquire()]
    second.release()
    print(json.dumps({"held": held, "calls": calls}))
""")


def test_one_holder_at_a_time_and_free_again_after_release(tmp_path: Path) -> None:
    first, second = FileLock(str(tmp_path / "x.lock")), FileLock(str(tmp_path / "x.lock"))

    assert first.acquire()
    assert not second.acquire()
    first.release()
    assert second.acquire()
    second.release()


def test_without_fcntl_the_lock_is_taken_with_msvcrt(tmp_path: Path) -> None:
    child = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path / "x.lock")],
                           capture_output=True, text=True, timeout=60, check=False)

    assert child.returncode == 0, child.stderr
    result = json.loads(child.stdout)
    assert result["held"] == [True, False, True]
    # lock, refused lock, unlock, lock, unlock: always the first byte, never blocking
    assert result["calls"] == [[1, 1], [1, 1], [0, 1], [1, 1], [0, 1]]
