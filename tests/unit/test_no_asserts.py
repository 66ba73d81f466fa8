"""Checks survive ``python -O`` (STYLE habit 18): no ``assert`` statement in the packages; the
checks that were asserts raise our errors."""

from __future__ import annotations

import ast
from datetime import UTC, datetime
from pathlib import Path

import pytest

from lineage.application.unit_of_work import AggregateCache, UnitOfWork
from lineage.errors import InvariantError, ValidationError
from lineage.projections.edges import add_edge

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("lineage", "adapters", "projections")


def package_files() -> list[Path]:
    return [path for package in PACKAGES for path in sorted((ROOT / package).rglob("*.py"))]


def test_no_assert_statement_in_the_packages() -> None:
    found = [f"{path.relative_to(ROOT)}:{node.lineno}" for path in package_files()
             for node in ast.walk(ast.parse(path.read_text(), str(path)))
             if isinstance(node, ast.Assert)]
    assert found == []


def test_the_walk_covers_every_package() -> None:
    files = package_files()
    assert len(files) > 50
    assert {path.relative_to(ROOT).parts[0] for path in files} == set(PACKAGES)


def test_envelope_outside_a_command_is_an_invariant_error() -> None:
    uow = UnitOfWork(None, None, AggregateCache(), datetime.now(UTC))  # type: ignore[arg-type]
    with pytest.raises(InvariantError, match="only valid inside a command handler"):
        uow.envelope()


@pytest.mark.parametrize("relationship, upstream, field", [
    ("parent_of", "source", "relationship"), ("produces", "left", "upstream")])
def test_an_edge_lineageir_does_not_have_is_refused(relationship: str, upstream: str,
                                                    field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        add_edge(None, 1, None, ("run", "a"), ("artifact", "b"),  # type: ignore[arg-type]
                 relationship, upstream=upstream)
    assert caught.value.field == field
