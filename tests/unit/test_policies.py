"""CheckpointPolicy and RetryPolicy as tables: every strategy, every rule, every edge."""

from __future__ import annotations

import math
import socket
from typing import Any

import pytest

import lineage
from lineage.application.jobspec import job_spec
from lineage.application.policies import (
    CheckpointPolicy,
    CheckpointSchedule,
    RetryPolicy,
    error_kind,
)
from lineage.errors import StoreError, ValidationError

NAN, INF = float("nan"), float("inf")


# -- CheckpointPolicy: when to save ---------------------------------------------------------------


STEPS = CheckpointPolicy(strategy="steps", save_every=100)
EPOCH = CheckpointPolicy(strategy="epoch")
EPOCH_2 = CheckpointPolicy(strategy="epoch", save_every=2)
BEST_MIN = CheckpointPolicy(strategy="best", best_metric="val_loss")
BEST_MAX = CheckpointPolicy(strategy="best", best_metric="acc", best_mode="max")
LAST = CheckpointPolicy(strategy="last")
ALL = CheckpointPolicy(strategy="all")
STEPS_AND_BEST = CheckpointPolicy(strategy="steps", save_every=100, save_best=True,
                                  best_metric="val_loss")

# policy, step, epoch, metrics, keyword state, expected
DECISIONS: list[tuple[CheckpointPolicy, int, int | None, dict[str, float] | None,
                      dict[str, Any], bool]] = [
    (STEPS, 100, None, None, {}, True),
    (STEPS, 200, None, None, {}, True),
    (STEPS, 150, None, None, {}, False),
    (STEPS, 0, None, None, {}, False),  # step 0 is before any training
    (STEPS, 99, None, None, {}, False),
    (STEPS, 99, None, None, {"final": True}, True),  # the last step always saves
    (STEPS, 150, None, {"val_loss": 0.1}, {"best_value": 9.0}, False),  # no save_best
    (EPOCH, 10, 0, None, {}, False),  # first call: no previous epoch to compare
    (EPOCH, 11, 0, None, {"previous_epoch": 0}, False),  # same epoch
    (EPOCH, 12, 1, None, {"previous_epoch": 0}, True),  # epoch 1 begins: epoch 0 ended
    (EPOCH, 13, 1, None, {"previous_epoch": 1}, False),
    (EPOCH, 13, None, None, {"previous_epoch": 1}, False),  # no epoch given
    (EPOCH_2, 20, 1, None, {"previous_epoch": 0}, False),  # every 2 epochs
    (EPOCH_2, 30, 2, None, {"previous_epoch": 1}, True),
    (EPOCH_2, 30, 3, None, {"previous_epoch": 1}, False),  # jumped past 2: 3 is not a multiple
    (EPOCH, 30, 1, None, {"final": True}, True),
    (BEST_MIN, 5, None, {"val_loss": 0.5}, {}, True),  # the first value is the best so far
    (BEST_MIN, 5, None, {"val_loss": 0.5}, {"best_value": 0.6}, True),
    (BEST_MIN, 5, None, {"val_loss": 0.5}, {"best_value": 0.5}, False),  # a tie is not better
    (BEST_MIN, 5, None, {"val_loss": 0.7}, {"best_value": 0.5}, False),
    (BEST_MIN, 5, None, {"val_loss": NAN}, {}, False),  # NaN is never best
    (BEST_MIN, 5, None, {"val_loss": -INF}, {}, False),  # nor are infinities
    (BEST_MIN, 5, None, {"loss": 0.1}, {}, False),  # the metric is absent
    (BEST_MIN, 5, None, None, {}, False),
    (BEST_MIN, 5, None, None, {"final": True}, False),  # best saves only on improvement
    (BEST_MAX, 5, None, {"acc": 0.9}, {"best_value": 0.8}, True),
    (BEST_MAX, 5, None, {"acc": 0.7}, {"best_value": 0.8}, False),
    (LAST, 100, None, None, {}, False),
    (LAST, 100, None, {"val_loss": 0.1}, {}, False),
    (LAST, 100, None, None, {"final": True}, True),
    (ALL, 1, None, None, {}, True),
    (ALL, 0, None, None, {}, True),
    (STEPS_AND_BEST, 150, None, {"val_loss": 0.1}, {"best_value": 0.2}, True),
    (STEPS_AND_BEST, 150, None, {"val_loss": 0.3}, {"best_value": 0.2}, False),
    (STEPS_AND_BEST, 200, None, {"val_loss": 0.3}, {"best_value": 0.2}, True),
]


