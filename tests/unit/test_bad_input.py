"""Every bad input is a clear error naming the field, raised before anything is stored."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import lineage
from lineage.errors import ValidationError


@pytest.fixture
def tracker() -> Iterator[lineage.Tracker]:
    with lineage.Tracker("memory://") as tracker:
        yield tracker


@pytest.fixture
def weights(tmp_path: Path) -> Path:
    path = tmp_path / "step-10.safetensors"
    path.write_bytes(b"\x00" * 128)
    return path


def stored(tracker: lineage.Tracker) -> int:
    tracker.flush()
    return tracker.store.max_position()


def rejects(tracker: lineage.Tracker, action: Callable[[], Any], field: str, rule: str) -> None:
    before = stored(tracker)
    with pytest.raises(ValidationError) as error:
        action()
    assert error.value.field == field
    assert rule in error.value.rule
    assert field in str(error.value)
    assert stored(tracker) == before, "nothing may be stored for a rejected input"


def test_unknown_artifact_type(tracker: lineage.Tracker, weights: Path) -> None:
    rejects(tracker, lambda: tracker.register_artifact(weights, type="weights"),
            "type", "must be one of")


def test_unknown_checkpoint_format(tracker: lineage.Tracker, weights: Path) -> None:
    with tracker.start_run("r") as run:
        run.log_step(10, {"loss": 1.0})
        rejects(tracker, lambda: run.save_checkpoint(weights, step=10, format="pickle"),
                "format", "safetensors")


def test_missing_local_path(tracker: lineage.Tracker, tmp_path: Path) -> None:
    rejects(tracker, lambda: tracker.register_artifact(tmp_path / "nope.jsonl", type="dataset"),
            "uri", "does not exist")


def test_checksum_that_does_not_match_the_file(tracker: lineage.Tracker, weights: Path) -> None:
    wrong = "sha256:" + hashlib.sha256(b"other").hexdigest()
    before = stored(tracker)
    with pytest.raises(lineage.ChecksumMismatchError) as error:
        tracker.register_artifact(weights, type="checkpoint", checksum=wrong)
    assert error.value.field == "checksum" and error.value.expected == wrong
    assert stored(tracker) == before


def test_matching_checksum_is_accepted(tracker: lineage.Tracker, weights: Path) -> None:
    right = "sha256:" + hashlib.sha256(weights.read_bytes()).hexdigest()
    assert tracker.register_artifact(weights, type="checkpoint", checksum=right).digest == right


@pytest.mark.parametrize("checksum", ["sha256:xyz", "md4:" + "0" * 32, "sha256:" + "a" * 63, 42])
def test_malformed_checksum(tracker: lineage.Tracker, checksum: Any) -> None:
    rejects(tracker,
            lambda: tracker.register_artifact("s3://b/model.bin", type="model", checksum=checksum),
            "checksum", "")


@pytest.mark.parametrize(("step", "rule"), [(-1, "non-negative"), (1.5, "non-negative integer"),
                                            ("7", "non-negative integer"), (True, "integer")])
def test_negative_or_non_integer_step(tracker: lineage.Tracker, step: Any, rule: str) -> None:
    with tracker.start_run("r") as run:
        rejects(tracker, lambda: run.log_step(step, {"loss": 1.0}), "step", rule)


@pytest.mark.parametrize("metrics", [{"loss": "low"}, {"loss": None}, {"loss": [1.0]}, {3: 1.0},
                                     [("loss", 1.0)]])
def test_metrics_that_are_not_numbers(tracker: lineage.Tracker, metrics: Any) -> None:
    with tracker.start_run("r") as run:
        before = stored(tracker)
        with pytest.raises(ValidationError) as error:
            run.log_step(1, metrics)
        assert error.value.field.startswith("metrics")
        assert stored(tracker) == before


def test_metadata_not_json(tracker: lineage.Tracker) -> None:
    rejects(tracker,
            lambda: tracker.register_artifact("hf://org/model", type="model", metadata={"x": object()}),
            "metadata", "JSON-serialisable")


def test_metadata_over_64_kib(tracker: lineage.Tracker) -> None:
    rejects(tracker, lambda: tracker.register_artifact("hf://org/model", type="model",
                                                       metadata={"x": "y" * 70_000}),
            "metadata", "limit is 65536")


def test_unparsable_timestamp(tracker: lineage.Tracker) -> None:
    with tracker.start_run("r") as run:
        rejects(tracker, lambda: run.log_step(1, {"loss": 1.0}, occurred_at="last tuesday"),
                "occurred_at", "ISO 8601")


def test_unknown_run_id(tracker: lineage.Tracker) -> None:
    with pytest.raises(lineage.RunNotFoundError) as error:
        tracker.run("0b7e5f4c-52d3-4d5c-9a51-2a1c8d1e0f00")
    assert str(error.value.run_id) == "0b7e5f4c-52d3-4d5c-9a51-2a1c8d1e0f00"
    rejects(tracker, lambda: tracker.run("not-a-uuid"), "run", "not a UUID")


def test_unknown_run_id_for_an_artifact_is_refused_at_commit(tracker: lineage.Tracker) -> None:
    before = stored(tracker)
    with pytest.raises(lineage.RunNotFoundError):
        tracker.register_artifact("s3://b/x", type="log", run="0b7e5f4c-52d3-4d5c-9a51-2a1c8d1e0f00")
    assert stored(tracker) == before


def test_unknown_job_field(tracker: lineage.Tracker) -> None:
    rejects(tracker, lambda: tracker.start_run("r", job={"modle": "x"}), "job.modle", "unknown field")


def test_unsupported_uri_scheme(tracker: lineage.Tracker) -> None:
    rejects(tracker, lambda: tracker.register_artifact("ftp://host/x", type="log"), "uri", "unsupported")


@pytest.mark.parametrize("uri", [
    "http://169.254.169.254/latest/meta-data/iam/security-credentials/",  # AWS, Azure, GCP
    "http://169.254.170.2/v2/credentials", "http://[fd00:ec2::254]/latest/",  # ECS, AWS IPv6
    "https://metadata.google.internal/computeMetadata/v1/", "http://100.100.100.200/latest/",
    "http://[::ffff:169.254.169.254]/", "http://[fe80::1]/x",  # mapped, link-local IPv6
    "http://2852039166/latest/", "http://0xa9fea9fe/", "http://0251.0376.0251.0376/",
])
def test_a_cloud_metadata_uri_is_refused(tracker: lineage.Tracker, uri: str) -> None:
    rejects(tracker, lambda: tracker.register_artifact(uri, type="model"), "uri",
            "cloud metadata or link-local")


def test_ordinary_http_hosts_are_accepted(tracker: lineage.Tracker) -> None:
    for uri in ("https://huggingface.co/gpt2/model.safetensors", "http://10.0.0.7/ckpt.bin",
                "http://127.0.0.1:8000/x", "https://models.example.org/a"):
        assert tracker.register_artifact(uri, type="model").uri == uri


def test_nan_and_infinity_are_kept_faithfully(tracker: lineage.Tracker) -> None:
    with tracker.start_run("r") as run:
        run.log_step(1, {"loss": float("nan"), "up": float("inf"), "down": float("-inf")})
    [step] = tracker.steps(run.id)
    assert step.metrics["loss"] != step.metrics["loss"]
    assert step.metrics["up"] == float("inf") and step.metrics["down"] == float("-inf")


def test_numpy_scalars_are_stored_as_floats(tracker: lineage.Tracker) -> None:
    numpy = pytest.importorskip("numpy")
    with tracker.start_run("r") as run:
        run.log_step(1, {"loss": numpy.float32(0.5), "n": numpy.int64(3)})
    [step] = tracker.steps(run.id)
    assert step.metrics == {"loss": 0.5, "n": 3.0}


def test_numpy_integer_steps_are_plain_ints(tracker: lineage.Tracker) -> None:
    numpy = pytest.importorskip("numpy")
    with tracker.start_run("r") as run:
        run.log_step(numpy.int64(4), {"loss": 1.0})
    assert [s.step for s in tracker.steps(run.id)] == [4]


# -- numbers every store and read model can hold (no poison) -------------------------------------

BIG = 2**63
HUGE = 10**400


@pytest.mark.parametrize(("field", "call"), [
    ("step", lambda run, tracker: run.log_step(BIG, {"loss": 1.0})),
    ("epoch", lambda run, tracker: run.log_step(1, {"loss": 1.0}, epoch=2**70)),
    ("tokens", lambda run, tracker: run.log_step(1, {"loss": 1.0}, tokens=2**70)),
    ("metrics['v']", lambda run, tracker: run.log_step(1, {"v": HUGE})),
    ("metrics['v']", lambda run, tracker: run.log_step(1, {"v": -BIG - 1})),
    ("durations['step_s']", lambda run, tracker: run.log_step(1, {}, durations={"step_s": BIG})),
    ("metrics['v']", lambda run, tracker: run.log_eval(2, {"v": HUGE})),
    ("step", lambda run, tracker: run.log_eval(BIG, {"v": 1.0})),
    ("size", lambda run, tracker: tracker.register_artifact("s3://b/k", type="model", size=2**64)),
    ("start_step", lambda run, tracker: tracker.start_run("r", start_step=BIG)),
])
def test_numbers_no_column_can_hold_are_refused(tracker: lineage.Tracker, field: str,
                                               call: Callable[[Any, Any], Any]) -> None:
    run = tracker.start_run("r")
    rejects(tracker, lambda: call(run, tracker), field, "64")
    assert tracker.artifacts() == [] and tracker.run(run.id).steps == 0  # the read models work


def test_the_largest_numbers_are_stored_and_read_back_everywhere(
        any_url: str, make_tracker: Callable[..., Any]) -> None:
    tracker = make_tracker(any_url)
    top = 2**63 - 1
    with tracker.start_run("big", start_step=0) as run:
        run.log_step(top, {"loss": top, "low": -(2**63), "tiny": 5e-324, "max": 1.7e308},
                     epoch=top, tokens=top, durations={"step_s": 1e308})
        run.log_eval(top, {"v": top})
    tracker.flush()
    [step] = tracker.steps(run.id)
    assert (step.step, step.epoch, step.tokens, step.metrics["loss"]) == (top, top, top, top)
    view = tracker.run(run.id)
    assert view.last_step == top and view.last_metrics["low"] == -(2**63)
    assert tracker.trace(run.id)["trace"]["id"] == str(run.id)
    assert tracker.metric_history(run.id, "max") == [(top, 1.7e308)]
    assert tracker.audit(subject=run.id, include_steps=True)
