"""ruff and mypy run with the tests, so CI enforces them (STYLE habit 15)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *command], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)


def test_ruff_is_clean() -> None:
    result = run("ruff", "check", "lineage", "adapters", "projections", "tests", "bench")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_is_clean_on_the_package() -> None:
    result = run("mypy", "lineage", "adapters", "projections")
    assert result.returncode == 0, result.stdout + result.stderr
