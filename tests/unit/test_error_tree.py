"""The drawing at the top of lineage/errors.py covers every exception class of the project, each
under the class it derives from (STYLE habit 6); hostile inputs to the public API raise errors of
that tree, naming the field."""

from __future__ import annotations

import ast
import builtins
import re
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import lineage
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


# -- hostile inputs: every error the public API raises is ours, and names the field ---------------

HOSTILE_CONSTRUCTORS: list[tuple[str, Callable[[Path], Any], type[Exception], str]] = [
    ("a number as url", lambda tmp: lineage.Tracker(12345), lineage.ValidationError,
     "database_url"),
    ("bytes as url", lambda tmp: lineage.Tracker(b"x.db"), lineage.ValidationError,
     "database_url"),
    ("a symlink loop", lambda tmp: lineage.Tracker(str(_loop(tmp))), lineage.ValidationError,
     "database_url"),
    ("a text file", lambda tmp: lineage.Tracker(str(_text_file(tmp))), lineage.StoreError,
     "not a lineage database"),
    ("a directory", lambda tmp: lineage.Tracker(str(tmp)), lineage.StoreError,
     "is a directory"),
    ("a missing read-only file", lambda tmp: lineage.Tracker(f"sqlite:///{tmp}/none.db?mode=ro"),
     lineage.StoreError, "no lineage database"),
    ("an unknown database", lambda tmp: lineage.Tracker("mysql://host/db"),
     lineage.ConfigurationError, "mysql"),
    ("a bad setting", lambda tmp: lineage.Tracker(str(tmp / "a.db"), queue_size="many"),
     lineage.ConfigurationError, "queue_size"),
    ("not a store", lambda tmp: lineage.Tracker(store=5), lineage.ValidationError, "store"),
]


def _loop(tmp: Path) -> Path:
    (tmp / "loop.db").symlink_to(tmp / "loop.db")
    return tmp / "loop.db"


def _text_file(tmp: Path) -> Path:
    (tmp / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\n" * 100)
    return tmp / "passwd"


@pytest.mark.parametrize(("case", "make", "error", "names"), HOSTILE_CONSTRUCTORS,
                         ids=[case[0] for case in HOSTILE_CONSTRUCTORS])
def test_hostile_constructor_inputs_raise_our_errors_naming_the_field(
        tmp_path: Path, case: str, make: Callable[[Path], Any], error: type[Exception],
        names: str) -> None:
    with pytest.raises(error) as raised:
        make(tmp_path)
    assert names in str(raised.value)
    if isinstance(raised.value, lineage.ValidationError):
        assert raised.value.field == names


HOSTILE_QUERIES: list[tuple[str, Callable[[Any, Path], Any], str]] = [
    ("run by number", lambda t, tmp: t.run(12345), "run"),
    ("trace of an object", lambda t, tmp: t.trace(object()), "run"),
    ("trace format", lambda t, tmp: t.trace(uuid.uuid4(), format="xml"), "format"),
    ("resolve a number", lambda t, tmp: t.resolve(5, "run"), "run"),
    ("resolve nothing", lambda t, tmp: t.resolve("", "artifact"), "artifact"),
    ("artifacts since garbage", lambda t, tmp: t.artifacts(since="yesterday"), "since"),
    ("artifacts limit", lambda t, tmp: t.artifacts(limit=-1), "limit"),
    ("artifacts as_of a list", lambda t, tmp: t.artifacts(as_of=[]), "as_of"),
    ("audit limit huge", lambda t, tmp: t.audit(limit=10**30), "limit"),
    ("lineage depth", lambda t, tmp: t.lineage(uuid.uuid4(), depth=-1), "depth"),
    ("register a number", lambda t, tmp: t.register_artifact(123, type="dataset"), "uri"),
    ("register a symlink loop",
     lambda t, tmp: t.register_artifact(_loop(tmp), type="dataset"), "uri"),
]


@pytest.mark.parametrize(("case", "call", "field"), HOSTILE_QUERIES,
                         ids=[case[0] for case in HOSTILE_QUERIES])
def test_hostile_query_inputs_raise_validation_errors_naming_the_field(
        tmp_path: Path, case: str, call: Callable[[Any, Path], Any], field: str) -> None:
    with lineage.Tracker(str(tmp_path / "q.db")) as tracker, \
            pytest.raises(lineage.ValidationError) as raised:
        call(tracker, tmp_path)
    assert raised.value.field == field
    assert str(raised.value).startswith(f"{field}: ")
