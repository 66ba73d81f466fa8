"""Hypothesis strategies for hostile inputs to the public API (used by test_api_fuzz).

Each strategy mixes values a user could plausibly pass with ones that broke something once:
huge and empty strings, NUL and other control characters, unpaired surrogates, numbers no
column holds, NaN and infinities, bools and strings where numbers belong, odd times, uris that
name nothing.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import strategies as st

HUGE_TEXT = "n" * 10_000_000  # 10 MB: what a tester once logged as a tag and a metric name
LONG_TEXT = "l" * 300  # just over the name limit
# Any code point, unpaired surrogates included (st.text() leaves them out by default).
ANY_CHAR = st.characters(codec=None, exclude_categories=())

good_names = st.sampled_from(["loss", "lr", "val/loss", "grad_norm", "Ünïcødé ✓", "名前", "a b"])
bad_names = st.sampled_from(["", " ", "\t\n", "a\x00b", "\x1b[31mred", "\ud800", "x\udfff",
                             "\x7f", LONG_TEXT, HUGE_TEXT, 7, None])
# Mostly names a user would pass, so that runs start and calls on them go deeper.
names = st.one_of(good_names, good_names, st.text(min_size=1, max_size=12), bad_names,
                  st.text(ANY_CHAR, max_size=6))

free_text = st.one_of(names, st.just("line one\nline two\ttab"), st.just("m" * 9000))

numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**64), max_value=2**64),
    st.sampled_from([2**63 - 1, -(2**63), 2**63, 10**5000, 0, -0.0, 5e-324, 1.7e308]),
    st.booleans(),
    st.sampled_from(["1.0", "fast", None, [1.0], {"v": 1}, b"1", complex(1, 2)]),
)

steps = st.one_of(
    st.integers(min_value=0, max_value=50),
    st.integers(min_value=-3, max_value=2**64),
    st.sampled_from([2**63 - 1, 1.5, "7", True, None, math.nan]),
)


def _offset(minutes: int) -> timezone:
    return timezone(timedelta(minutes=minutes))


times = st.one_of(
    st.none(),
    st.none(),
    st.datetimes(min_value=datetime(1960, 1, 1), max_value=datetime(2100, 1, 1)),
    st.builds(lambda moment, minutes: moment.replace(tzinfo=_offset(minutes)),
              st.datetimes(), st.integers(-1439, 1439)),
    st.sampled_from([datetime.min, datetime.max, datetime(1, 1, 1, tzinfo=_offset(60)),
                     datetime(9999, 12, 31, 23, 59, tzinfo=_offset(-60)),
                     datetime(2026, 1, 1, tzinfo=UTC)]),
    st.integers(min_value=-(10**20), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["2026-11-30T12:00:00Z", "2026-11-30T12:00:00+05:30", "1700000000",
                     "last tuesday", "", " " * 100 + "1700000000", "9" * 400, True, object()]),
)

metric_maps = st.one_of(
    st.none(),
    st.dictionaries(names, numbers, max_size=4),
    st.dictionaries(st.sampled_from(["loss", "lr", "acc"]), st.floats(), max_size=3),
    st.sampled_from([{3: 1.0}, [("loss", 1.0)], "loss", {f"m{i}": 1.0 for i in range(1100)}]),
)

tag_maps = st.one_of(
    st.none(),
    st.dictionaries(names, st.one_of(names, numbers, st.none()), max_size=3),
    st.lists(st.one_of(names, numbers), max_size=3),
    st.sampled_from([{f"t{i}": "v" for i in range(300)}, {"big": HUGE_TEXT}, "tag"]),
)

HEX64 = "ab" * 32
uris = st.one_of(
    st.sampled_from([
        "s3://", "s3://bucket", "s3://bucket/", "s3://bucket/key", "gs://b/k", "az://c/p",
        "tinker://", "tinker://session", "tinker://session/weights/1", "hf://", "hf://org/model",
        "hf://gpt2", "https://", "https://host", "https://host/a.bin", "http://[::1", "ftp://h/x",
        "", "   ", "a\x00b", "s3://b/\x00", "s3://b/\ud800", "x" * 5000, "file:///does/not/exist",
        "~no-such-user-xyz/file", "s3://b/" + "k" * 5000, "tinker:///path",
    ]),
    st.builds(lambda tail: f"s3://bucket/{tail}", st.text(max_size=10)),
    st.builds(lambda tail: f"tinker://run/{tail}", st.text(ANY_CHAR, max_size=5)),
    st.sampled_from([b"s3://b/k", 42, None]),
)

checksums = st.one_of(
    st.none(), st.none(),
    st.sampled_from([f"sha256:{HEX64}", HEX64, "md5:" + "0" * 32, "sha256:xyz", "md4:00",
                     "sha256:" + "A" * 64, 42, "", HUGE_TEXT]),
)

sizes = st.one_of(st.none(), st.integers(min_value=-2, max_value=2**64),
                  st.sampled_from([True, 1.5, "10"]))


def _deep(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(depth):
        value = {"d": value}
    return value


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.floats(), st.integers(), st.text(ANY_CHAR, max_size=5)),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4), children,
                                                                      max_size=3),
    max_leaves=8,
)
metadata = st.one_of(
    st.none(),
    st.dictionaries(st.text(max_size=6), json_values, max_size=4),
    st.sampled_from([{"x": "y" * 70_000}, {"o": object()}, _deep(5000), _deep(50), {1: "int key"},
                     {"nan": math.nan}, "not a mapping", {"s": "\ud800"}, {"nul": "a\x00b"}]),
)

job_specs = st.one_of(
    st.none(),
    st.fixed_dictionaries({}, optional={
        "model": names,
        "key": names,
        "learning": st.fixed_dictionaries({}, optional={
            "learning_rate": numbers, "batch_size": numbers, "epochs": numbers,
            "warmup_steps": numbers, "optimizer": names}),
        "adapter": st.fixed_dictionaries({}, optional={"rank": numbers, "alpha": numbers,
                                                       "dropout": numbers, "type": names}),
        "resources": st.fixed_dictionaries({}, optional={"gpus": numbers, "device": names}),
        "validation": st.fixed_dictionaries({}, optional={"every": numbers, "metric": names}),
        "datasets": st.one_of(st.lists(st.one_of(names, uris, metadata), max_size=3),
                              st.just("s3://b/k")),
        "checkpoint_policy": st.sampled_from([
            {"strategy": "steps", "save_every": 2, "keep_last": 2}, {"strategy": "all"},
            {"strategy": "steps", "save_every": 0}, {"strategy": "bogus"}, "steps"]),
        "tags": tag_maps,
        "metadata": metadata,
    }),
    st.sampled_from([{"modle": "typo"}, "job", {"learning": {"learning_rate": "fast"}},
                     {"resources": {"gpus": -1}}]),
)

event_ids = st.one_of(st.none(), st.none(), st.none(), st.uuids(),
                      st.sampled_from(["not-a-uuid", 42, HUGE_TEXT]))
