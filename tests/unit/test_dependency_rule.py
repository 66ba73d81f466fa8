"""Dependencies point inward (STYLE habit 1): core ``lineage`` modules import no SQLAlchemy,
httpx, FastAPI, OpenTelemetry or database driver, and never the adapters or projections. Only
the composition root (bootstrap) and the command line wire adapters in."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WIRING = {"bootstrap.py", "cli.py", "cli_format.py", "demo.py"}
FORBIDDEN = ("sqlalchemy", "httpx", "fastapi", "opentelemetry", "psycopg", "sqlite3",
             "lineage.adapters", "lineage.projections", "adapters", "projections")


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def core_modules() -> list[Path]:
    return [p for p in (ROOT / "lineage").rglob("*.py") if p.name not in WIRING]


def test_core_modules_import_no_infrastructure() -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(
            name for name in imported_modules(path)
            if any(name == bad or name.startswith(bad + ".") for bad in FORBIDDEN)
        )
        for path in core_modules()
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_rule_is_checked_on_real_files() -> None:
    assert len(core_modules()) > 10
    assert "sqlalchemy.engine" in imported_modules(ROOT / "lineage" / "bootstrap.py")


def test_numpy_and_safetensors_are_imported_only_by_the_demo() -> None:
    demo = ROOT / "lineage" / "demo"
    offenders = sorted(
        str(path.relative_to(ROOT))
        for folder in ("lineage", "adapters", "projections")
        for path in (ROOT / folder).rglob("*.py")
        if not path.is_relative_to(demo) and any(
            name.split(".")[0] in ("numpy", "safetensors") for name in imported_modules(path))
    )
    assert offenders == []
    assert "safetensors.numpy" in imported_modules(demo / "scenario.py")