@pytest.mark.parametrize(("policy", "step", "epoch", "metrics", "state", "expected"), DECISIONS)
def test_should_checkpoint(policy: CheckpointPolicy, step: int, epoch: int | None,
                           metrics: dict[str, float] | None, state: dict[str, Any],
                           expected: bool) -> None:
    assert policy.should_checkpoint(step, epoch, metrics, **state) is expected


def test_a_schedule_remembers_the_previous_epoch_and_the_best_saved_value() -> None:
    epochs = CheckpointSchedule(EPOCH_2)
    per_step = [(step, step // 4) for step in range(1, 17)]  # 4 steps per epoch
    assert [s for s, e in per_step if epochs.should_checkpoint(s, e)] == [8, 16]

    best = CheckpointSchedule(STEPS_AND_BEST)
    values = [0.9, 0.8, 0.85, NAN, 0.8, 0.7]
    assert [best.should_checkpoint(s, metrics={"val_loss": v})
            for s, v in enumerate(values, start=1)] == [True, True, False, False, False, True]
    assert best.should_checkpoint(100, metrics={"val_loss": 5.0})  # steps still apply


@pytest.mark.parametrize(("mode", "value", "current", "better"), [
    ("min", 1.0, None, True), ("min", 1.0, 2.0, True), ("min", 2.0, 2.0, False),
    ("min", 3.0, 2.0, False), ("max", 3.0, 2.0, True), ("max", 2.0, 2.0, False),
    ("min", NAN, None, False), ("max", INF, None, False), ("min", -INF, 1.0, False),
    ("min", None, 1.0, False), ("max", -5.0, None, True),
])
def test_is_better_ignores_ties_and_non_finite_values(mode: str, value: float | None,
                                                      current: float | None, better: bool) -> None:
    policy = CheckpointPolicy(strategy="best", best_metric="m", best_mode=mode)
    assert policy.is_better(value, current) is better


# -- CheckpointPolicy: validation ----------------------------------------------------------------


@pytest.mark.parametrize(("fields", "field", "rule"), [
    ({"strategy": "hourly"}, "strategy", "must be one of steps, epoch, best, last, all"),
    ({"strategy": "steps"}, "save_every", "is required with strategy 'steps'"),
    ({"strategy": "steps", "save_every": 0}, "save_every", "must be a positive integer"),
    ({"strategy": "steps", "save_every": -5}, "save_every", "must be a positive integer"),
    ({"strategy": "steps", "save_every": 2.5}, "save_every", "must be a positive integer"),
    ({"strategy": "steps", "save_every": True}, "save_every", "must be a positive integer"),
    ({"strategy": "all", "save_every": 5}, "save_every", "only applies to strategies"),
    ({"strategy": "epoch", "keep_last": 0}, "keep_last", "must be a positive integer"),
    ({"strategy": "epoch", "save_best": True}, "best_metric", "is required when save_best"),
    ({"strategy": "best"}, "best_metric", "is required with strategy 'best'"),
    ({"strategy": "best", "best_metric": ""}, "best_metric", "must not be empty"),
    ({"strategy": "best", "best_metric": "l", "best_mode": "lowest"}, "best_mode",
     "must be one of min, max"),
    ({"strategy": "last", "format": "pickle"}, "format", "must be one of safetensors"),
    ({"strategy": "last", "save_best": "yes", "best_metric": "l"}, "save_best",
     "must be true or false"),
])
def test_a_bad_checkpoint_policy_names_the_field(fields: dict[str, Any], field: str,
                                                 rule: str) -> None:
    with pytest.raises(ValidationError) as caught:
        CheckpointPolicy(**fields)
    assert caught.value.field == field
    assert rule in caught.value.rule


def test_epoch_defaults_to_every_epoch_and_the_policy_round_trips() -> None:
    policy = CheckpointPolicy(strategy="steps", save_every=100, keep_last=5, save_best=True,
                              best_metric="val_loss", best_mode="min", format="gguf")
    assert CheckpointPolicy(strategy="epoch").save_every == 1
    assert CheckpointPolicy.from_dict(policy.to_dict()) == policy
    assert policy.to_dict() == {"strategy": "steps", "save_every": 100, "keep_last": 5,
                                "save_best": True, "best_metric": "val_loss",
                                "best_mode": "min", "format": "gguf"}
    assert policy.name == "checkpoint_policy(steps/100, keep_last=5)"


@pytest.mark.parametrize(("data", "field"), [
    ({"strategy": "steps", "save_every": 0}, "job.checkpoint_policy.save_every"),
    ({"strategy": "steps", "save_evry": 10}, "job.checkpoint_policy.save_evry"),
    ("steps", "job.checkpoint_policy"),
])
def test_a_job_spec_policy_is_checked_with_the_full_field_path(data: Any, field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        job_spec({"checkpoint_policy": data})
    assert caught.value.field == field


def test_a_job_spec_stores_policy_objects_in_full(make_tracker: Any) -> None:
    spec = job_spec({"checkpoint_policy": {"strategy": "epoch"},
                     "retry_policy": RetryPolicy(max_attempts=2, retryable_errors=[TimeoutError])})
    assert spec["checkpoint_policy"]["save_every"] == 1
    assert spec["retry_policy"]["retryable_errors"] == ["builtins.TimeoutError"]


def test_a_bad_policy_is_refused_before_anything_is_stored(make_tracker: Any) -> None:
    tracker = make_tracker("memory://")
    with pytest.raises(ValidationError, match="save_every"):
        tracker.start_run("x", job={"checkpoint_policy": {"strategy": "steps", "save_every": 0}})
    assert tracker.runs() == []


# -- RetryPolicy ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("policy", "delays"), [
    (RetryPolicy(max_attempts=1), []),
    (RetryPolicy(max_attempts=4, backoff="exponential", initial_delay_s=5, max_delay_s=60),
     [5, 10, 20]),
    (RetryPolicy(max_attempts=6, backoff="exponential", initial_delay_s=5, max_delay_s=60),
     [5, 10, 20, 40, 60]),  # capped
    (RetryPolicy(max_attempts=4, backoff="linear", initial_delay_s=2, max_delay_s=5), [2, 4, 5]),
    (RetryPolicy(max_attempts=3, backoff="constant", initial_delay_s=3, max_delay_s=3), [3, 3]),
    (RetryPolicy(max_attempts=3, initial_delay_s=0, max_delay_s=0), [0, 0]),
])
def test_delays(policy: RetryPolicy, delays: list[float]) -> None:
    assert policy.delays() == delays


def test_jitter_takes_at_most_its_fraction_off_each_delay() -> None:
    policy = RetryPolicy(max_attempts=4, initial_delay_s=10, max_delay_s=100, jitter=0.5)
    assert policy.delays(lambda: 0.0) == [10, 20, 40]
    assert policy.delays(lambda: 0.5) == [7.5, 15, 30]
    assert policy.delays(lambda: 0.999) == pytest.approx([5.005, 10.01, 20.02])
    assert policy.delays() == [10, 20, 40]  # no random source: no jitter


class ServiceUnavailable(Exception):
    pass


class RateLimitError(Exception):
    pass


class HttpError(Exception):
    def __init__(self, status_code: int) -> None:
        self.status_code = status_code


class Declared(Exception):
    retry_kind = "capacity"


class BrokenCheckpoint(Exception):
    pass


@pytest.mark.parametrize(("error", "kind"), [
    (TimeoutError("slow"), "timeout"),
    (socket.timeout("slow"), "timeout"),  # noqa: UP041 - the alias some libraries raise
    (ConnectionRefusedError("down"), "backend_unavailable"),
    (ConnectionResetError(), "backend_unavailable"),
    (MemoryError(), "capacity"),
    (ServiceUnavailable(), "backend_unavailable"),
    (RateLimitError(), "capacity"),
    (HttpError(503), "backend_unavailable"),
    (HttpError(504), "timeout"),
    (HttpError(429), "capacity"),
    (HttpError(404), None),
    (Declared(), "capacity"),
    (ValueError("bad"), None),
    (BrokenCheckpoint(), None),
    ("timeout", "timeout"),
    ("capacity", "capacity"),
    ("ReadTimeout", "timeout"),
    ("httpx.ConnectError", "backend_unavailable"),
    ("backend_corrupted", None),
])
def test_error_kind(error: BaseException | str, kind: str | None) -> None:
    assert error_kind(error) == kind


DEFAULT = RetryPolicy()
ONLY_TIMEOUTS = RetryPolicy(retryable_errors=["timeout"])
BY_TYPE = RetryPolicy(retryable_errors=[BrokenCheckpoint, "KeyError"])
STORED = RetryPolicy.from_dict(BY_TYPE.to_dict())


@pytest.mark.parametrize(("policy", "error", "retryable"), [
    (DEFAULT, TimeoutError(), True),
    (DEFAULT, ConnectionError(), True),
    (DEFAULT, RateLimitError(), True),
    (DEFAULT, StoreError("down"), False),
    (DEFAULT, ValueError(), False),
    (DEFAULT, "backend_unavailable", True),
    (DEFAULT, "backend_corrupted", False),
    (ONLY_TIMEOUTS, TimeoutError(), True),
    (ONLY_TIMEOUTS, ConnectionError(), False),
    (ONLY_TIMEOUTS, "ReadTimeout", True),
    (BY_TYPE, BrokenCheckpoint(), True),
    (BY_TYPE, KeyError("x"), True),
    (BY_TYPE, TimeoutError(), False),
    (STORED, BrokenCheckpoint(), True),  # stored as its qualified name, matched by name
    (STORED, "KeyError", True),
    (STORED, ValueError(), False),
])
def test_is_retryable(policy: RetryPolicy, error: BaseException | str, retryable: bool) -> None:
    assert policy.is_retryable(error) is retryable


@pytest.mark.parametrize(("fields", "field"), [
    ({"max_attempts": 0}, "max_attempts"),
    ({"max_attempts": 1.5}, "max_attempts"),
    ({"backoff": "fibonacci"}, "backoff"),
    ({"initial_delay_s": -1}, "initial_delay_s"),
    ({"initial_delay_s": math.nan}, "initial_delay_s"),
    ({"initial_delay_s": 10, "max_delay_s": 5}, "max_delay_s"),
    ({"jitter": 1.5}, "jitter"),
    ({"retryable_errors": "timeout"}, "retryable_errors"),
    ({"retryable_errors": ["timeot"]}, "retryable_errors"),  # a typo is refused, not ignored
    ({"retryable_errors": [42]}, "retryable_errors"),
])
def test_a_bad_retry_policy_names_the_field(fields: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        RetryPolicy(**fields)
    assert caught.value.field == field


def test_retry_policy_from_a_mapping_names_the_prefix() -> None:
    with pytest.raises(ValidationError) as caught:
        RetryPolicy.from_dict({"max_attempts": 0}, "retry")
    assert caught.value.field == "retry.max_attempts"
    assert lineage.RetryPolicy is RetryPolicy and lineage.CheckpointPolicy is CheckpointPolicy
