"""The wheel installs exactly one top-level import package, ``lineage`` (DESIGN §2), and works
installed with ``pip``, also from a script started in the source checkout (where ``./lineage/``
comes first on ``sys.path`` and its ``adapters``/``projections`` are siblings, not subpackages:
``lineage._source_tree`` maps them)."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
IMPORTS = ("import lineage, lineage.adapters.database, lineage.adapters.otlp.encoder, "
           "lineage.projections.queries; print(lineage.__file__); print(lineage.adapters.__file__)")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel ``pip`` builds from the checkout (built once for this module)."""
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "-q", "-w", str(out)],
                   check=True, capture_output=True, timeout=600)
    [built] = out.glob("lineage-*.whl")
    return built


@pytest.mark.slow
def test_wheel_has_one_top_level_package_with_adapters_and_projections_inside(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert top_level == {"lineage"}
    assert "lineage/adapters/eventstore.py" in names
    assert "lineage/projections/__init__.py" in names
    assert "lineage/domain/run.py" in names
    assert not any(name.startswith(("adapters/", "projections/", "tests/", "bench/")) for name in names)
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "lineage = lineage.cli.main:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


@pytest.mark.slow
def test_pip_installed_lineage_imports_in_the_checkout_and_elsewhere(wheel: Path, tmp_path: Path) -> None:
    """A fresh virtual environment (its dependencies borrowed from ours through a .pth file,
    so nothing is downloaded) with the wheel installed by pip, as ``pip install .`` does."""
    env = tmp_path / "venv"
    venv.create(env, with_pip=False)
    python = env / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    (Path(purelib) / "borrowed-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
                    "--no-index", "-q", str(wheel)], check=True, capture_output=True, timeout=600)

    elsewhere = subprocess.run([str(python), "-c", IMPORTS], cwd=tmp_path, capture_output=True, text=True)
    assert elsewhere.returncode == 0, elsewhere.stderr
    assert elsewhere.stdout.splitlines() == [f"{purelib}/lineage/__init__.py",
                                             f"{purelib}/lineage/adapters/__init__.py"]

    in_checkout = subprocess.run([str(python), "-c", IMPORTS], cwd=ROOT, capture_output=True, text=True)
    assert in_checkout.returncode == 0, in_checkout.stderr  # it used to fail on lineage.adapters
    assert in_checkout.stdout.splitlines() == [f"{ROOT}/lineage/__init__.py", f"{ROOT}/adapters/__init__.py"]


@pytest.mark.slow
def test_wheel_holds_the_web_pages_and_their_vendored_libraries(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    static = ROOT / "adapters" / "server" / "static"
    expected = {f"lineage/adapters/server/static/{p.relative_to(static)}"
                for p in static.rglob("*") if p.is_file()}
    assert "lineage/adapters/server/static/vendor/uPlot.LICENSE" in expected
    assert expected <= names, sorted(expected - names)
