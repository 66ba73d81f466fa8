"""The CLI's JSON writer (``lineage.cli.jsonout``) writes, byte for byte, what
``json.dumps(jsonable(value), indent=2, allow_nan=False, ensure_ascii=False)`` writes, whole or
in pieces, with one-pass iterators where lists may be streamed."""

from __future__ import annotations

import enum
import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import Any
from uuid import UUID

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lineage.cli.jsonout import dumps, encode, iterencode, jsonable


def reference(value: Any) -> str:
    return json.dumps(jsonable(value), indent=2, allow_nan=False, ensure_ascii=False)


class Level(enum.IntEnum):
    HIGH = 3


class Name(str):
    pass


@dataclass
class Point:
    x: float
    label: str


class Scalar:  # like a NumPy scalar: only __float__
    def __float__(self) -> float:
        return 0.25


VALUES: list[Any] = [
    None, True, False, 0, -7, 2**70, 1.5, -0.0, 1e300, 5e-324, math.nan, math.inf, -math.inf,
    "", "plain", 'quote " backslash \\ tab \t newline \n nul \x00 bell \x07', "ünïcode ☃ 🎉",
    Name("sub"), Level.HIGH, UUID(int=7), PurePosixPath("/a/b"),
    datetime(2025, 1, 2, 3, 4, 5, 6, tzinfo=UTC), Point(math.nan, "p"), Scalar(), b"bytes",
    [], {}, [[]], [{}], {"a": {}}, {"a": []}, (1, "two", None), {1: "int key", None: "none", 2.5: "float"},
    {"flat": 1, "f": 2.5, "s": "x", "b": True, "n": None},
    {"nan inside": {"x": math.nan, "y": 1.0}}, [1, [2, [3, [4, [5, [6]]]]]],
    {"trace": {"id": "t", "attributes": {"job": {"adapter": {"rank": 8}}, "tags": {}}},
     "spans": [{"id": "s", "metrics": {"loss": 0.5, "acc": math.inf}, "attributes": {}}],
     "edges": [], "metadata": {"lost_steps": None, "spans": 1}},
]


@pytest.mark.parametrize("value", VALUES, ids=range(len(VALUES)))
def test_same_bytes_as_the_standard_library(value: Any) -> None:
    expected = reference(value)
    assert dumps(value) == expected
    assert encode(value) == expected
    assert "".join(iterencode({"outer": [value]})) == reference({"outer": [value]})


@pytest.mark.parametrize("items", [[], [1], [{"a": 1}, {"b": [2, {}]}, "x"]])
def test_one_pass_iterators_where_lists_are_streamed(items: list[Any]) -> None:
    expected = reference({"spans": items, "after": [iter(items)]})
    assert dumps({"spans": iter(items), "after": [iter(items)]}) == expected
    assert dumps(x for x in items) == reference(items)


def test_it_writes_in_pieces() -> None:
    pieces = list(iterencode({"spans": ({"i": i} for i in range(1000))}))
    assert len(pieces) > 1000


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=5), children, max_size=4),
    max_leaves=30)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_any_json_value(value: Any) -> None:
    assert dumps(value) == reference(value)
    assert "".join(iterencode([value, {"k": value}])) == reference([value, {"k": value}])
