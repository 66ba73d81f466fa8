"""Dependencies point inward (STYLE habit 1): core ``lineage`` modules import no SQLAlchemy,
httpx, FastAPI, OpenTelemetry or database driver, and never the adapters or projections. Only
the composition root (``bootstrap*.py``), the command line and the demo wire adapters in. The import
graph of the whole package (``TYPE_CHECKING`` imports included) has no cycle, and no helper
imports the tracker (DESIGN §10)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WIRING = ("lineage/bootstrap", "lineage/cli/", "lineage/demo/")  # bootstrap*.py: the root
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
    return [p for p in (ROOT / "lineage").rglob("*.py")
            if not str(p.relative_to(ROOT)).startswith(WIRING)]


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
    assert "lineage.adapters.database" in imported_modules(ROOT / "lineage" / "bootstrap.py")


PACKAGES = {"lineage": ROOT / "lineage", "lineage.adapters": ROOT / "adapters",
            "lineage.projections": ROOT / "projections"}


def module_files() -> dict[str, Path]:
    """Every module of the installed package by dotted name (packages as their __init__)."""
    found = {}
    for package, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            name = ".".join([package, *parts])
            if not (package == "lineage" and parts and parts[0] in ("adapters", "projections")):
                found[name] = path
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports (at any depth, TYPE_CHECKING included);
    ``from package import module`` counts as importing the module."""
    files = module_files()
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets.add(node.module)
                targets.update(f"{node.module}.{alias.name}" for alias in node.names)
        graph[name] = {t for t in targets if t in files and t != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def test_the_import_graph_has_no_cycle() -> None:
    graph = import_graph()
    assert "lineage.application.tracker" in graph and len(graph) > 60
    assert cycles(graph) == []


def test_the_cycle_check_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_helper_imports_the_tracker() -> None:
    tracker_modules = {"lineage.application.tracker", "lineage.api", "lineage"}
    graph = import_graph()
    helpers = [name for name in graph if name.startswith("lineage.application.")
               and name != "lineage.application.tracker"]
    assert {h: sorted(graph[h] & tracker_modules) for h in helpers if graph[h] & tracker_modules} == {}


def test_numpy_and_safetensors_are_imported_only_by_the_demo() -> None:
    """... and by the framework integrations (optional extras, never imported by lineage)."""
    demo, integrations = ROOT / "lineage" / "demo", ROOT / "lineage" / "integrations"
    offenders = sorted(
        str(path.relative_to(ROOT))
        for folder in ("lineage", "adapters", "projections")
        for path in (ROOT / folder).rglob("*.py")
        if not path.is_relative_to(demo) and not path.is_relative_to(integrations) and any(
            name.split(".")[0] in ("numpy", "safetensors") for name in imported_modules(path))
    )
    assert offenders == []
    assert "safetensors.numpy" in imported_modules(demo / "scenario.py")


def test_no_module_is_over_400_lines() -> None:
    """A module past 400 lines holds more than one role: split it (issue 8's house rule)."""
    sizes = {str(path.relative_to(ROOT)): len(path.read_text().splitlines())
             for folder in ("lineage", "adapters", "projections")
             for path in (ROOT / folder).rglob("*.py")}
    assert {name: size for name, size in sizes.items() if size > 400} == {}
