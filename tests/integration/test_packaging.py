"""The wheel installs exactly one top-level import package, ``lineage`` (DESIGN §2)."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_wheel_has_one_top_level_package_with_adapters_and_projections_inside(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "-q", "-w", str(tmp_path)],
                   check=True, capture_output=True, timeout=600)
    [wheel] = tmp_path.glob("lineage-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert top_level == {"lineage"}
    assert "lineage/adapters/eventstore.py" in names
    assert "lineage/projections/__init__.py" in names
    assert "lineage/domain/run.py" in names
    assert not any(name.startswith(("adapters/", "projections/", "tests/", "bench/")) for name in names)
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "lineage = lineage.cli.main:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
