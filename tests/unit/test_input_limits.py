"""Every input of the public API is bounded: names, counts, durations, job spec fields, uris and
times. Each refusal is a ValidationError naming the field and the rule, before anything is
stored (the README's "Limits" table lists them)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

import lineage
from lineage.application import validation
from lineage.errors import ValidationError

HUGE = "n" * 10_000_000  # a tester logged a 10 MB tag and metric name; `lineage runs` printed 33 MB
LONG = "x" * 257
HUGE_FIELD = f"metrics[{validation.shown(HUGE)}]"  # the field names a cut-down repr
PLUS_ONE_HOUR = timezone(timedelta(hours=1))


@pytest.fixture
def tracker() -> Iterator[lineage.Tracker]:
    with lineage.Tracker("memory://") as tracker:
        yield tracker


def stored(tracker: lineage.Tracker) -> int:
    tracker.flush()
    return tracker.store.max_position() or 0


def refused(tracker: lineage.Tracker, action: Callable[[], Any], field: str, rule: str) -> None:
    before = stored(tracker)
    with pytest.raises(ValidationError) as error:
        action()
    assert (error.value.field, rule in error.value.rule) == (field, True), str(error.value)
    assert len(str(error.value)) < 500, "a refused 10 MB value must not make a 10 MB message"
    assert stored(tracker) == before, "nothing may be stored for a rejected input"


def deep(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth):
        value = {"d": value}
    return value


RUN_CASES: list[tuple[str, Callable[[Any, Any], Any], str, str]] = [
    ("huge metric name", lambda t, r: r.log_step(1, {HUGE: 1.0}), HUGE_FIELD, "at most 256"),
    ("empty metric name", lambda t, r: r.log_step(1, {"": 1.0}), "metrics['']", "empty"),
    ("blank metric name", lambda t, r: r.log_step(1, {"  ": 1.0}), "metrics['  ']", "whitespace"),
    ("NUL metric name", lambda t, r: r.log_step(1, {"a\x00": 1.0}), "metrics['a\\x00']", "control"),
    ("surrogate metric name", lambda t, r: r.log_step(1, {"\ud800": 1.0}), "metrics['\\ud800']",
     "surrogate"),
    ("too many metrics", lambda t, r: r.log_step(1, {f"m{i}": 1.0 for i in range(1025)}),
     "metrics", "limit is 1024"),
    ("negative duration", lambda t, r: r.log_step(1, {}, durations={"step_s": -1.0}),
     "durations['step_s']", ">= 0"),
    ("NaN duration", lambda t, r: r.log_step(1, {}, durations={"step_s": float("nan")}),
     "durations['step_s']", "finite"),
    ("infinite duration", lambda t, r: r.log_step(1, {}, durations={"step_s": float("inf")}),
     "durations['step_s']", "finite"),
    ("huge eval metric name", lambda t, r: r.log_eval(1, {HUGE: 1.0}).wait(),
     HUGE_FIELD, "at most 256"),
    ("split with a newline", lambda t, r: r.log_eval(1, {"v": 1.0}, split="a\nb"), "split",
     "control"),
    ("NUL in a failure message", lambda t, r: r.record_failure("E", "a\x00b"), "message",
     "control"),
    ("huge failure message", lambda t, r: r.record_failure("E", HUGE), "message", "at most 8192"),
    ("blank error type", lambda t, r: r.record_failure(" "), "error_type", "whitespace"),
    ("retryable not a bool", lambda t, r: r.record_failure("E", retryable="no"), "retryable",
     "true or false"),
    ("huge finish reason", lambda t, r: r.finish("failed", reason=HUGE), "reason", "at most 8192"),
    ("includes_optimizer not a bool",
     lambda t, r: r.save_checkpoint("s3://b/k", step=0, includes_optimizer="yes"),
     "includes_optimizer", "true or false"),
    ("huge input role", lambda t, r: r.use_input("0" * 32, role=HUGE), "role", "at most 64"),
    ("time before 1970", lambda t, r: r.log_step(1, {}, occurred_at=datetime(1960, 1, 1)),
     "occurred_at", "1970"),
    ("time past year 9999", lambda t, r: r.log_step(1, {}, occurred_at=10**30), "occurred_at",
     "out of range"),
    ("time that overflows in UTC",
     lambda t, r: r.log_step(1, {}, occurred_at=datetime(1, 1, 1, tzinfo=PLUS_ONE_HOUR)),
     "occurred_at", "out of range"),
    ("huge time string", lambda t, r: r.log_step(1, {}, occurred_at=" " * 100 + "1700000000"),
     "occurred_at", "at most 64"),
]

TRACKER_CASES: list[tuple[str, Callable[[Any], Any], str, str]] = [
    ("huge run name", lambda t: t.start_run(HUGE), "name", "at most 256"),
    ("blank run name", lambda t: t.start_run(" \t"), "name", "whitespace"),
    ("NUL in a run name", lambda t: t.start_run("a\x00"), "name", "control"),
    ("huge tag value", lambda t: t.start_run("r", tags={"t": HUGE}), "tags['t']", "at most 4096"),
    ("tag value a 5,000-digit number (str() raises past 4,300)",
     lambda t: t.start_run("r", tags={"t": 10**5000}), "tags['t']", "at most 4096"),
    ("tag value a 4,200-digit number", lambda t: t.start_run("r", tags={"t": -(10**4200)}),
     "tags['t']", "at most 4096"),
    ("huge tag key", lambda t: t.start_run("r", tags={LONG: "v"}), "tags key", "at most 256"),
    ("empty tag key", lambda t: t.start_run("r", tags={"": "v"}), "tags key", "empty"),
    ("tag value an object", lambda t: t.start_run("r", tags={"t": object()}), "tags['t']",
     "must be a string"),
    ("too many tags", lambda t: t.start_run("r", tags={f"t{i}": "" for i in range(257)}), "tags",
     "limit is 256"),
    ("learning rate a word", lambda t: t.start_run("r", job={"learning": {"learning_rate": "fast"}}),
     "job.learning.learning_rate", "must be a number"),
    ("learning rate zero", lambda t: t.start_run("r", job={"learning": {"learning_rate": 0}}),
     "job.learning.learning_rate", "> 0"),
    ("learning rate NaN",
     lambda t: t.start_run("r", job={"learning": {"learning_rate": float("nan")}}),
     "job.learning.learning_rate", "finite"),
    ("negative gpus", lambda t: t.start_run("r", job={"resources": {"gpus": -1}}),
     "job.resources.gpus", "non-negative integer"),
    ("fractional batch size", lambda t: t.start_run("r", job={"learning": {"batch_size": 1.5}}),
     "job.learning.batch_size", "positive integer"),
    ("bool LoRA rank", lambda t: t.start_run("r", job={"adapter": {"rank": True}}),
     "job.adapter.rank", "positive integer"),
    ("dropout over 1", lambda t: t.start_run("r", job={"adapter": {"dropout": 1.5}}),
     "job.adapter.dropout", "<= 1"),
    ("validation every 0", lambda t: t.start_run("r", job={"validation": {"every": 0}}),
     "job.validation.every", "positive integer"),
    ("dataset entry a number", lambda t: t.start_run("r", job={"datasets": [3]}),
     "job.datasets[0]", "string"),
    ("blank job key", lambda t: t.start_run("r", job={"key": " "}), "job.key", "whitespace"),
    ("huge alias", lambda t: t.move_alias("0" * 32, "a" * 129), "alias", "at most 128"),
    ("NUL in an alias", lambda t: t.move_alias("0" * 32, "a\x00"), "alias", "control"),
    ("protected not a bool", lambda t: t.move_alias("0" * 32, "best", protected="no"),
     "protected", "true or false"),
    ("huge artifact name", lambda t: t.register_artifact("s3://b/k", type="model", name=HUGE),
     "name", "at most 256"),
    ("metadata nested too deeply",
     lambda t: t.register_artifact("s3://b/k", type="model", metadata=deep(5000)),
     "metadata", "nested too deeply"),
    ("metadata with a surrogate",
     lambda t: t.register_artifact("s3://b/k", type="model", metadata={"s": "\ud800"}),
     "metadata", "UTF-8"),
    ("too many parents",
     lambda t: t.register_artifact("s3://b/k", type="model", parents=["0" * 32] * 1025),
     "parents", "more than 1024"),
]

URI_CASES = [
    ("s3://", "s3://<bucket>/<key>"), ("s3://bucket", "s3://<bucket>/<key>"),
    ("s3://bucket/", "s3://<bucket>/<key>"), ("gs://b", "gs://<bucket>/<key>"),
    ("az://container", "az://<container>/<path>"), ("tinker://", "tinker://<id>/<path>"),
    ("tinker://session", "tinker://<id>/<path>"), ("tinker:///weights/1", "tinker://<id>/<path>"),
    ("hf://", "hf://<repo>"), ("https://", "https://<host>"), ("http://[::1", "not a valid"),
    ("s3://b/\x00", "control"), ("s3://b/" + "k" * 5000, "at most 4096"),
    ("a\x00b", "control"), ("x" * 5000, "at most 4096"), ("", "empty"), ("   ", "whitespace"),
    ("~no-such-user-xyz/file", "cannot read"),
]


@pytest.mark.parametrize(("case", "call", "field", "rule"), RUN_CASES, ids=[c[0] for c in RUN_CASES])
def test_run_handle_inputs_are_bounded(tracker: lineage.Tracker, case: str,
                                       call: Callable[[Any, Any], Any], field: str, rule: str) -> None:
    run = tracker.start_run("r")
    refused(tracker, lambda: call(tracker, run), field, rule)


@pytest.mark.parametrize(("case", "call", "field", "rule"), TRACKER_CASES,
                         ids=[c[0] for c in TRACKER_CASES])
def test_tracker_inputs_are_bounded(tracker: lineage.Tracker, case: str,
                                    call: Callable[[Any], Any], field: str, rule: str) -> None:
    refused(tracker, lambda: call(tracker), field, rule)


@pytest.mark.parametrize(("uri", "rule"), URI_CASES, ids=[repr(u[:30]) for u, _ in URI_CASES])
def test_uris_must_name_what_their_scheme_needs(tracker: lineage.Tracker, uri: str, rule: str) -> None:
    refused(tracker, lambda: tracker.register_artifact(uri, type="model"), "uri", rule)


@pytest.mark.parametrize("target", [42, b"s3://b/k", None])
def test_a_target_that_is_not_a_path_is_refused(tracker: lineage.Tracker, target: Any) -> None:
    refused(tracker, lambda: tracker.register_artifact(target, type="model"), "uri", "")


def test_what_is_at_the_limits_is_stored(tracker: lineage.Tracker, tmp_path: Path) -> None:
    name = "é" * validation.NAME_MAX
    job = {"learning": {"learning_rate": 1e-4, "batch_size": 8, "warmup_steps": 0},
           "resources": {"gpus": 0, "device": "cpu"}, "adapter": {"rank": 8, "dropout": 0.0},
           "datasets": ["s3://b/train.jsonl", {"uri": "hf://org/d"}]}
    tags = {f"t{i}": "v" * validation.TAG_VALUE_MAX for i in range(validation.TAGS_MAX)}
    with tracker.start_run(name, job=job, tags=tags) as run:
        run.log_step(1, {f"m{i}": 1.0 for i in range(validation.METRICS_MAX)},
                     durations={"step_s": 0.0, "data_s": 1e308})
        run.log_step(2, {name: float("nan")}, occurred_at=datetime(1970, 1, 1))
        run.record_failure("E", "line one\n\tline two " + "m" * 8000)
    for uri in ("s3://b/k", "tinker://s/w/1", "hf://gpt2", "https://host", "gs://b/a/b"):
        tracker.register_artifact(uri, type="model", name="n" * validation.NAME_MAX)
    view = tracker.run(run.id)
    assert (view.name, len(view.tags), view.steps, view.failures) == (name, 256, 2, 1)
    assert len(tracker.artifacts()) == 5


def test_recording_an_exception_with_control_characters_still_finishes_the_run(
        tracker: lineage.Tracker) -> None:
    with pytest.raises(RuntimeError), tracker.start_run("r") as run:
        raise RuntimeError("\x1b[31mred\x00 and " + "long " * 5000)
    view = tracker.run(run.id)
    assert (view.status, view.failures) == ("failed", 1)
