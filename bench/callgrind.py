"""Instruction counts of marked segments of a Python program, under valgrind's callgrind.

Wall-clock and even CPU time move with the machine's load; the number of instructions a
process executes does not (the same work runs the same instructions, whatever else runs).
A benchmark runs itself under ``valgrind --tool=callgrind --dump-before=getsid`` and calls
``mark(label)`` at the end of each segment it wants counted: ``os.getsid`` enters libc's
``getsid``, callgrind dumps the counts since the previous dump (all threads of the process:
the tracker's writer and the save thread too) and starts again from zero, so each dump file is
one segment. Nothing else in Python or torch calls ``getsid``; ``parse`` checks that the dumps
match the marks. Under callgrind a program runs 20-100 times slower: keep segments short.

Imports (torch, SQLAlchemy) would take most of that time, so the program starts with
instrumentation off (``--instr-atstart=no``, valgrind's plain JIT: several times faster) and
the first ``mark`` switches it on with callgrind's client request
``CALLGRIND_START_INSTRUMENTATION``, through a tiny C helper compiled here (needs a C compiler
and valgrind's headers; without them everything is instrumented from the start).
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

MARKER_FUNCTION = "getsid"
_LABELS = "labels.json"


def available() -> str | None:
    """Why callgrind cannot be used here, or None when it can."""
    return None if shutil.which("valgrind") else "valgrind is not installed"


def run(script: Path, args: list[str], folder: Path, timeout_s: float) -> dict[str, list[int]]:
    """Run ``python script *args`` under callgrind, its dumps in ``folder``; returns the
    instruction counts of each label, in the order marked (a label marked twice has two)."""
    helper = _compile_helper(folder)
    command = ["valgrind", "--tool=callgrind", f"--dump-before={MARKER_FUNCTION}",
               f"--callgrind-out-file={folder}/cg.%p",
               *(["--instr-atstart=no"] if helper else []),
               sys.executable, str(script), *args]
    env = {**os.environ, "LINEAGE_CALLGRIND_DIR": str(folder),
           "LINEAGE_CALLGRIND_HELPER": helper or ""}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout_s,
                          check=False)
    if done.returncode != 0:
        raise RuntimeError(f"callgrind run failed ({done.returncode}): {done.stderr[-2000:]}")
    return parse(folder)


def mark(label: str) -> None:
    """End the segment called ``label`` (a no-op outside ``run``)."""
    folder = os.environ.get("LINEAGE_CALLGRIND_DIR")
    if not folder:
        return
    labels = Path(folder) / _LABELS
    seen = json.loads(labels.read_text()) if labels.exists() else []
    helper = os.environ.get("LINEAGE_CALLGRIND_HELPER")
    if not seen and helper:  # the first mark: instrument from here on
        ctypes.CDLL(helper).lineage_start_instrumentation()
    labels.write_text(json.dumps([*seen, label]))
    os.getsid(0)  # callgrind dumps here


def _compile_helper(folder: Path) -> str | None:
    """A shared library whose one function starts callgrind's instrumentation, or None."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None or not Path("/usr/include/valgrind/callgrind.h").exists():
        return None
    source, library = folder / "start.c", folder / "start.so"
    source.write_text("#include <valgrind/callgrind.h>\n"
                      "void lineage_start_instrumentation(void) "
                      "{ CALLGRIND_START_INSTRUMENTATION; }\n")
    done = subprocess.run([compiler, "-shared", "-fPIC", "-O1", "-o", str(library), str(source)],
                          capture_output=True, check=False)
    return str(library) if done.returncode == 0 else None


def parse(folder: Path) -> dict[str, list[int]]:
    labels = json.loads((folder / _LABELS).read_text())
    dumps = sorted((int(match.group(1)), path) for path in folder.iterdir()
                   if (match := re.fullmatch(r"cg\.\d+\.(\d+)", path.name)))
    if len(dumps) != len(labels):
        raise RuntimeError(f"{len(dumps)} callgrind dumps for {len(labels)} marks: something "
                           f"else called {MARKER_FUNCTION}")
    counts: dict[str, list[int]] = {}
    for label, (_, path) in zip(labels, dumps, strict=True):
        total = re.search(r"^summary: (\d+)", path.read_text(errors="replace"), re.MULTILINE)
        if total is None:
            raise RuntimeError(f"no summary line in {path}")
        counts.setdefault(label, []).append(int(total.group(1)))
    return counts
