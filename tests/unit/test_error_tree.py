"""The drawing at the top of lineage/errors.py covers every exception class of the project, each
under the class it derives from (STYLE habit 6)."""

from __future__ import annotations

import ast
import builtins
import re
from pathlib import Path

import lineage.errors

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("lineage", "adapters", "projections")
NODE = re.compile(r"^    ([ │├└─]*)([A-Z]\w*)\b")


def drawn_parents() -> dict[str, str]:
    """Each class named in the drawings, with the class drawn above it (``Exception`` for the
    root of a drawing, which derives from it)."""
    parents: dict[str, str] = {}
    stack: list[tuple[int, str]] = []  # (column, name) of the open branches
    for line in (lineage.errors.__doc__ or "").splitlines():
        if not line.startswith("    "):
            stack = []  # a paragraph between drawings
        match = NODE.match(line)
        if match is None:
            continue  # not a drawing, or a node's description running on
        column = len(match.group(1))
        while stack and stack[-1][0] >= column:
            stack.pop()
        parents[match.group(2)] = stack[-1][1] if stack else "Exception"
        stack.append((column, match.group(2)))
    parents.pop("Exception", None)
    return parents


def _base_name(node: ast.expr) -> str:
    return node.attr if isinstance(node, ast.Attribute) else getattr(node, "id", "")


def exception_classes() -> dict[str, str]:
    """Every class in the packages that derives from an exception: name -> its first base."""
    bases: dict[str, list[str]] = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.ClassDef) and node.bases:
                    bases[node.name] = [_base_name(base) for base in node.bases]

    def is_exception(name: str, seen: frozenset[str] = frozenset()) -> bool:
        builtin = getattr(builtins, name, None)
        if isinstance(builtin, type):
            return issubclass(builtin, BaseException)
        return name not in seen and any(is_exception(base, seen | {name})
                                        for base in bases.get(name, ()))

    return {name: names[0] for name, names in bases.items() if is_exception(name)}


def test_every_exception_class_is_drawn_under_its_base_and_nothing_else_is() -> None:
    assert drawn_parents() == exception_classes()


def test_every_public_error_is_a_lineage_error() -> None:
    drawn = drawn_parents()

    def ancestors(name: str) -> list[str]:
        return [] if name not in drawn else [drawn[name], *ancestors(drawn[name])]

    internal = {name for name in drawn if "LineageError" not in ancestors(name)}
    assert internal == {"LineageError", "DuplicateEventError", "VersionConflictError", "Retryable"}
    public = [value for value in vars(lineage.errors).values()
              if isinstance(value, type) and issubclass(value, BaseException)]
    assert len(public) > 15 and all(issubclass(cls, lineage.LineageError) for cls in public)


def test_the_parser_reads_nesting_from_the_columns() -> None:
    drawn = drawn_parents()
    assert drawn["CollectorUnavailableError"] == "ExportError"
    assert drawn["ExportError"] == "LineageError"
    assert drawn["Retryable"] == "Exception"
    assert exception_classes()["ResumeCommandError"] == "LineageError"
